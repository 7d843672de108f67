"""Triton over gRPC (tritonclient), written once for every service's model backends.

What every caller gets: an overall deadline per call, retries with exponential
back-off (and jitter) on ``UNAVAILABLE`` only, and named errors: a model that is
not ready says which model and the server's own reason (a failed load's
message), a request the model rejected keeps the server's status code.

tritonclient is imported when a client is built, not when this module is
imported: service configs import the settings class below.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

T = TypeVar("T")


class TritonError(RuntimeError):
    """A call to Triton failed; the subclasses say how."""


class TritonUnavailable(TritonError):
    """The server could not be reached (or kept answering UNAVAILABLE) within the retries."""


class TritonDeadlineExceeded(TritonError):
    """The call did not finish within its deadline."""


class TritonModelNotReady(TritonError):
    """The model is missing from the server's repository or failed to load; `reason` is the server's."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"Triton model {model!r} is not ready: {reason}")
        self.model = model
        self.reason = reason


class TritonRequestError(TritonError):
    """The model answered this request with an error; `code` is the gRPC status name (e.g. INVALID_ARGUMENT)."""

    def __init__(self, model: str, code: str, message: str) -> None:
        super().__init__(f"Triton model {model!r} rejected the request ({code}): {message}")
        self.model = model
        self.code = code
        self.message = message

    @property
    def invalid_argument(self) -> bool:
        """True when the input itself was wrong: resending it cannot help."""
        return self.code == "INVALID_ARGUMENT"


class TritonClientSettings(BaseModel):
    """Where a model is served and how patiently to call it (shared by every Triton backend's config)."""

    model_config = ConfigDict(extra="forbid")

    # host:port of Triton's gRPC endpoint.
    url: str = "127.0.0.1:8001"
    # "" = the version the server's policy picks.
    model_version: str = ""
    # Overall deadline of one inference call, retries included.
    timeout_s: float = Field(default=10.0, gt=0.0)
    # How long start-up waits for the model to become ready before failing with the server's reason.
    ready_timeout_s: float = Field(default=30.0, ge=0.0)
    max_attempts: int = Field(default=4, ge=1)
    initial_backoff_s: float = Field(default=0.05, ge=0.0)
    max_backoff_s: float = Field(default=1.0, ge=0.0)

    def retry_policy(self) -> RetryPolicy:
        """The retry policy these settings describe."""
        return RetryPolicy(self.max_attempts, self.initial_backoff_s, self.max_backoff_s)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off: initial * multiplier**(n-1), capped, spread by +-jitter so clients do not align."""

    max_attempts: int = 4
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def backoff_s(self, retry: int, u: float = 0.5) -> float:
        """Delay before retry number `retry` (1 = the first retry); `u` in [0, 1) picks a point in the jitter."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (retry - 1))
        return max(0.0, base * (1.0 + self.jitter * (2.0 * u - 1.0)))


def status_name(exc: BaseException) -> str:
    """The gRPC status name of a tritonclient error ('UNAVAILABLE'), or '' when it carries none."""
    status = getattr(exc, "status", None)
    raw = status() if callable(status) else None
    return str(raw).removeprefix("StatusCode.") if raw else ""


def is_unavailable(exc: BaseException) -> bool:
    """Retry only what a later attempt can fix: the server (or its connection) being unavailable."""
    return status_name(exc) == "UNAVAILABLE"


def call_with_retries(
    attempt: Callable[[float], T],
    *,
    deadline_s: float,
    policy: RetryPolicy,
    retryable: Callable[[BaseException], bool] = is_unavailable,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    uniform: Callable[[], float] = random.random,
) -> T:
    """Call attempt(remaining_s) until it returns, fails for good, or attempts / the deadline run out.

    The last error is re-raised as is; the deadline is checked before every attempt and no back-off
    sleeps past it, so a caller never waits longer than `deadline_s` plus one attempt's own timeout.
    """
    end = clock() + deadline_s
    for n in range(1, policy.max_attempts + 1):
        remaining = end - clock()
        if remaining <= 0:
            raise TritonDeadlineExceeded(f"no time left for attempt {n} within {deadline_s:.3f} s")
        try:
            return attempt(remaining)
        except Exception as exc:
            if n == policy.max_attempts or not retryable(exc):
                raise
            delay = policy.backoff_s(n, uniform())
            if clock() + delay >= end:
                raise
            log.info("attempt %d failed (%s); retrying in %.3f s", n, status_name(exc) or type(exc).__name__, delay)
            sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")


def _numpy_to_input(name: str, array: np.ndarray) -> Any:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    dtype = "BYTES" if array.dtype == np.object_ else np_to_triton_dtype(array.dtype)
    inp = grpcclient.InferInput(name, list(array.shape), dtype)
    inp.set_data_from_numpy(array)
    return inp


class TritonModelClient:
    """One model on one Triton server, over gRPC."""

    def __init__(self, settings: TritonClientSettings, model_name: str) -> None:
        import tritonclient.grpc as grpcclient

        self.settings = settings
        self.model_name = model_name
        self._policy = settings.retry_policy()
        self._client: Any = grpcclient.InferenceServerClient(url=settings.url)

    def close(self) -> None:
        """Close the gRPC channel."""
        self._client.close()

    def model_state(self) -> tuple[str, str]:
        """(state, reason) of this model in the server's repository index; state 'ABSENT' when it is not there."""
        index = self._client.get_model_repository_index(as_json=True, client_timeout=5.0)
        entries = [m for m in index.get("models", []) if m.get("name") == self.model_name]
        version = self.settings.model_version
        if version:
            entries = [m for m in entries if m.get("version", "") in ("", version)]
        if not entries:
            names = sorted({m.get("name", "") for m in index.get("models", [])})
            return "ABSENT", f"no model {self.model_name!r} in the server's repository (it has {names})"
        entry = entries[0]
        return str(entry.get("state", "UNKNOWN")), str(entry.get("reason", ""))

    def _not_ready_reason(self) -> str:
        try:
            state, reason = self.model_state()
        except Exception as exc:
            return f"server at {self.settings.url} unreachable ({status_name(exc) or type(exc).__name__}: {exc})"
        return f"state {state}" + (f": {reason}" if reason else "")

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until the model is ready; raise TritonModelNotReady with the server's reason otherwise.

        A model whose load failed (state UNAVAILABLE with a reason) fails at once: only a change to the
        repository can fix it, so waiting would only delay the message.
        """
        timeout_s = self.settings.ready_timeout_s if timeout_s is None else timeout_s
        end = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            try:
                if self._client.is_model_ready(self.model_name, self.settings.model_version, client_timeout=5.0):
                    return
                state, reason = self.model_state()
                if state == "UNAVAILABLE" and reason:
                    raise TritonModelNotReady(self.model_name, f"failed to load: {reason}")
                last = f"state {state}" + (f": {reason}" if reason else "")
            except TritonModelNotReady:
                raise
            except Exception as exc:
                last = f"server at {self.settings.url} unreachable ({status_name(exc) or type(exc).__name__}: {exc})"
            if time.monotonic() + delay > end:
                raise TritonModelNotReady(self.model_name, f"{last} (waited {timeout_s:.1f} s)")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def parameters(self) -> dict[str, str]:
        """The model's config.pbtxt `parameters` as strings."""
        config = self._client.get_model_config(self.model_name, self.settings.model_version, as_json=True)
        params = config.get("config", {}).get("parameters", {})
        return {k: str(v.get("string_value", "")) for k, v in params.items()}

    def infer(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str], timeout_s: float | None = None
    ) -> dict[str, np.ndarray]:
        """Run one request; the deadline covers every retry. Raises the TritonError subclass that fits."""
        import tritonclient.grpc as grpcclient

        infer_inputs = [_numpy_to_input(name, array) for name, array in inputs.items()]
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        deadline = self.settings.timeout_s if timeout_s is None else timeout_s

        def attempt(remaining_s: float) -> Any:
            return self._client.infer(
                self.model_name,
                infer_inputs,
                model_version=self.settings.model_version,
                outputs=requested,
                client_timeout=remaining_s,
            )

        try:
            result = call_with_retries(attempt, deadline_s=deadline, policy=self._policy)
        except TritonError:
            raise
        except Exception as exc:
            raise self._map_error(exc, deadline) from exc
        return {name: result.as_numpy(name) for name in outputs}

    def _map_error(self, exc: Exception, deadline_s: float) -> TritonError:
        code = status_name(exc)
        get_message = getattr(exc, "message", None)
        message = str(get_message()) if callable(get_message) else str(exc)
        if code == "DEADLINE_EXCEEDED":
            return TritonDeadlineExceeded(f"{self.model_name}: no answer within {deadline_s:.3f} s")
        if code == "UNAVAILABLE":
            try:
                live = bool(self._client.is_server_live(client_timeout=2.0))
            except Exception:
                live = False
            if not live:
                return TritonUnavailable(f"Triton at {self.settings.url} unavailable: {message}")
            return TritonModelNotReady(self.model_name, f"{message}; {self._not_ready_reason()}")
        # An unknown or unloaded model: tell which, with the repository's reason.
        if code == "NOT_FOUND" or "unknown model" in message or "is not ready" in message or "not found" in message:
            return TritonModelNotReady(self.model_name, f"{message}; {self._not_ready_reason()}")
        return TritonRequestError(self.model_name, code or "UNKNOWN", message)
