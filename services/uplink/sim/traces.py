"""Bandwidth traces: per-second link capacity (bytes/s) from the three formats in ../shared/data/traces/.

Formats, auto-detected from the content (the file name is only a hint):

* ``mahimahi``: one integer per line, a millisecond timestamp per 1500-byte
  delivery opportunity (repeated = several packets in that ms). The trace
  repeats with period = the last timestamp, so its length is that period
  rounded to whole seconds (at least 1 s); second k holds the opportunities
  with timestamp in [1000 k, 1000 (k+1)), the few in a final partial second
  folded into the last whole one.
* ``pensieve``: ``time_s <whitespace> Mbit/s`` per line, irregularly spaced;
  the rate is held from one sample to the next (the last one for the median
  gap), re-based to start at 0, and averaged over each second.
* ``5g-list``: ``Run N`` blocks of comma-separated Mbit/s samples, one per
  second (5G-MeMU's iperf logs); one run is taken (``run``, default 1).

``scale`` multiplies the capacity (the paper's 1.0 / 0.5 / 0.25). Parsing is
pure (:func:`parse_trace` on text); :func:`load_trace` only reads the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

TraceFormat = Literal["mahimahi", "pensieve", "5g-list"]

MTU_BYTES = 1500
_RUN = re.compile(r"^\s*Run\s+(\d+)\s*$", re.MULTILINE)


class TraceFormatError(ValueError):
    """The file is empty, in none of the known formats, or malformed; the message says where."""


@dataclass(frozen=True)
class BandwidthTrace:
    """Capacity per whole second (bytes/s), looped past its end."""

    name: str
    capacity_Bps: np.ndarray
    source_format: TraceFormat

    def __post_init__(self) -> None:
        if self.capacity_Bps.ndim != 1 or len(self.capacity_Bps) == 0:
            raise TraceFormatError(f"{self.name}: a trace needs at least one second of capacity")
        if not np.all(np.isfinite(self.capacity_Bps)) or np.any(self.capacity_Bps < 0):
            raise TraceFormatError(f"{self.name}: capacity must be finite and >= 0")
        if not np.any(self.capacity_Bps > 0):
            # A link that never carries a byte would make every simulation run forever.
            raise TraceFormatError(f"{self.name}: capacity is zero throughout")

    @property
    def duration_s(self) -> int:
        """Length of one loop of the trace in seconds."""
        return len(self.capacity_Bps)

    @property
    def mean_Bps(self) -> float:
        """Mean capacity over one loop."""
        return float(self.capacity_Bps.mean())

    def scaled(self, scale: float) -> BandwidthTrace:
        """The same trace with its capacity multiplied by `scale`."""
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        return BandwidthTrace(self.name, self.capacity_Bps * scale, self.source_format)


def detect_format(text: str, name: str = "") -> TraceFormat:
    """Which of the three formats `text` is in; TraceFormatError when none fits."""
    if _RUN.search(text):
        return "5g-list"
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise TraceFormatError(f"{name or 'trace'}: empty file")
    widths = {len(tokens) for tokens in lines[:50]}
    if widths == {1} and all(t[0].isdigit() for t in lines[:50]):
        return "mahimahi"
    if widths == {2}:
        return "pensieve"
    raise TraceFormatError(
        f"{name or 'trace'}: unknown trace format (expected mahimahi ms timestamps, pensieve "
        f"'time Mbit/s' pairs, or 5G '.list' Run blocks); first line: {' '.join(lines[0])[:80]!r}"
    )


def _mahimahi(text: str, name: str) -> np.ndarray:
    stamps: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            stamps.append(int(line.strip()))
        except ValueError:
            raise TraceFormatError(f"{name}:{lineno}: not a millisecond timestamp: {line.strip()[:40]!r}") from None
    ms = np.asarray(stamps, dtype=np.int64)
    if np.any(ms < 0) or np.any(np.diff(ms) < 0):
        raise TraceFormatError(f"{name}: mahimahi timestamps must be non-negative and non-decreasing")
    period_ms = max(int(ms[-1]), 1)
    if period_ms < 1000:
        # A sub-second trace (e.g. the constant-rate "1") repeats many times per second.
        return np.array([len(ms) * MTU_BYTES * 1000.0 / period_ms])
    seconds = max(1, round(period_ms / 1000))
    bins = np.minimum(ms // 1000, seconds - 1)
    return np.bincount(bins, minlength=seconds).astype(float) * MTU_BYTES


def _pensieve(text: str, name: str) -> np.ndarray:
    rows: list[tuple[float, float]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            rows.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise TraceFormatError(f"{name}:{lineno}: expected 'time_s Mbit/s', got {line.strip()[:40]!r}") from None
    t = np.array([r[0] for r in rows])
    mbps = np.array([r[1] for r in rows])
    if np.any(np.diff(t) <= 0):
        raise TraceFormatError(f"{name}: pensieve timestamps must be strictly increasing")
    if np.any(mbps < 0):
        raise TraceFormatError(f"{name}: negative bandwidth")
    t = t - t[0]
    last_gap = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    edges = np.append(t, t[-1] + last_gap)
    seconds = max(1, math.ceil(edges[-1] - 1e-9))
    out = np.zeros(seconds)
    # Integrate the piecewise-constant rate over each whole second.
    for k in range(len(mbps)):
        a, b = edges[k], edges[k + 1]
        s = int(a)
        while a < b - 1e-12 and s < seconds:
            end = min(b, s + 1.0)
            out[s] += mbps[k] * (end - a)
            a, s = end, s + 1
    covered = np.minimum(np.arange(1, seconds + 1), edges[-1]) - np.arange(seconds)
    return out / np.maximum(covered, 1e-9) * 1e6 / 8


def _five_g(text: str, name: str, run: int) -> np.ndarray:
    matches = list(_RUN.finditer(text))
    runs = [int(m.group(1)) for m in matches]
    if run not in runs:
        raise TraceFormatError(f"{name}: no 'Run {run}' block; runs present: {runs}")
    i = runs.index(run)
    body = text[matches[i].end() : matches[i + 1].start() if i + 1 < len(matches) else len(text)]
    values: list[float] = []
    for token in re.split(r"[,\s]+", body):
        if not token or set(token) == {"#"}:
            continue
        try:
            values.append(float(token))
        except ValueError:
            raise TraceFormatError(f"{name}: Run {run}: not a Mbit/s number: {token[:40]!r}") from None
    if not values:
        raise TraceFormatError(f"{name}: Run {run} has no samples")
    arr = np.array(values)
    if np.any(arr < 0):
        raise TraceFormatError(f"{name}: Run {run}: negative bandwidth")
    return arr * 1e6 / 8


def parse_trace(
    text: str, name: str = "trace", fmt: TraceFormat | None = None, scale: float = 1.0, run: int = 1
) -> BandwidthTrace:
    """Per-second capacity from trace text (format auto-detected unless `fmt` is given)."""
    fmt = fmt or detect_format(text, name)
    if fmt == "mahimahi":
        cap = _mahimahi(text, name)
    elif fmt == "pensieve":
        cap = _pensieve(text, name)
    else:
        cap = _five_g(text, name, run)
    label = f"{name}#run{run}" if fmt == "5g-list" else name
    return BandwidthTrace(label, cap, fmt).scaled(scale)


def load_trace(path: Path | str, scale: float = 1.0, run: int = 1, fmt: TraceFormat | None = None) -> BandwidthTrace:
    """Read a trace file; see :func:`parse_trace`."""
    p = Path(path)
    if not p.is_file():
        raise TraceFormatError(f"trace file not found: {p}")
    text = p.read_text(errors="replace")
    if not text.strip():
        raise TraceFormatError(f"{p.name}: empty file")
    return parse_trace(text, p.name, fmt=fmt, scale=scale, run=run)
