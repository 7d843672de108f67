"""The `vigil` command: run the pipeline, ask the memory, follow the alert topic, train and evaluate the gate."""

from services.cli.main import main

__all__ = ["main"]
