"""Triton Python model `context_detector`: the `detector` model's code on other weights (COCO YOLOv8n).

No code of its own: ``triton_models/detector/1/model.py`` is imported by path
from the checkout named by the `vigil_root` parameter (empty = the checkout
holding this file), else from a `detector` model beside this one. So it works
both in ``triton_models/`` as is and in a repository prepared by
``scripts/prepare_triton_repo.py``, which copies this file alone and may leave
`detector` out.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any


def _detector_module(model_config: dict[str, Any]) -> ModuleType:
    """triton_models/detector/1/model.py of the configured checkout (or the sibling `detector`), imported by path."""
    here = Path(__file__).resolve()
    root = model_config.get("parameters", {}).get("vigil_root", {}).get("string_value") or here.parents[3]
    candidates = [
        Path(root) / "triton_models" / "detector" / "1" / "model.py",
        here.parents[2] / "detector" / "1" / "model.py",
    ]
    path = next((c for c in candidates if c.is_file()), None)
    spec = importlib.util.spec_from_file_location("vigil_triton_detector_model", path) if path else None
    if spec is None or spec.loader is None:
        raise ImportError(
            f"no detector model code at {' or '.join(map(str, candidates))}: is vigil_root a Vigil checkout?"
        )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TritonPythonModel:
    """The detector's TritonPythonModel, resolved at load (the checkout is only known from the config)."""

    def initialize(self, args: dict[str, str]) -> None:
        """Build and load the detector model with this model's config (weights, class names, name)."""
        self._model: Any = _detector_module(json.loads(args["model_config"])).TritonPythonModel()
        self._model.initialize(args)

    def execute(self, requests: list[Any]) -> list[Any]:
        """The detector's execute: one response per request, errors per request."""
        return list(self._model.execute(requests))

    def finalize(self) -> None:
        """The detector's finalize."""
        self._model.finalize()
