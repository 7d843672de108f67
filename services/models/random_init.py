"""The one marker that says a checkpoint is a random stand-in, and the check every backend makes.

Qwen2.5-VL and image-text (CLIP) weights cannot be had here, so tests build tiny randomly
initialised checkpoints (`scripts/make_tiny_qwen_vl.py`, `scripts/make_tiny_clip.py`) that hold
this file; every output such a model produces says so.
"""

from __future__ import annotations

from pathlib import Path

RANDOM_INIT_MARKER = "VIGIL_RANDOM_INIT"


def is_random_init(checkpoint: Path, lora: Path | None = None) -> bool:
    """Whether the checkpoint (or its LoRA adapter) is a random stand-in: it holds the marker file."""
    return (Path(checkpoint) / RANDOM_INIT_MARKER).exists() or (
        lora is not None and (Path(lora) / RANDOM_INIT_MARKER).exists()
    )
