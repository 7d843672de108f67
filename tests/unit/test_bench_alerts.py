"""The alert bench's pure scoring: per-clip delay and false alerts, aggregates, rates, the before/after table."""

from __future__ import annotations

import pytest

from bench.alerts import (
    compare,
    frame_index,
    per_hour,
    render_markdown,
    score_clip,
    summarize_clips,
    summarize_footage,
)

A, N = "accident", "normal"
# Frames 0-2 normal, 3-6 accident, 7-8 normal.
CLIP = [N, N, N, A, A, A, A, N, N]


def test_alert_on_first_accident_frame_has_delay_zero() -> None:
    """An alert on the first accident frame is on time with no false alert."""
    r = score_clip(CLIP, [3])
    assert r["first_accident_frame"] == 3
    assert r["alerted_in_accident"] is True
    assert r["delay_frames"] == 0
    assert r["false_alerts"] == 0
    assert r["frames"] == 9 and r["accident_frames"] == 4 and r["normal_frames"] == 5


def test_late_alert_counts_its_delay() -> None:
    """An alert three frames into the accident has delay 3."""
    r = score_clip(CLIP, [6])
    assert r["alerted_in_accident"] is True
    assert r["delay_frames"] == 3


def test_alert_only_on_normal_frames_is_false_and_not_alerted() -> None:
    """Alerts before and after the accident are false alerts; the clip counts as missed."""
    r = score_clip(CLIP, [1, 8])
    assert r["alerted_in_accident"] is False
    assert r["delay_frames"] is None
    assert r["false_alerts"] == 2
    assert r["alerts"] == 2


def test_clip_without_accident_frames() -> None:
    """No accident frames: no first frame, no delay, every alert false."""
    r = score_clip([N] * 4, [2])
    assert r["first_accident_frame"] is None
    assert r["accident_frames"] == 0
    assert r["alerted_in_accident"] is False
    assert r["delay_frames"] is None
    assert r["false_alerts"] == 1
    assert score_clip([N] * 4, [])["false_alerts"] == 0


def test_multiple_alerts_earliest_on_accident_sets_delay() -> None:
    """A false alert before the accident does not set the delay; the first alert on an accident frame does."""
    r = score_clip(CLIP, [5, 0, 4, 8])
    assert r["delay_frames"] == 1
    assert r["false_alerts"] == 2
    assert r["alerts"] == 4
    assert r["alert_frames"] == [0, 4, 5, 8]


def test_accident_frames_need_not_be_contiguous() -> None:
    """The delay counts from the first accident frame even when the alert lands on a later run of them."""
    r = score_clip([A, N, N, A, A], [3])
    assert r["first_accident_frame"] == 0
    assert r["delay_frames"] == 3
    assert r["false_alerts"] == 0


def test_alert_outside_the_clip_is_an_error() -> None:
    """A frame index past the clip's end means the pts mapping is wrong: fail loudly."""
    with pytest.raises(ValueError, match=r"frames 0\.\.8"):
        score_clip(CLIP, [9])


def test_frame_index_rounds_pts() -> None:
    """Image i plays at i / fps; the 3-decimal pts of the alert record rounds back to i."""
    assert frame_index(0.0, 1.0) == 0
    assert frame_index(6.999, 1.0) == 7
    assert frame_index(1.333, 3.0) == 4


def test_summarize_clips() -> None:
    """Shares are over accident clips only; false alerts and normal frames pool every clip."""
    clips = [
        score_clip(CLIP, [3]),  # delay 0
        score_clip(CLIP, [7]),  # missed, 1 false
        score_clip(CLIP, [2, 6]),  # delay 3, 1 false
        score_clip([N] * 4, [1]),  # no accident, 1 false
    ]
    s = summarize_clips(clips)
    assert s["clips"] == 4 and s["accident_clips"] == 3
    assert s["accident_clips_alerted"] == 2
    assert s["accident_clips_alerted_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["alerted_within_2_frames"] == 1
    assert s["alerted_within_2_frames_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["median_delay_frames"] == 1.5
    assert s["false_alerts_normal_frames"] == 3
    assert s["normal_frames"] == 5 * 3 + 4


def test_summarize_clips_with_nothing_alerted() -> None:
    """No alerted clip: the median delay is None, shares are 0 (and None with no accident clip at all)."""
    s = summarize_clips([score_clip(CLIP, [])])
    assert s["median_delay_frames"] is None and s["accident_clips_alerted_share"] == 0.0
    assert summarize_clips([score_clip([N, N], [])])["alerted_within_2_frames_share"] is None


def test_rates_per_hour() -> None:
    """1 alert in 10 minutes is 6/h; no footage has no rate."""
    assert per_hour(1, 600.0) == 6.0
    assert per_hour(0, 0.0) is None
    rows = [{"seconds": 300.0, "alerts": 1}, {"seconds": 300.0, "alerts": 0}]
    assert summarize_footage(rows)["false_alerts_per_hour"] == 6.0


def test_compare_diffs_and_ratios() -> None:
    """Shares and delays compare by difference, false alerts also by ratio; a missing side gives None."""
    before = {
        "accident_clips_alerted_share": 0.5,
        "alerted_within_2_frames_share": 0.25,
        "median_delay_frames": 3,
        "false_alerts_normal_frames": 4,
        "false_alerts_per_hour": 0.0,
    }
    after = {**before, "alerted_within_2_frames_share": 0.75, "false_alerts_normal_frames": 1, "median_delay_frames": 1}
    m = compare(before, after)
    assert m["alerted_within_2_frames_share"]["diff"] == 0.5
    assert m["median_delay_frames"]["diff"] == -2
    assert m["false_alerts_normal_frames"]["ratio"] == 0.25
    assert m["false_alerts_per_hour"]["ratio"] is None  # 0 before: no ratio
    assert compare(before, None)["accident_clips_alerted_share"] == {"before": 0.5, "after": None, "diff": None}


def test_markdown_keeps_both_columns_when_a_profile_is_skipped() -> None:
    """A skipped profile still has its column, saying why; the caption carries the targets."""
    clip = {"type": "clip", "profile": "people", "clip": "c1", **score_clip(CLIP, [4])}
    people = {
        **summarize_clips([clip]),
        **summarize_footage([{"seconds": 100.0, "alerts": 1}]),
    }
    footage = {"v.avi": {"kind": "normal", "seconds": 100.0, "alerts": 1, "false_alerts_per_hour": 36.0}}
    md = render_markdown(
        {"people": people, "traffic": {"skipped": "weights missing"}},
        {"people": {"c1": clip}},
        {"people": footage},
        "test",
        0,
    )
    assert "| Metric | people (before) | traffic (after) | Target |" in md
    assert "not run: weights missing" in md
    assert ">= 80% of accident clips alerted within 2 frames" in md
    assert "<= 1 false alert per 10 minutes" in md
    assert "| 1/1 (100%) |" in md
    assert "alerted, delay 1; 0 false; alerts at 4" in md
    assert "1 false (36.0/h)" in md
