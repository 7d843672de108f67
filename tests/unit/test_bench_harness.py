"""The benchmarks' shared harness: JSON lines, percentiles, ratio records, machine info."""

from __future__ import annotations

import json
import math

import pytest

from bench.harness import compare, emit, machine_info, percentiles, ratio


def test_emit_writes_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    """One record, one line, parseable back to the same object."""
    emit({"bench": "x", "n": 3})
    emit({"bench": "y", "v": None})
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [{"bench": "x", "n": 3}, {"bench": "y", "v": None}]


def test_percentiles_interpolate_and_skip_nan() -> None:
    """Linear interpolation as numpy's default; NaN left out; all-NaN gives NaN."""
    assert percentiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (3.0, pytest.approx(4.8))
    assert percentiles([10.0, float("nan"), 20.0], [50]) == (15.0,)
    assert all(math.isnan(v) for v in percentiles([float("nan")]))


def test_ratio_rounds_and_refuses_a_zero_divisor() -> None:
    """A plain ratio, rounded; None when there is nothing to divide by."""
    assert ratio(1.0, 3.0) == 0.333
    assert ratio(1.0, 3.0, 1) == 0.3
    assert ratio(5.0, 0.0) is None


def test_compare_prints_the_record_it_returns(capsys: pytest.CaptureFixture[str]) -> None:
    """Fields first, then each key's ratio; `label` names the first field; `inverse` divides the other way."""
    rec = compare("detector", {"overhead_ratio": 12.0}, {"overhead_ratio": 10.0}, label="model", overhead_ms=2.0)
    assert rec == {"model": "detector", "overhead_ms": 2.0, "overhead_ratio": 1.2}
    slow = compare(
        "retrieve-latency-ratio",
        {"client_over_edge_p50": 2.0, "client_over_edge_build": 0.0},
        {"client_over_edge_p50": 5.0, "client_over_edge_build": 1.0},
        places=2,
        inverse=True,
        reference="qdrant-client local mode",
    )
    assert slow == {
        "bench": "retrieve-latency-ratio",
        "reference": "qdrant-client local mode",
        "client_over_edge_p50": 2.5,
        "client_over_edge_build": None,
    }
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [rec, slow]


def test_machine_info_names_the_machine() -> None:
    """CPUs, Python and the library versions are there (None for a library that is not installed)."""
    info = machine_info()
    assert {"cpus", "cpu_model", "python", "numpy", "onnxruntime", "torch", "git_commit"} <= set(info)
    assert info["cpus"] >= 1 and info["numpy"]
    info["cpus"] = -1
    assert machine_info()["cpus"] >= 1, "callers get a copy"
