"""`python -m services.console`: the operator's web console over the cloud alert topics and reasoning."""

from __future__ import annotations

import sys

from services.common.runtime import run_service
from services.console.bootstrap import build
from services.console.config import ConsoleSettings

if __name__ == "__main__":
    sys.exit(run_service(ConsoleSettings, build))
