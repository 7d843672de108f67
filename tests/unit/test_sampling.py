"""Venus retrieval maths: softmax with temperature, sampling, AKR stopping rule and bounds."""

from __future__ import annotations

import numpy as np
import pytest

from services.memory.sampling import (
    Draws,
    frames_from_clusters,
    max_frames_for_budget,
    min_frames,
    sample_adaptive,
    sample_fixed,
    softmax,
    top_k,
)


def test_softmax_temperature() -> None:
    s = np.array([0.9, 0.5, 0.1])
    cold, hot = softmax(s, 0.01), softmax(s, 100.0)
    assert cold.sum() == pytest.approx(1) and hot.sum() == pytest.approx(1)
    assert cold[0] > 0.999 and np.ptp(hot) < 0.01
    assert list(np.argsort(-softmax(s, 0.1))) == [0, 1, 2]
    with pytest.raises(ValueError):
        softmax(s, 0)


def test_softmax_is_stable_for_large_scores() -> None:
    p = softmax(np.array([1000.0, 999.0]), 0.01)
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1)


def test_fixed_sampling_follows_the_distribution() -> None:
    p = np.array([0.7, 0.2, 0.1])
    d = sample_fixed(p, 10_000, np.random.default_rng(0))
    assert d.draws == 10_000 and sum(d.counts.values()) == 10_000
    assert d.counts[0] / 10_000 == pytest.approx(0.7, abs=0.02)


def test_akr_stops_at_theta_but_not_before_n_min() -> None:
    peaked = np.array([0.95, 0.03, 0.02])
    d = sample_adaptive(peaked, theta=0.9, n_min=1, n_max=32, rng=np.random.default_rng(1))
    assert d.covered_probability >= 0.9 and d.draws <= 3
    d = sample_adaptive(peaked, theta=0.9, n_min=8, n_max=32, rng=np.random.default_rng(1))
    assert d.draws >= 8


def test_akr_needs_more_draws_for_a_flat_distribution() -> None:
    rng = np.random.default_rng(2)
    flat = softmax(np.zeros(50), 1.0)
    peaked = softmax(np.r_[np.ones(3), np.zeros(47)], 0.05)
    n_flat = np.mean([sample_adaptive(flat, 0.5, 1, 200, rng).draws for _ in range(20)])
    n_peak = np.mean([sample_adaptive(peaked, 0.5, 1, 200, rng).draws for _ in range(20)])
    assert n_flat > 5 * n_peak


def test_akr_upper_bound_wins() -> None:
    d = sample_adaptive(softmax(np.zeros(100), 1.0), theta=0.99, n_min=1, n_max=10, rng=np.random.default_rng(3))
    assert d.draws == 10 and d.covered_probability < 0.99


def test_bounds() -> None:
    assert max_frames_for_budget(1_000_000, 2.0, 50_000, cap=64) == 40
    assert max_frames_for_budget(10_000, 1.0, 50_000, cap=64) == 1
    assert max_frames_for_budget(1e9, 10.0, 1000, cap=64) == 64
    assert min_frames(32, 0.25) == 8 and min_frames(3, 0.0) == 1 and min_frames(4, 1.0) == 4
    with pytest.raises(ValueError):
        sample_adaptive(np.array([1.0]), 0.5, n_min=5, n_max=2, rng=np.random.default_rng())


def test_uniform_in_cluster_sampling() -> None:
    rng = np.random.default_rng(4)
    clusters = [[10, 11, 12, 13], [20], [30, 31]]
    out = frames_from_clusters(Draws({0: 3, 1: 5, 2: 1}, 9, 1.0), clusters, rng)
    by_cluster: dict[int, list[int]] = {}
    for i, f in out:
        by_cluster.setdefault(i, []).append(f)
    assert len(by_cluster[0]) == 3 and len(set(by_cluster[0])) == 3  # without replacement
    assert by_cluster[1] == [20]  # capped at the cluster's size
    assert len(by_cluster[2]) == 1 and by_cluster[2][0] in clusters[2]
    # Uniform: over many draws every member of cluster 0 appears about equally often.
    seen = [f for _ in range(2000) for i, f in frames_from_clusters(Draws({0: 1}, 1, 1.0), clusters, rng)]
    counts = np.bincount(np.array(seen) - 10, minlength=4)
    assert counts.min() > 400


def test_top_k_is_greedy() -> None:
    assert sorted(top_k(np.array([0.1, 0.9, 0.5, 0.8]), 2).counts) == [1, 3]


def _akr_by_choice(p: np.ndarray, theta: float, n_min: int, n_max: int, rng: np.random.Generator) -> Draws:
    """AKR as eq. 6 reads, one `rng.choice(p=p)` per draw: the reference the inverse-CDF version must equal."""
    counts: dict[int, int] = {}
    covered, draws = 0.0, 0
    while draws < n_max:
        i = int(rng.choice(p.size, p=p))
        covered += float(p[i]) if i not in counts else 0.0
        counts[i] = counts.get(i, 0) + 1
        draws += 1
        if draws >= n_min and covered >= theta - 1e-12:
            break
    return Draws(counts, draws, covered)


@pytest.mark.parametrize("seed", range(40))
def test_akr_draws_exactly_what_per_draw_choice_would(seed: int) -> None:
    """The cumulative sum is built once, yet every pick equals rng.choice's with the same generator."""
    r = np.random.default_rng(seed)
    n = int(r.integers(1, 5000))
    p = softmax(r.normal(0.2, 0.1, n), float(r.choice([0.02, 0.05, 0.3])))
    got = sample_adaptive(p, 0.8, 4, 32, np.random.default_rng(seed + 100))
    assert got == _akr_by_choice(p, 0.8, 4, 32, np.random.default_rng(seed + 100))


@pytest.mark.parametrize("seed", range(20))
def test_top_k_equals_a_stable_full_sort_with_ties(seed: int) -> None:
    r = np.random.default_rng(seed)
    scores = np.round(r.normal(size=int(r.integers(1, 400))), 1)  # many ties
    for k in (0, 1, 5, scores.size - 1, scores.size, scores.size + 3):
        want = [int(i) for i in np.argsort(-scores, kind="stable")[: max(k, 0)]]
        assert list(top_k(scores, k).counts) == want
