"""`python -m services.gating`: consume frames, publish events, serve Detect over gRPC."""

from __future__ import annotations

import sys

from services.common.runtime import run_service
from services.gating.bootstrap import build
from services.gating.config import GatingSettings

if __name__ == "__main__":
    sys.exit(run_service(GatingSettings, build))
