"""Event arrivals for the uplink simulator: the paper's named patterns, or a JSON-lines event file.

Byte costs come from real gating output: ``event_sizes.json`` beside this
module holds (c_json, c_roi, c_box, level, score) of every event the real
pipeline wrote over the shared videos (``python -m bench.measure_event_sizes``:
ONNX fall detector + detector-prior structurer, ``target_classes="*"`` so that
upright people open incidents too, 5 fps). 21 events, in bytes:

=========  =======  =======  ========
unit       min      median   max
=========  =======  =======  ========
c_json         185      191       268
c_roi          812    2,315   136,161
c_box       17,239   20,593   143,135
=========  =======  =======  ========

Levels: 14 of 21 are level 1 (the detector's "Fall" class, which it also
gives to some cars), 7 level 0; scores 0.13-0.75. The ROI is smaller than the
boxed image in every sample, so DAT's eq. 14 always picks the ROI.

Each generated event draws one whole sample (sizes, level and score together,
uniformly with replacement). Patterns (DAT 4.1.1 names them, without
parameters; these are ours):

* ``low`` (sparse): Poisson arrivals, 0.5 events/s.
* ``medium`` (continuous): Poisson arrivals, 2 events/s.
* ``burst``: bursts as a Poisson process of 0.1 bursts/s, each of 10-30
  events (uniform) whose arrivals spread uniformly over 1 s; 2 events/s on
  average, up to 30 within a second.

Event-file format, one JSON object per line, exactly these keys:
``{"id": str, "arrival_s": float, "level": int, "score": float, "c_json": int,
"c_roi": int, "c_box": int}`` (bytes; blank lines allowed).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from services.uplink.scheduler import PendingEvent

SIZES_PATH = Path(__file__).resolve().parent / "event_sizes.json"
EVENT_KEYS = ("id", "arrival_s", "level", "score", "c_json", "c_roi", "c_box")


class EventFileError(ValueError):
    """An event file line is not a valid event; the message names the line."""


@dataclass(frozen=True)
class SizeSample:
    """One measured event: its byte costs and priority inputs."""

    level: int
    score: float
    c_json: int
    c_roi: int
    c_box: int


@dataclass(frozen=True)
class Pattern:
    """An arrival pattern: Poisson events, or Poisson bursts of several events."""

    name: str
    description: str
    rate_hz: float
    burst_min: int = 1
    burst_max: int = 1
    burst_spread_s: float = 0.0


PATTERNS: Mapping[str, Pattern] = {
    "low": Pattern("low", "sparse: Poisson, 0.5 events/s", rate_hz=0.5),
    "medium": Pattern("medium", "continuous: Poisson, 2 events/s", rate_hz=2.0),
    "burst": Pattern(
        "burst",
        "bursty: Poisson bursts at 0.1/s of 10-30 events spread over 1 s",
        rate_hz=0.1,
        burst_min=10,
        burst_max=30,
        burst_spread_s=1.0,
    ),
}


def parse_size_samples(doc: Mapping[str, Any]) -> list[SizeSample]:
    """The samples of an event_sizes.json document."""
    out = [
        SizeSample(int(s["level"]), float(s["score"]), int(s["c_json"]), int(s["c_roi"]), int(s["c_box"]))
        for s in doc["samples"]
    ]
    if not out:
        raise ValueError("event size file has no samples")
    return out


@cache
def default_size_samples() -> tuple[SizeSample, ...]:
    """The measured samples shipped beside this module (read once, on first use)."""
    return tuple(parse_size_samples(json.loads(SIZES_PATH.read_text())))


def generate(
    pattern: str | Pattern,
    horizon_s: float,
    seed: int = 0,
    samples: Sequence[SizeSample] | None = None,
) -> list[PendingEvent]:
    """Events of `pattern` arriving in [0, horizon_s), sizes drawn from `samples`; deterministic per seed."""
    pat = PATTERNS[pattern] if isinstance(pattern, str) else pattern
    if horizon_s <= 0:
        raise ValueError(f"horizon_s must be > 0, got {horizon_s}")
    pool = list(samples) if samples is not None else list(default_size_samples())
    rng = np.random.default_rng(seed)
    arrivals: list[float] = []
    t = 0.0
    while True:
        t += float(rng.exponential(1.0 / pat.rate_hz))
        if t >= horizon_s:
            break
        n = int(rng.integers(pat.burst_min, pat.burst_max + 1))
        offsets = rng.uniform(0.0, pat.burst_spread_s, n) if pat.burst_spread_s > 0 else np.zeros(n)
        arrivals.extend(t + float(o) for o in offsets if t + o < horizon_s)
    arrivals.sort()
    picks = rng.integers(0, len(pool), len(arrivals))
    return [
        PendingEvent(
            event_id=f"{pat.name}-{seed}-{k:05d}",
            arrival_s=round(a, 6),
            level=pool[p].level,
            score=pool[p].score,
            c_json=pool[p].c_json,
            c_roi=pool[p].c_roi,
            c_box=pool[p].c_box,
        )
        for k, (a, p) in enumerate(zip(arrivals, picks, strict=True))
    ]


def _field(obj: Mapping[str, Any], key: str, kind: type, lineno: int) -> Any:
    value = obj[key]
    # bool is an int subclass; a JSON true is not a level.
    if isinstance(value, bool) or not isinstance(value, kind):
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        raise EventFileError(f"line {lineno}: {key!r} must be {kind.__name__}, got {json.dumps(value)}")
    return value


def parse_events(lines: Iterable[str]) -> list[PendingEvent]:
    """Events from JSON lines in the event-file format, sorted by arrival; EventFileError names the line."""
    events: list[PendingEvent] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EventFileError(f"line {lineno}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise EventFileError(f"line {lineno}: expected a JSON object")
        missing = [k for k in EVENT_KEYS if k not in obj]
        extra = sorted(set(obj) - set(EVENT_KEYS))
        if missing or extra:
            raise EventFileError(f"line {lineno}: missing keys {missing}, unknown keys {extra}")
        eid = _field(obj, "id", str, lineno)
        arrival = _field(obj, "arrival_s", float, lineno)
        level = _field(obj, "level", int, lineno)
        score = _field(obj, "score", float, lineno)
        costs = [_field(obj, k, int, lineno) for k in ("c_json", "c_roi", "c_box")]
        if not eid:
            raise EventFileError(f"line {lineno}: 'id' must not be empty")
        if eid in seen:
            raise EventFileError(f"line {lineno}: duplicate id {eid!r}")
        if not (np.isfinite(arrival) and arrival >= 0):
            raise EventFileError(f"line {lineno}: 'arrival_s' must be finite and >= 0, got {arrival}")
        if level < 0:
            raise EventFileError(f"line {lineno}: 'level' must be >= 0, got {level}")
        if not (np.isfinite(score) and score >= 0):
            raise EventFileError(f"line {lineno}: 'score' must be finite and >= 0, got {score}")
        if costs[0] < 1 or min(costs[1:]) < 0:
            raise EventFileError(f"line {lineno}: c_json must be >= 1 and c_roi, c_box >= 0 bytes, got {costs}")
        seen.add(eid)
        events.append(PendingEvent(eid, float(arrival), level, float(score), *costs))
    if not events:
        raise EventFileError("event file has no events")
    return sorted(events, key=lambda e: e.arrival_s)


def load_events(path: Path | str) -> list[PendingEvent]:
    """Read an event file; see :func:`parse_events`."""
    p = Path(path)
    if not p.is_file():
        raise EventFileError(f"event file not found: {p}")
    with p.open() as f:
        try:
            return parse_events(f)
        except EventFileError as exc:
            raise EventFileError(f"{p}: {exc}") from None


def event_to_json(e: PendingEvent) -> str:
    """One event as a line of the event-file format."""
    return json.dumps(
        {
            "id": e.event_id,
            "arrival_s": e.arrival_s,
            "level": e.level,
            "score": e.score,
            "c_json": e.c_json,
            "c_roi": e.c_roi,
            "c_box": e.c_box,
        }
    )
