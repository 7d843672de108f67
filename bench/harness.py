"""What every benchmark shares: JSON lines on stdout, percentiles, ratios against a reference, machine info.

A benchmark prints one JSON object per line on stdout (people-facing text goes to
stderr), so its output can be piped, diffed and quoted. A comparison with a
reference implementation run in the same process is one more record:
:func:`compare` prints it, with the same fields the benchmarks printed before
they shared this module.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The data the benchmarks read in place (never copied): ../shared/data/ beside the checkout.
SHARED_DATA = ROOT.parent / "shared" / "data"
# Library versions a figure depends on; one that is not installed is reported as None.
VERSIONED = ("numpy", "onnxruntime", "torch")


def emit(record: Mapping[str, Any]) -> None:
    """One JSON line on stdout, flushed (a long bench shows its progress line by line)."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def percentiles(values: Sequence[float] | np.ndarray, qs: Sequence[float] = (50, 95)) -> tuple[float, ...]:
    """The `qs` percentiles of `values` (linear interpolation), NaN left out; NaN for each when none is left."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return tuple(float("nan") for _ in qs)
    return tuple(float(v) for v in np.percentile(arr, list(qs)))


def ratio(numerator: float, denominator: float, places: int = 3) -> float | None:
    """numerator / denominator rounded to `places`; None when the denominator is 0 (no meaningful ratio)."""
    if not denominator:
        return None
    return round(numerator / denominator, places)


def compare(
    name: str,
    ours: Mapping[str, float],
    reference: Mapping[str, float],
    /,
    *,
    label: str = "bench",
    places: int = 3,
    inverse: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """Print and return the side-by-side record: `fields`, then per key of `ours` its ratio to `reference`.

    The record is ``{label: name, **fields, key: ours[key] / reference[key], ...}`` (``inverse``:
    reference over ours, for records that read as the reference's slowdown); a key whose divisor is 0
    gets None. The keys are the record's field names, so each benchmark keeps the fields it always printed.
    """
    record: dict[str, Any] = {label: name, **fields}
    for key, value in ours.items():
        ref = reference[key]
        record[key] = ratio(ref, value, places) if inverse else ratio(value, ref, places)
    emit(record)
    return record


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    """Where the figures were measured: CPUs, Python, the versions of the libraries they depend on, the commit."""
    return dict(_machine())


@cache
def _machine() -> dict[str, Any]:
    return {
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        # Read from the installed metadata: importing torch only to report its version would cost seconds.
        **{dist: _version(dist) for dist in VERSIONED},
        "git_commit": _git_commit(),
    }
