"""`vigil console`: the operator's web page against Kafka and a reasoning service; and the in-process parts
`vigil run --console` gives the same page (Ask over this run's memory, health of the embedded backends)."""

from __future__ import annotations

import argparse
import secrets
import sys
import threading
from typing import TYPE_CHECKING, Any

from services.cli.grpc_flags import add_flags
from services.cli.settings import CliError, load
from services.common.memory_api import MemorySource, MemoryUnavailable
from services.common.runtime import StageError, run_until_signalled
from vigil.memory.v1 import memory_pb2
from vigil.reasoning.v1 import reasoning_pb2

if TYPE_CHECKING:
    from services.common.config import SigningConfig
    from services.console.bootstrap import ConsoleStage
    from services.memory.bootstrap import Memory
    from services.memory.config import MemoryConfig
    from services.memory.retriever import Retriever
    from services.models.embedders.base import Embedder


def register(sub: Any) -> None:
    """Add `vigil console`."""
    console = sub.add_parser("console", help="serve the operator's web console (alerts, evidence, Ask, health)")
    console.add_argument("--kafka", metavar="BOOTSTRAP", help="the cloud Kafka (default from VIGIL_BUS__BOOTSTRAP)")
    console.add_argument("--reasoning", metavar="HOST:PORT", help="the reasoning service for Ask")
    console.add_argument("--memory-address", metavar="HOST:PORT", help="the edge memory, for the health area only")
    console.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    console.add_argument("--port", type=int, help="port to listen on (default 8080; 0 = a free one)")
    # The reasoning service's credentials (a chart-installed one serves TLS and admits Ask by token).
    add_flags(console)
    console.set_defaults(func=cmd_console)


def reasoning_security_flags(args: argparse.Namespace) -> dict[str, Any] | None:
    """--tls/--ca/--cert/--key/--token-file/--server-name as console.reasoning_security (None: none given)."""
    if not (args.tls or any(x is not None for x in (args.ca, args.cert, args.key, args.token_file))):
        return None
    tls = {k: str(v) for k, v in (("ca", args.ca), ("cert", args.cert), ("key", args.key)) if v is not None}
    out: dict[str, Any] = {"tls": tls, "server_name": args.server_name}
    if args.token_file is not None:
        out["token_file"] = str(args.token_file)
    return out


def new_token() -> str:
    """A random token for a console nobody configured one for (printed once, in the URL)."""
    return secrets.token_urlsafe(24)


def console_token(configured: Any) -> str | None:
    """The configured token, else a fresh random one (None only when anonymous access was asked for)."""
    cfg = configured.console
    if cfg.token is not None:
        return None  # the stage reads it from settings; it is not printed
    return None if cfg.allow_anonymous else new_token()


def cmd_console(args: argparse.Namespace) -> int:
    """`vigil console`: serve the page until SIGINT/SIGTERM. Exit 2 for bad settings or a port in use."""
    from services.common.bus.factory import make_bus
    from services.common.metrics import start_metrics_server
    from services.console.bootstrap import build
    from services.console.config import ConsoleSettings

    flags = {"host": args.host, "port": args.port, "reasoning_address": args.reasoning}
    flags["memory_address"] = args.memory_address
    flags["reasoning_security"] = reasoning_security_flags(args)
    overrides: dict[str, Any] = {"console": {k: v for k, v in flags.items() if v is not None}}
    if args.kafka:
        overrides["bus"] = {"kind": "kafka", "bootstrap": args.kafka}
    try:
        settings = load(ConsoleSettings, **overrides)
    except CliError as exc:
        print(f"vigil console: {exc}", file=sys.stderr)
        return exc.code
    if settings.bus.kind != "kafka":
        print(
            "vigil console: give --kafka BOOTSTRAP (or VIGIL_BUS__KIND=kafka); `vigil run --console` serves the "
            "page over the in-process bus",
            file=sys.stderr,
        )
        return 2
    token = console_token(settings)
    bus = make_bus(settings.bus, client_id="vigil-console")
    try:
        stage = build(settings, bus, token=token)
    except StageError as exc:
        print(f"vigil console: {exc}", file=sys.stderr)
        bus.close()
        return 2
    start_metrics_server(settings.metrics_port)
    print(f"vigil console: open {stage.url(token)}  (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        run_until_signalled(stage)
    finally:
        bus.close()
    return 0


class _CurrentMemory(MemorySource):
    """The memory Ask reads: the run's live one while it runs, then the same directory reopened."""

    def __init__(self, config: MemoryConfig, embedder: Embedder | None) -> None:
        self._config = config
        self._embedder = embedder
        self._lock = threading.Lock()
        self._live: Retriever | None = None
        self._opened: Memory | None = None

    def attach(self, retriever: Retriever) -> None:
        """Ask the running pipeline's memory."""
        with self._lock:
            self._live = retriever

    def detach(self) -> None:
        """The pipeline is closing its memory: the next Ask opens it from disk."""
        with self._lock:
            self._live = None

    def retrieve(
        self, request: memory_pb2.RetrieveRequest, timeout_s: float | None = None
    ) -> memory_pb2.RetrieveResponse:
        """Retrieve from whichever memory is current."""
        from services.memory.local import LocalMemory

        with self._lock:
            retriever = self._live or self._open().retriever
            return LocalMemory(retriever).retrieve(request, timeout_s)

    def describe(self) -> str:
        """One line for the health area."""
        with self._lock:
            where = "the running pipeline's" if self._live is not None else "reopened from disk"
            if self._live is None and self._opened is None:
                where = "on disk, opened at the first question"
        return f"in-process ({where}) at {self._config.frames.path.parent}"

    def _open(self) -> Memory:
        from services.memory.bootstrap import Memory
        from services.memory.store import StoreError

        if self._opened is None:
            try:
                self._opened = Memory(self._config, embedder=self._embedder)
            except StoreError as exc:
                raise MemoryUnavailable(f"cannot open the memory: {exc}") from exc
        return self._opened

    def close(self) -> None:
        """Close a memory this object opened."""
        with self._lock:
            if self._opened is not None:
                self._opened.close()
                self._opened = None


class EmbeddedAsk:
    """Ask in this process: reasoning's own Reasoner over this run's memory (`vigil ask`'s path, no socket)."""

    def __init__(self, config: MemoryConfig, embedder: Embedder | None) -> None:
        from services.reasoning.bootstrap import build
        from services.reasoning.config import ReasoningSettings

        self.memory = _CurrentMemory(config, embedder)
        self._reasoner = build(load(ReasoningSettings), memory=self.memory).reasoner

    def __call__(self, request: reasoning_pb2.AskRequest, timeout_s: float) -> reasoning_pb2.AskResponse:
        """Answer one question (typed errors as the reasoning service raises them)."""
        return self._reasoner.ask(request, timeout_s)

    @property
    def answerer(self) -> str:
        """The answerer's name, for the health area."""
        return str(self._reasoner.answerer.name)


def start_embedded_console(
    bus: Any, topics: Any, port: int | None, memory: EmbeddedAsk | None, signing: SigningConfig | None = None
) -> tuple[ConsoleStage, threading.Event, str | None]:
    """The console on `vigil run`'s bus, started: (stage, its stop event, the token to print). StageError if not.

    `signing` is the run's own: the console verifies alerts exactly when the run's uplink signs them (off
    unless VIGIL_SIGNING__KEYS_FILE is set, so a run needs no keys).
    """
    from services.console.bootstrap import build
    from services.console.config import ConsoleSettings

    overrides: dict[str, Any] = {"console": {"watch_frames": True}, "topics": topics.model_dump()}
    if signing is not None:
        overrides["signing"] = signing.model_dump()
    if port is not None:
        overrides["console"]["port"] = port
    else:
        # A free port unless VIGIL_CONSOLE__PORT says otherwise: the URL (with its token) is printed anyway.
        overrides["console"]["port"] = 0
    settings = load(ConsoleSettings, **overrides)
    token = console_token(settings)

    def in_process() -> str:
        return "in-process bus (this run)"

    probes = {"bus": in_process}
    if memory is not None:
        probes["reasoning"] = lambda: f"in-process, answerer {memory.answerer}"
        probes["memory"] = memory.memory.describe
        asker: Any = memory
    else:

        def asker(request: reasoning_pb2.AskRequest, timeout_s: float) -> reasoning_pb2.AskResponse:
            raise MemoryUnavailable("this run keeps no memory (--no-memory): nothing to ask")

    stage = build(settings, bus, asker=asker, probes=probes, token=token, mode="embedded")
    stop = threading.Event()
    stage.start(stop, serve=False)
    return stage, stop, token
