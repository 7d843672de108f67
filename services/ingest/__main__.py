"""`python -m services.ingest`: read the configured source and publish its frames until it ends.

Exits 0 when the source was read to its end (or the job was stopped), 2 when it cannot be opened, 1 when
publishing failed for good (the broker away longer than ingest.broker_wait_s, or a frame it refuses).
"""

from __future__ import annotations

import sys

from services.common.runtime import run_service
from services.ingest.bootstrap import build
from services.ingest.config import IngestSettings

if __name__ == "__main__":
    sys.exit(run_service(IngestSettings, build))
