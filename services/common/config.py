"""Typed settings shared by every service; each service extends them with its own env prefix."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TopicsConfig(BaseModel):
    """Kafka topic names. Every service reads them from here, never from literals."""

    model_config = ConfigDict(extra="forbid")

    frames: str = "vigil.frames.v1"
    events: str = "vigil.events.v1"
    alerts: str = "vigil.alerts.v1"
    evidence: str = "vigil.evidence.v1"
    # Closed clusters (IndexEntry): indexing -> memory.
    index: str = "vigil.index.v1"
    # LoRA adapter manifests: the cloud's adapter registry -> every edge gating (DAT section 3.1).
    adapters: str = "vigil.adapters.v1"
    dead_letter_suffix: str = ".dlq"

    def dead_letter(self, topic: str) -> str:
        """Name of the dead-letter topic for `topic`."""
        return topic + self.dead_letter_suffix


class BusConfig(BaseModel):
    """Which bus to use: in-process (embedded mode) or Kafka (distributed mode)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["inprocess", "kafka"] = "inprocess"
    bootstrap: str = "127.0.0.1:9092"
    # Tansu's group join takes about half the session timeout; keep it short.
    session_timeout_ms: int = Field(default=6000, ge=1000)
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # How long a publish may block while the broker is away before it raises.
    publish_timeout_s: float = Field(default=120.0, gt=0)


class CommonSettings(BaseSettings):
    """Settings every service has. Env prefix VIGIL_, nested with __ (VIGIL_BUS__BOOTSTRAP)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", env_nested_delimiter="__", extra="forbid")

    bus: BusConfig = BusConfig()
    topics: TopicsConfig = TopicsConfig()
    log_level: str = "INFO"
    log_json: bool = False
    # 0 disables the Prometheus HTTP endpoint.
    metrics_port: int = Field(default=0, ge=0, le=65535)


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Settings from the environment with `overrides` (plain dicts, e.g. CLI flags) deep-merged over them.

    Everything goes through validation together, so a bad flag fails like a bad environment value.
    """
    return cls(**overrides)
