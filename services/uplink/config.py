"""Settings of the uplink service (env: VIGIL_UPLINK__*)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from services.common.config import BusConfig, CommonSettings


class UplinkConfig(BaseModel):
    """Where the cloud is and how to read the edge queue."""

    model_config = ConfigDict(extra="forbid")

    consumer_group: str = "vigil-uplink"
    # The cloud bus; None = the same bus as the edge (single-site and embedded deployments).
    cloud_bus: BusConfig | None = None
    send_evidence: bool = True


class UplinkSettings(CommonSettings):
    """Everything the uplink process reads at start-up."""

    uplink: UplinkConfig = UplinkConfig()
