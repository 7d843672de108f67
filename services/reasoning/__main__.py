"""`python -m services.reasoning`: serve Ask over gRPC, answering from the edge memory's keyframes."""

from __future__ import annotations

import sys

from services.common.runtime import run_service
from services.reasoning.bootstrap import build
from services.reasoning.config import ReasoningSettings

if __name__ == "__main__":
    sys.exit(run_service(ReasoningSettings, build, uses_bus=False))
