"""Which alerts already reached the cloud, kept on the edge's disk across restarts.

The uplink sends by priority, not in topic order, so the committed offset (the
low watermark of unfinished events) trails events that were already delivered.
After a restart those are read again; this log tells the uplink not to send
their alerts twice. One event id per line, appended and fsync'd after the cloud
acknowledged the alert; the file is compacted to the most recent `keep` ids at
start-up. Without a path it is memory-only (a restart may then resend alerts
with the same UUID, which consumers de-duplicate).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path


class DeliveryLog:
    """A bounded, durable set of delivered event ids."""

    def __init__(self, path: Path | None, keep: int = 100_000) -> None:
        self._path = path
        self._keep = keep
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                for line in path.read_text().splitlines():
                    if line.strip():
                        self._remember(line.strip())
                # Compact: rewrite only what is kept, atomically.
                tmp = path.with_suffix(".tmp")
                tmp.write_text("".join(f"{i}\n" for i in self._ids))
                os.replace(tmp, path)
            self._file = path.open("a", encoding="utf-8")

    def _remember(self, event_id: str) -> None:
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self._keep:
            self._ids.popitem(last=False)

    def __contains__(self, event_id: object) -> bool:
        with self._lock:
            return event_id in self._ids

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)

    def record(self, event_id: str) -> None:
        """The cloud holds this event's alert; durable when this returns."""
        with self._lock:
            self._remember(event_id)
            if self._file is not None:
                self._file.write(event_id + "\n")
                self._file.flush()
                os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
