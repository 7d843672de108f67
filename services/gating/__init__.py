"""gating: the DAT detector gate and structured event writer (edge)."""
