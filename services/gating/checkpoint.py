"""Incident-grouping state saved with the frame it is as of, so that a restarted gating alerts each incident once.

Why a checkpoint, and why here (issue 13): gating's offsets are committed behind the frames it gated, and
the incident grouper lived only in memory. Killed mid-incident, a new process re-read the incident's later
frames with an empty grouper, opened it again and wrote a second alert with a new id. Event ids are already
a function of the incident (UUID5 of its camera and opening frame, `pipeline.event_id_for`), so a frame
gated twice republishes the same id, which the uplink de-duplicates; what was missing is the grouper's
memory of incidents opened *before* the committed offset. Each camera's open incidents are therefore saved
after every gated batch, once its events are flushed and before its offsets are acknowledged, together with
the position (topic, partition, offset) of the last frame they reflect:

* the checkpoint is never behind the committed offset (saved before the ack), so no frame's effect on the
  grouper is forgotten; frames re-delivered at or before its position are skipped, not gated twice;
* a crash after the flush but before the save re-gates those frames from the previous checkpoint: the
  incident they open has the same deterministic id, a duplicate record the uplink drops, never a new alert.

The store is a directory of small JSON files, one per camera, replaced atomically (write, then rename):
on the edge volume in a deployment. Kafka commit metadata would keep it atomic with the offset, but Tansu
drops it (committed metadata reads back as None), and a compacted state topic needs reliable end offsets
to be read back, which Tansu does not give with batched produce. A camera owned by another replica after a
rebalance finds its checkpoint only if the replicas share the volume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from services.common.bus import Message

log = logging.getLogger(__name__)

_VERSION = 1


@dataclass(frozen=True)
class FramePosition:
    """Where a frame sits in the frames topic, and when it was captured."""

    topic: str
    partition: int
    offset: int
    capture_time_ns: int = 0

    @classmethod
    def of(cls, msg: Message, capture_time_ns: int) -> FramePosition:
        """The position of `msg`, whose frame was captured at `capture_time_ns`."""
        return cls(msg.topic, msg.partition, msg.offset, capture_time_ns)

    def covers(self, msg: Message, capture_time_ns: int) -> bool:
        """True when `msg` is this frame or an earlier one of the same partition (its effect is already saved).

        A frame captured after this one is new even at a lower offset: the broker lost its log (a memory
        broker restarted, a topic re-created) and offsets began again.
        """
        return (
            msg.topic == self.topic
            and msg.partition == self.partition
            and msg.offset <= self.offset
            and capture_time_ns <= self.capture_time_ns
        )


@dataclass(frozen=True)
class CameraCheckpoint:
    """One camera's open incidents as of the frame at `position` (stream time `pts_s`)."""

    camera_id: str
    position: FramePosition
    pts_s: float
    incidents: list[dict[str, Any]]


class IncidentStore:
    """Per-camera checkpoints as JSON files in `directory`, each replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, camera_id: str) -> Path:
        # Camera ids are free text (rtsp names, slashes): quoted, they are safe file names.
        return self.directory / f"incidents-{quote(camera_id, safe='')}.json"

    def load(self, camera_id: str) -> CameraCheckpoint | None:
        """The camera's last checkpoint; None when it has none, or when it is unreadable (set aside, logged)."""
        path = self._path(camera_id)
        try:
            data = json.loads(path.read_text())
            if data.get("version") != _VERSION or data["camera_id"] != camera_id:
                raise ValueError(f"version {data.get('version')} / camera {data.get('camera_id')!r}")
            pos = data["position"]
            return CameraCheckpoint(
                camera_id=camera_id,
                position=FramePosition(
                    str(pos["topic"]), int(pos["partition"]), int(pos["offset"]), int(pos["capture_time_ns"])
                ),
                pts_s=float(data["pts_s"]),
                incidents=list(data["incidents"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Keep the file for a person to look at; start this camera without a checkpoint.
            aside = path.with_suffix(".unreadable")
            log.error("incident checkpoint %s is unreadable (%r); moved to %s, starting without it", path, exc, aside)
            # A read-only volume cannot move it either; the error above already says what to look at.
            with contextlib.suppress(OSError):
                path.replace(aside)
            return None

    def save(self, checkpoint: CameraCheckpoint) -> None:
        """Write `checkpoint`, replacing the camera's previous one atomically; OSError when the volume fails."""
        path = self._path(checkpoint.camera_id)
        tmp = path.with_suffix(".tmp")
        pos = checkpoint.position
        tmp.write_text(
            json.dumps(
                {
                    "version": _VERSION,
                    "camera_id": checkpoint.camera_id,
                    "position": {
                        "topic": pos.topic,
                        "partition": pos.partition,
                        "offset": pos.offset,
                        "capture_time_ns": pos.capture_time_ns,
                    },
                    "pts_s": checkpoint.pts_s,
                    "incidents": checkpoint.incidents,
                }
            )
        )
        # No fsync: the case is a killed process, whose writes the kernel keeps; fsync per frame would
        # wear an edge device's flash for a node crash that loses the pod's other state anyway.
        os.replace(tmp, path)
