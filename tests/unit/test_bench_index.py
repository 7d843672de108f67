"""Cut matching and precision/recall/F1 for the indexing benchmark."""

from __future__ import annotations

import pytest

from services.indexing.evaluation import agreement, match_cuts, prf


def test_exact_and_within_tolerance_match() -> None:
    """Cuts inside the tolerance match; one outside is both a false positive and a miss."""
    assert match_cuts([1.0, 6.1, 20.0], [1.0, 6.0, 13.1], 0.5) == (2, 1, 1)


def test_one_to_one_closest_first() -> None:
    """Two of ours near one reference cut: only the closest matches, the other is a false positive."""
    assert match_cuts([5.0, 5.3], [5.25], 0.5) == (1, 1, 0)
    # Greedy by distance gives each reference cut its nearest free partner.
    assert match_cuts([1.0, 1.4], [1.3, 0.6], 0.5) == (2, 0, 0)


def test_tolerance_boundary_is_inclusive() -> None:
    """A gap equal to the tolerance still matches."""
    assert match_cuts([2.5], [2.0], 0.5) == (1, 0, 0)
    assert match_cuts([2.51], [2.0], 0.5) == (0, 1, 1)


def test_empty_sides() -> None:
    """No cuts on either side is perfect agreement; one empty side is all misses or all extras."""
    assert match_cuts([], [], 0.5) == (0, 0, 0)
    assert prf(0, 0, 0) == (1.0, 1.0, 1.0)
    assert match_cuts([], [3.0], 0.5) == (0, 0, 1)
    assert prf(0, 0, 1) == (1.0, 0.0, 0.0)
    assert match_cuts([3.0], [], 0.5) == (0, 1, 0)
    assert prf(0, 1, 0) == (0.0, 1.0, 0.0)


def test_prf_values() -> None:
    """Precision, recall and F1 from counts."""
    p, r, f = prf(2, 1, 1)
    assert p == pytest.approx(2 / 3)
    assert r == pytest.approx(2 / 3)
    assert f == pytest.approx(2 / 3)
    a = agreement([1.0, 6.0], [1.0, 6.0, 13.0], 0.5)
    assert (a.tp, a.fp, a.fn) == (2, 0, 1)
    assert a.as_dict()["recall"] == pytest.approx(0.667)


def test_negative_tolerance_rejected() -> None:
    """A negative tolerance is a caller error."""
    with pytest.raises(ValueError):
        match_cuts([1.0], [1.0], -0.1)
