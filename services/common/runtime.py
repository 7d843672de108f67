"""What every service process shares: a built `Stage`, started, run until SIGTERM/SIGINT, stopped in order.

A service's composition root (`services/<svc>/bootstrap.py: build(settings, bus, **overrides)`)
returns a `Stage`: the consumers and loops that run on threads, an optional gRPC server, and
what must happen on the way out. The service's `__main__` hands it to `run_service`; the
embedded pipeline (`vigil run`) starts the same stages on one bus, without their servers.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from services.common.bus import Bus, Consumer
from services.common.bus.factory import make_bus
from services.common.config import CommonSettings
from services.common.logging import configure_logging
from services.common.metrics import start_metrics_server

log = logging.getLogger(__name__)

Loop = Callable[[threading.Event], None]


class StageError(RuntimeError):
    """The stage cannot be built as configured (a source that will not open, missing weights): exit 2."""


class StageFailed(RuntimeError):
    """A stage's thread died while it ran (see Stage.fail): its work is incomplete."""


@dataclass
class GrpcEndpoint:
    """A built (not started) gRPC server, its bound port and its health servicer."""

    server: grpc.Server
    port: int
    health: Any = None


class Stage:
    """A service built from settings: what runs, what it serves, and how it ends.

    The order on the way out is fixed: the server drains, the threads end, `on_drained`
    hooks run (work that must still be acknowledged, e.g. indexing's open clusters), the
    consumers close (committing what was acknowledged), then `closers` release resources.
    """

    def __init__(
        self,
        name: str,
        *,
        consumers: Sequence[Consumer] = (),
        loops: Sequence[tuple[str, Loop]] = (),
        serve: Callable[[], GrpcEndpoint] | None = None,
        on_drained: Sequence[Callable[[], object]] = (),
        closers: Sequence[Callable[[], object]] = (),
        ends_by_itself: bool = False,
        description: str = "",
    ) -> None:
        self.name = name
        # One line for the start-up log: what this stage consumes, serves and runs with.
        self.description = description
        self.consumers = list(consumers)
        self.loops = list(loops)
        self.on_drained = list(on_drained)
        self.closers = list(closers)
        # A job (ingest of a file) ends the stage when its loops return; a service runs until stopped.
        self.ends_by_itself = ends_by_itself
        self._serve = serve
        self.endpoint: GrpcEndpoint | None = None
        self._threads: list[threading.Thread] = []
        # Why the stage failed (a thread died): set once, read by run_service for the exit code.
        self.failure: str | None = None
        self._failure_lock = threading.Lock()

    def start(self, stop: threading.Event, *, serve: bool = True) -> None:
        """Start every consumer and loop on its own thread (and the gRPC server when `serve`)."""
        if serve and self._serve is not None:
            self.endpoint = self._serve()
            self.endpoint.server.start()
        bodies: list[tuple[str, Loop]] = [
            (f"{self.name}-consumer-{i}", consumer.run) for i, consumer in enumerate(self.consumers)
        ]
        for name, body in [*bodies, *((f"{self.name}-{n}", b) for n, b in self.loops)]:
            thread = threading.Thread(target=self._guard, args=(name, body, stop), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _guard(self, name: str, body: Loop, stop: threading.Event) -> None:
        """Run one thread's body; its death (an exception, or a service's loop returning) fails the stage.

        A consumer or loop that dies while the process lives on stops the alert path silently (issue 13:
        the uplink's interval thread died and the process delivered nothing more while reporting SERVING).
        """
        try:
            body(stop)
        except BaseException as exc:
            log.exception("%s died", name)
            self.fail(f"{name} died: {type(exc).__name__}: {exc}", stop)
            return
        if not stop.is_set() and not self.ends_by_itself:
            self.fail(f"{name} returned while {self.name} was running", stop)

    def fail(self, reason: str, stop: threading.Event) -> None:
        """Mark the stage failed: health NOT_SERVING at once, then stop it (its process exits non-zero)."""
        with self._failure_lock:
            if self.failure is not None:
                return
            self.failure = reason
        log.error("%s failed: %s; health NOT_SERVING, shutting down to be restarted", self.name, reason)
        if self.endpoint is not None and self.endpoint.health is not None:
            # Every service name, "" included, reports NOT_SERVING from now on.
            self.endpoint.health.enter_graceful_shutdown()
        stop.set()

    def wait(self, stop: threading.Event) -> None:
        """Block until `stop` is set or, for a job, until its loops have all returned; watch the consumers."""
        if not self.ends_by_itself:
            while not stop.wait(1.0):
                self.watch(stop)
            return
        for thread in self._threads:
            while thread.is_alive() and not stop.is_set():
                thread.join(timeout=0.5)
                self.watch(stop)
        stop.set()

    def watch(self, stop: threading.Event) -> None:
        """Fail the stage when a consumer's poll has shown no sign of life for longer than it may.

        Issue 13's broker restart left a consumer inside its Kafka client's group rejoin, neither polling
        nor raising: a thread alive but stuck is a death too.
        """
        for consumer in self.consumers:
            stalled = consumer.stalled_s()
            if stalled > consumer.max_stall_s:
                self.fail(f"a consumer of {self.name} is stuck: no progress for {stalled:.0f}s", stop)

    def close(self, *, grace_s: float = 10.0, join_timeout_s: float = 30.0) -> None:
        """After `stop` is set: drain the server, join the threads, run the hooks, close consumers and resources."""
        if self.endpoint is not None:
            if self.endpoint.health is not None:
                self.endpoint.health.enter_graceful_shutdown()
            self.endpoint.server.stop(grace_s).wait()
        for thread in self._threads:
            thread.join(timeout=join_timeout_s)
            if thread.is_alive():
                log.error("%s did not stop within %.0fs", thread.name, join_timeout_s)
        for hook in self.on_drained:
            hook()
        for consumer in self.consumers:
            consumer.close()
        for closer in self.closers:
            closer()


def run_until_signalled(stage: Stage, stop: threading.Event | None = None) -> None:
    """Start `stage`, run it until SIGTERM or SIGINT (or until a job ends), then close it in order."""
    stop = stop or threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down %s", signum, stage.name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stage.start(stop)
        served = f", gRPC on port {stage.endpoint.port}" if stage.endpoint is not None else ""
        log.info("%s running%s: %s", stage.name, served, stage.description)
        stage.wait(stop)
    finally:
        stop.set()
        stage.close()


SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def run_service(
    settings_cls: type[SettingsT], build: Callable[[SettingsT, Bus | None], Stage], *, uses_bus: bool = True
) -> int:
    """A service process: settings from the environment, logging, metrics, bus, its stage until signalled."""
    settings = settings_cls()
    configure_logging(settings.log_level, settings.log_json)
    name = settings_cls.__module__.split(".")[1]
    bus = make_bus(settings.bus, client_id=f"vigil-{name}") if uses_bus else None
    try:
        stage = build(settings, bus)
    except StageError as exc:
        log.error("%s", exc)
        if bus is not None:
            bus.close()
        return 2
    start_metrics_server(settings.metrics_port, settings.metrics_bind_host())
    try:
        run_until_signalled(stage)
    finally:
        if bus is not None:
            bus.close()
    if stage.failure is not None:
        # Non-zero so that Kubernetes (or any supervisor) restarts the process.
        log.error("%s exits with 1: %s", stage.name, stage.failure)
        return 1
    return 0
