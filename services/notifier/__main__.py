"""`python -m services.notifier`: POST every alert of the cloud alerts topic to the configured webhooks."""

from __future__ import annotations

import sys

from services.common.runtime import run_service
from services.notifier.bootstrap import build
from services.notifier.config import NotifierSettings

if __name__ == "__main__":
    sys.exit(run_service(NotifierSettings, build))
