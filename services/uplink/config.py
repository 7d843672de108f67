"""Settings of the uplink service (env: VIGIL_UPLINK__*)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.config import BusConfig, CommonSettings


class UplinkConfig(BaseModel):
    """Where the cloud is, how to schedule, and (for tests and benchmarks only) an emulated link."""

    model_config = ConfigDict(extra="forbid")

    consumer_group: str = "vigil-uplink"
    # The cloud bus; None = the same bus as the edge (single-site and embedded deployments).
    cloud_bus: BusConfig | None = None
    # "scheduled" runs a scheduling method every interval; "pass-through" forwards at once, unscheduled.
    mode: Literal["scheduled", "pass-through"] = "scheduled"
    # dat, a baseline (fixed_box, fixed_roi, fixed_json_box, bandwidth_only, priority_only, json_only)
    # or one of Vigil's methods (vigil_*).
    method: str = "dat"
    # DAT defaults: Delta = 1 s, D_vis = 1.5 s; beta weighs level against score (eq. 7).
    interval_s: float = Field(default=1.0, gt=0)
    d_vis_s: float = Field(default=1.5, ge=0)
    beta: float = Field(default=0.5, gt=0, lt=1)
    # Bandwidth assumed before the first measured send (bytes/s): 1 Mbit/s.
    prior_bandwidth_Bps: float = Field(default=125_000.0, gt=0)
    # Where the uplink remembers delivered alerts across restarts (a volume on the edge);
    # None = memory only.
    state_dir: Path | None = None
    # EMULATION for tests and benchmarks: shape the cloud link by this bandwidth trace.
    emulated_link_trace: Path | None = None
    emulated_link_scale: float = Field(default=1.0, gt=0)


class UplinkSettings(CommonSettings):
    """Everything the uplink process reads at start-up."""

    uplink: UplinkConfig = UplinkConfig()
