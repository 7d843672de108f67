"""read_ahead: a source's frames produced in their own thread arrive complete, in order, with its errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from services.common.prefetch import read_ahead


def test_every_item_in_order_whatever_the_chunking() -> None:
    for depth, chunk in [(1, 1), (16, 4), (5, 3), (64, 100)]:
        assert list(read_ahead(iter(range(23)), depth=depth, chunk=chunk)) == list(range(23))
    assert list(read_ahead(iter([]))) == []


def test_an_error_in_the_thread_is_raised_to_the_caller_after_the_items_before_it() -> None:
    def frames() -> Iterator[int]:
        yield from range(3)
        raise OSError("decoder died")

    got: list[int] = []
    with pytest.raises(OSError, match="decoder died"):
        for x in read_ahead(frames(), chunk=1):
            got.append(x)
    assert got == [0, 1, 2]


def test_closing_early_stops_the_thread() -> None:
    produced: list[int] = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = read_ahead(endless(), depth=4, chunk=2)
    assert next(it) == 0
    it.close()
    assert not any(t.name == "read-ahead" for t in threading.enumerate())
    assert len(produced) < 20  # bounded by the queue, not run to exhaustion


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        list(read_ahead(iter([1]), depth=0))
