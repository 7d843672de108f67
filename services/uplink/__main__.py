"""`python -m services.uplink`: schedule events from the edge bus onto the cloud alert and evidence topics.

On the way out the dispatcher acknowledges what was delivered, so a restart resends nothing.
"""

from __future__ import annotations

import sys

from services.common.runtime import run_service
from services.uplink.bootstrap import build
from services.uplink.config import UplinkSettings

if __name__ == "__main__":
    sys.exit(run_service(UplinkSettings, build))
