"""`python -m services.adapters`: the cloud's adapter registry (Publish, Fetch, List over gRPC)."""

from __future__ import annotations

import sys

from services.adapters.bootstrap import build
from services.adapters.config import AdaptersSettings
from services.common.runtime import run_service

if __name__ == "__main__":
    sys.exit(run_service(AdaptersSettings, build))
