"""The retrieval benchmark's pure parts (data generators, coverage metric) and a --quick smoke run."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from bench.retrieve import (
    CASES,
    GEN_BATCH,
    SPECS,
    ArrayStore,
    akr_memory,
    centres,
    cluster_record,
    coverage,
    main,
    memory_points,
    parse_sizes,
    payload_for,
    place_regions,
    point_id,
    write_cluster_records,
)
from services.memory.frame_store import FrameStore


def test_memory_generator_is_deterministic_and_prefix_stable() -> None:
    """Point i's id, vectors and payload depend on i alone: a smaller memory is a prefix of a larger one."""
    cents = centres(3)
    small = [p for batch in memory_points(3, 0, 300, cents) for p in batch]
    again = [p for batch in memory_points(3, 0, 300, cents) for p in batch]
    large = [p for batch in memory_points(3, 0, GEN_BATCH + 200, cents) for p in batch]
    grown = [p for batch in memory_points(3, 300, GEN_BATCH + 200, cents) for p in batch]
    assert len(small) == 300 and len(large) == GEN_BATCH + 200
    assert [b.point_id for b in small + grown] == [p.point_id for p in large]
    for a, b in zip(small, large[:300], strict=True):
        assert a.payload == b.payload
        for name in SPECS:
            np.testing.assert_array_equal(a.vectors[name], b.vectors[name])
    np.testing.assert_array_equal(small[7].vectors["text"], again[7].vectors["text"])
    other = next(iter(memory_points(4, 0, 1, centres(4))))[0]
    assert not np.allclose(other.vectors["text"], small[0].vectors["text"])


def test_memory_vectors_and_payloads_have_the_intended_shape() -> None:
    """Unit vectors of the default embedder's sizes; 8 cameras; clusters in time order on each camera."""
    points = [p for batch in memory_points(1, 0, 800, centres(1)) for p in batch]
    for name, dim in SPECS.items():
        mat = np.stack([p.vectors[name] for p in points])
        assert mat.shape == (800, dim)
        np.testing.assert_allclose(np.linalg.norm(mat, axis=1), 1.0, atol=1e-5)
    # Clustered, not uniform: some pairs are much closer than random 384-d unit vectors (|cos| ~ 0.05).
    text = np.stack([p.vectors["text"] for p in points])
    assert (text[:200] @ text[:200].T - np.eye(200)).max() > 0.3
    assert {p.payload.camera_id for p in points} == {f"cam-{k}" for k in range(8)}
    cam0 = [p.payload for p in points if p.payload.camera_id == "cam-0"]
    assert all(a.end_s < b.start_s for a, b in pairwise(cam0))
    assert all(2 <= pl.frame_count <= 8 and pl.start_s <= pl.index_time_s <= pl.end_s for pl in cam0)


def test_cluster_records_are_readable_by_the_frame_store(tmp_path: Path) -> None:
    """The bench writes FrameStore's layout; get_cluster reads it back."""
    frames = FrameStore(tmp_path)
    pid = point_id(0, 5)
    rec = cluster_record(pid, payload_for(5))
    write_cluster_records(frames.root, [rec])
    assert frames.get_cluster(rec.camera_id, pid) == rec
    assert len(rec.members) == payload_for(5).frame_count


def test_regions_do_not_overlap_and_hold_the_relevant_frames() -> None:
    """Each case's regions: the asked count, the same total size, apart from every other region."""
    regions = place_regions(2000, 48, CASES)
    taken = np.zeros(2000, dtype=int)
    for case in CASES:
        spans = regions[case.name]
        assert len(spans) == case.regions
        assert sum(hi - lo for lo, hi in spans) == 48
        for lo, hi in spans:
            taken[lo:hi] += 1
    assert taken.max() == 1
    with pytest.raises(ValueError):
        place_regions(50, 48, CASES)


def test_akr_memory_realises_its_target_cosines() -> None:
    """Relevant frames score above the background for their topic's direction, as built."""
    mem = akr_memory(5, n=600, relevant=48)
    sims = mem.text @ mem.topics.T
    np.testing.assert_allclose(sims.T, mem.target, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(mem.text, axis=1), 1.0, atol=1e-5)
    for c, case in enumerate(CASES):
        rel = np.zeros(600, dtype=bool)
        for lo, hi in mem.regions[case.name]:
            rel[lo:hi] = True
        assert sims[rel, c].mean() > sims[~rel, c].mean() + 0.15
    assert len(mem.relevant_ids("dispersed-8")) == 48


def test_array_store_filters_and_ranks_like_the_interface_says() -> None:
    """Exact cosine, best first, camera + span-overlap filter."""
    store = ArrayStore()
    store.ensure_collection(SPECS)
    points = next(iter(memory_points(2, 0, 64, centres(2))))
    store.upsert(points)
    q = points[3].vectors["text"]
    hits = store.scores_in_range("text", q)
    assert len(hits) == 64 and hits[0].point_id == points[3].point_id
    assert all(a.score >= b.score for a, b in pairwise(hits))
    sub = store.scores_in_range("text", q, camera_id="cam-1", since_s=8.0, until_s=24.0)
    assert sub and all(h.payload.camera_id == "cam-1" for h in sub)
    assert all(h.payload.end_s >= 8.0 and h.payload.start_s <= 24.0 for h in sub)
    assert store.count(camera_id="cam-1", since_s=8.0, until_s=24.0) == len(sub)


def test_coverage_metric() -> None:
    """Region share, within-region spread over total length, and precision."""
    regions = [(0.0, 10.0), (100.0, 110.0), (200.0, 220.0)]
    share, span, precision = coverage([1.0, 9.0, 105.0, 50.0], regions)
    assert share == pytest.approx(2 / 3)
    assert span == pytest.approx(8.0 / 40.0)
    assert precision == pytest.approx(3 / 4)
    assert coverage([], regions) == (0.0, 0.0, 0.0)
    assert coverage([0.0, 10.0, 100.0, 110.0, 200.0, 220.0], regions) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        coverage([1.0], [])


def test_parse_sizes() -> None:
    """Plain integers and k/M suffixes, sorted and unique; 'none' skips a store."""
    assert parse_sizes("10k, 1000,100k,1k") == [1000, 10_000, 100_000]
    assert parse_sizes("1M,2.5k") == [2500, 1_000_000]
    assert parse_sizes("none") == []


def test_quick_run_prints_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--quick runs every part end to end and every stdout line is a JSON object."""
    main(
        [
            "--quick",
            "--sizes",
            "200",
            "--client-sizes",
            "200",
            "--queries",
            "3",
            "--embed-questions",
            "0",
            "--akr-frames",
            "400",
            "--akr-queries",
            "5",
            "--tmp-dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr()
    records = [json.loads(line) for line in out.out.splitlines()]
    assert all(isinstance(r, dict) for r in records)
    benches = {r["bench"] for r in records}
    assert {
        "retrieve-build",
        "retrieve-latency",
        "retrieve-latency-breakdown",
        "retrieve-latency-ratio",
        "retrieve-akr-vs-topk",
        "retrieve-akr-vs-topk-ratio",
        "retrieve-summary",
    } <= benches
    cells = [r for r in records if r["bench"] == "retrieve-latency" and "store" in r]
    assert {(r["store"], r["filter"]) for r in cells} == {
        (s, f) for s in ("qdrant-edge", "qdrant-client-local") for f in ("none", "camera+range")
    }
    assert all(r["p95_ms"] >= r["p50_ms"] > 0 and r["queries"] == 3 for r in cells)
    methods = {(r["case"], r["method"]) for r in records if r["bench"] == "retrieve-akr-vs-topk" and "case" in r}
    assert {(c.name, "top-k-n_max") for c in CASES} <= methods
    assert "bench-retrieve summary" in out.err
    assert list(tmp_path.iterdir()) == []
