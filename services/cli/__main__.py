"""`python -m services.cli ...` is `vigil ...`."""

import sys

from services.cli.main import main

sys.exit(main())
