"""`python -m services.memory`: store frames and index entries from the bus, serve Retrieve over gRPC."""

from __future__ import annotations

import sys

from services.common.runtime import run_service
from services.memory.bootstrap import build
from services.memory.config import MemorySettings

if __name__ == "__main__":
    sys.exit(run_service(MemorySettings, build))
