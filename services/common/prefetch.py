"""read_ahead: run a producer (a source's decoding) in a thread of its own, a bounded distance ahead of its consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")


def read_ahead(items: Iterable[T], depth: int = 16, chunk: int = 4) -> Generator[T, None, None]:
    """`items` (e.g. a source's frames()) produced in a thread of its own, up to `depth` ahead of the caller.

    OpenCV releases the GIL while it decodes, so on two cores the next frames decode while the
    caller works on this one. Items cross in lists of `chunk`: a 320x240 frame decodes in ~0.15 ms,
    and one queue hand-off per frame would cost a noticeable share of that (use chunk=1 for a live
    stream, where a frame should not wait for the next). An exception in the thread is raised
    here; closing this generator stops the thread at its next hand-off.
    """
    if depth < 1 or chunk < 1:
        raise ValueError(f"depth and chunk must be >= 1, got {depth}, {chunk}")
    handoff: queue.Queue[list[T] | BaseException | None] = queue.Queue(maxsize=max(1, depth // chunk))
    stop = threading.Event()

    def put(item: list[T] | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        batch: list[T] = []
        try:
            for item in items:
                batch.append(item)
                if len(batch) >= chunk:
                    if not put(batch):
                        return
                    batch = []
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)
            return
        if not batch or put(batch):
            put(None)

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            got = handoff.get()
            if got is None:
                return
            if isinstance(got, BaseException):
                raise got
            yield from got
    finally:
        stop.set()
        thread.join()
