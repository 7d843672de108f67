"""Composition root of the console: state, consumers of the alert topics, Ask, health probes, the HTTP server."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable

import uvicorn

from services.common.auth import CredentialsError
from services.common.bus import Bus, Handler
from services.common.grpc_runtime import client_security
from services.common.runtime import Stage, StageError
from services.common.signing import Verifier, verifier_from_config
from services.console.app import ConsoleApp
from services.console.backends import (
    Asker,
    GrpcAsker,
    HealthBoard,
    NoAsker,
    Probe,
    grpc_health_probe,
    kafka_probe,
)
from services.console.config import ConsoleSettings
from services.console.consumer import RecordHandler
from services.console.state import ConsoleState

log = logging.getLogger(__name__)

# How often alerts whose evidence deadline passed are marked "not sent".
SWEEP_INTERVAL_S = 0.5


class ConsoleStage(Stage):
    """The console's consumers, its HTTP server (uvicorn on a thread), the health and expiry loops."""

    def __init__(
        self,
        settings: ConsoleSettings,
        bus: Bus,
        app: ConsoleApp,
        sock: socket.socket,
        *,
        closers: list[Callable[[], object]],
        verifier: Verifier | None = None,
    ) -> None:
        cfg = settings.console
        topics = settings.topics
        self.app = app
        self.state = app.state
        self.socket = sock
        self.port: int = sock.getsockname()[1]
        self.host = cfg.host
        handler = RecordHandler(app.state, topics)
        # Alerts and evidence cross from the edge: with signing keys, a record no uplink signed (or one altered on
        # the way) is counted and dead-lettered by the verifier, never decoded into the page. Frames never leave
        # the edge (embedded runs only) and are not signed.
        verified: Handler = handler if verifier is None else verifier.wrap(handler)
        # A group of its own per start: the page is rebuilt from the topics (it keeps nothing on disk).
        group = f"{cfg.consumer_group}-{uuid.uuid4().hex[:8]}"
        # One group per topic: members of one group with different subscriptions rebalance poorly (Tansu).
        consumers = [
            bus.consumer([topic], f"{group}-{name}", verified, dead_letter_topic=topics.dead_letter(topic))
            for name, topic in (("alerts", topics.alerts), ("evidence", topics.evidence))
        ]
        if cfg.watch_frames:
            consumers.append(bus.consumer([topics.frames], f"{group}-frames", handler))
        self._server = uvicorn.Server(
            uvicorn.Config(app.asgi, log_level="warning", lifespan="off", timeout_graceful_shutdown=2, access_log=False)
        )
        self.serving = threading.Event()
        super().__init__(
            "console",
            consumers=consumers,
            loops=[("http", self._serve_http), ("health", app.health.run), ("sweep", self._sweep)],
            closers=[sock.close, *closers],
            description=f"{topics.alerts} + {topics.evidence} -> http://{cfg.host}:{self.port}/"
            + (" (signed records only)" if verifier is not None else ""),
        )

    def url(self, token: str | None = None) -> str:
        """The page's address (with the token to open it once, when given)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/" + (f"?token={token}" if token else "")

    def _serve_http(self, stop: threading.Event) -> None:
        def watch() -> None:
            stop.wait()
            self._server.should_exit = True

        threading.Thread(target=watch, name="console-http-stop", daemon=True).start()
        self.serving.set()
        self._server.run(sockets=[self.socket])

    def _sweep(self, stop: threading.Event) -> None:
        while not stop.wait(SWEEP_INTERVAL_S):
            self.state.sweep(time.time_ns())


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 = a free one); StageError when the address is taken."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without it a
    # keep-alive response written in two parts waits for the client's delayed ACK (~40 ms per request).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StageError(f"console: cannot listen on {host}:{port}: {exc}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


def build(
    settings: ConsoleSettings,
    bus: Bus | None,
    *,
    asker: Asker | None = None,
    probes: dict[str, Probe] | None = None,
    token: str | None = None,
    mode: str = "cluster",
) -> ConsoleStage:
    """The console stage; `asker`, `probes` and `token` let `vigil run --console` pass its in-process ones."""
    if bus is None:
        raise StageError("the console reads the alert topics: it needs a bus")
    cfg = settings.console
    token = token or (cfg.token.get_secret_value() if cfg.token is not None else None)
    if token is None and not cfg.allow_anonymous:
        raise StageError(
            "the console needs a token (VIGIL_CONSOLE__TOKEN, e.g. from a Secret) "
            "or VIGIL_CONSOLE__ALLOW_ANONYMOUS=true"
        )
    if token is not None and len(token) < 16:
        raise StageError("the console token must be at least 16 characters")
    try:
        # Read every credential file now: a wrong path stops the start with its setting named.
        verifier = verifier_from_config(settings.signing)
    except CredentialsError as exc:
        raise StageError(str(exc)) from exc
    reasoning_security = client_security(cfg.reasoning_security, "console.reasoning_security")
    memory_security = client_security(cfg.memory_security, "console.memory_security")
    closers: list[Callable[[], object]] = []
    if asker is None:
        if cfg.reasoning_address:
            grpc_asker = GrpcAsker(cfg.reasoning_address, reasoning_security)
            closers.append(grpc_asker.close)
            asker = grpc_asker
        else:
            asker = NoAsker()
    if probes is None:
        probes = {}
        if settings.bus.kind == "kafka":
            probes["kafka"] = kafka_probe(settings.bus.bootstrap)
        if cfg.reasoning_address:
            probes["reasoning"] = grpc_health_probe(cfg.reasoning_address, reasoning_security)
        if cfg.memory_address:
            probes["memory"] = grpc_health_probe(cfg.memory_address, memory_security)
    health = HealthBoard(probes, cfg.health_interval_s)
    if "reasoning" not in probes:
        health.set("reasoning", False, "not configured (VIGIL_CONSOLE__REASONING_ADDRESS)")
    if "memory" not in probes:
        # Without its address the console learns about the edge memory from the outcome of each Ask.
        health.set("memory", None, "not probed directly: the next question's outcome will show it")
    state = ConsoleState(max_alerts=cfg.max_alerts, evidence_deadline_s=cfg.evidence_deadline_s)
    app = ConsoleApp(
        state,
        health,
        asker,
        token=token,
        silent_after_s=cfg.silent_after_s,
        ask_timeout_s=cfg.ask_timeout_s,
        sse_max_s=cfg.sse_max_s,
        mode=mode,
    )
    sock = bind(cfg.host, cfg.port)
    return ConsoleStage(settings, bus, app, sock, closers=closers, verifier=verifier)
