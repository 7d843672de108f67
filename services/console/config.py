"""Settings of the console (env: VIGIL_CONSOLE__*)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from services.common.config import CommonSettings, GrpcClientSecurity


class ConsoleConfig(BaseModel):
    """Where the page listens, who may open it, what it reads and whom it asks."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    # 0 picks a free port (tests, `vigil run --console` without --console-port).
    port: int = Field(default=8080, ge=0, le=65535)
    # The bearer token every page and API call must carry (Authorization: Bearer, or ?token= once, which sets
    # a cookie), at least 16 characters. None with allow_anonymous false refuses to start (bootstrap.py).
    token: SecretStr | None = None
    allow_anonymous: bool = False
    # The reasoning service's gRPC address for Ask ("" = Ask is not available); embedded mode asks in-process.
    reasoning_address: str = ""
    # TLS (a client certificate for mTLS) and the console's own bearer token for Ask and the reasoning health
    # probe; None: plaintext (embedded runs, a reasoning service without grpc_security).
    reasoning_security: GrpcClientSecurity | None = None
    ask_timeout_s: float = Field(default=60.0, gt=0)
    # The edge memory's gRPC address, only for the health area ("" = judged from the last Ask's outcome).
    memory_address: str = ""
    # TLS to the edge memory for its health probe (health checks need no token; a client certificate where the
    # memory requires mutual TLS); None: plaintext.
    memory_security: GrpcClientSecurity | None = None
    # A fresh group per start (suffix added) re-reads the topics from the start: the page is rebuilt from them.
    consumer_group: str = "vigil-console"
    # Most recent alerts kept (with their evidence images) and shown.
    max_alerts: int = Field(default=500, ge=1, le=100_000)
    # An alert whose evidence has not all come this long after it was sent shows "not sent": the uplink drops
    # a visual unit that would miss arrival + D_vis (1.5 s by default), plus margin for an interval and transit.
    evidence_deadline_s: float = Field(default=5.0, gt=0)
    # A camera with no frame (or, where frames are not seen, no alert) for this long shows as silent.
    silent_after_s: float = Field(default=60.0, gt=0)
    # Also read the frames topic for "last frame time" (embedded mode; the cloud tier never sees frames).
    watch_frames: bool = False
    # A live stream ends after this long and the browser reconnects (resuming from Last-Event-ID): proxies
    # that cut long responses see a fresh one, and a page never depends on one connection forever.
    sse_max_s: float = Field(default=300.0, gt=0)
    # Seconds between the health area's probes.
    health_interval_s: float = Field(default=10.0, gt=0)


class ConsoleSettings(CommonSettings):
    """Everything the console process reads at start-up.

    `signing` (CommonSettings) with a keys file: an alert or evidence record no edge uplink signed is counted
    and dead-lettered, never shown.
    """

    console: ConsoleConfig = ConsoleConfig()
