"""Test doubles that several unit tests share; integration tests use the real components instead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


class FakeClock:
    """A clock the test moves: calling it reads `now`; `sleep` advances it and records the naps."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        """Pass `s` seconds at once."""
        self.sleeps.append(s)
        self.now += s


class FakeModelClient:
    """A TritonModelClient stand-in with no server: records each request, answers through `respond`.

    A subclass's `respond` plays the served model (the same wire functions its model.py uses);
    `params` are the model config's parameters; once `fail_with` is set, every infer raises it.
    """

    def __init__(self, params: Mapping[str, str]) -> None:
        self.params = dict(params)
        self.requests: list[dict[str, np.ndarray]] = []
        self.closed = False
        self.fail_with: Exception | None = None

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Always ready."""

    def parameters(self) -> dict[str, str]:
        """The model config's parameters."""
        return self.params

    def close(self) -> None:
        """Remember that the client closed it."""
        self.closed = True

    def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Record the request, then answer the asked outputs (or raise `fail_with`)."""
        self.requests.append(dict(inputs))
        if self.fail_with is not None:
            raise self.fail_with
        result = self.respond(inputs)
        return {name: result[name] for name in outputs}

    def respond(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output the served model would return for `inputs`."""
        raise NotImplementedError
