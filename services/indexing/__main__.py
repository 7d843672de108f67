"""`python -m services.indexing`: frames topic -> scenes, clusters, embeddings -> index topic."""

from __future__ import annotations

import sys

from services.common.runtime import run_service
from services.indexing.bootstrap import build
from services.indexing.config import IndexingSettings

if __name__ == "__main__":
    sys.exit(run_service(IndexingSettings, build))
