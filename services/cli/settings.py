"""Flags are settings like any other: merged over the environment's VIGIL_* values and validated together."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.cli.output import validation_message
from services.common.config import load_settings

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class CliError(Exception):
    """A command cannot go on: its message is for the user, `code` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def load(cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Settings from the environment with flag `overrides` deep-merged over them; CliError names a bad field."""
    try:
        return load_settings(cls, **overrides)
    except ValidationError as exc:
        raise CliError(f"invalid settings: {validation_message(exc)}") from exc


def memory_overrides(memory_dir: Path | None) -> dict[str, Any]:
    """`--memory DIR`: both layers of the memory under DIR (Qdrant Edge in DIR/qdrant, frames in DIR/frames)."""
    if memory_dir is None:
        return {}
    return {
        "store": {"type": "qdrant-edge", "path": str(memory_dir / "qdrant")},
        "frames": {"path": str(memory_dir / "frames")},
    }
