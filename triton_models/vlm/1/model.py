"""Triton Python model `vlm`: Qwen2.5-VL structured events, running the in-process QwenVLStructurer.

Thin on purpose: the wire format and the `vigil_config` schema (``VlmModelConfig``)
are ``services.models.structurers.triton_vlm``, the prompt, generation,
constrained decoding and validation are
``services.models.structurers.qwen_vl.QwenVLStructurer``, and the config,
metrics and per-request errors are ``services.models.triton_python.ServedModel``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


class TritonPythonModel:
    """One QwenVLStructurer per model instance; one response per request, errors per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the checkpoint (and adapter) of the `vigil_config` parameter (a VlmModelConfig)."""
        # The Python backend ignores PYTHONPATH: import the checkout in `vigil_root` (empty: the one holding us).
        root = json.loads(args["model_config"]).get("parameters", {}).get("vigil_root", {}).get("string_value")
        sys.path.insert(0, root or str(Path(__file__).resolve().parents[3]))
        from services.models.structurers.base import InvalidModelOutput
        from services.models.structurers.qwen_vl import QwenVLStructurer
        from services.models.structurers.triton_vlm import (
            INVALID_OUTPUT_PREFIX,
            VlmModelConfig,
            producer_to_wire,
            request_from_wire,
        )
        from services.models.triton_python import ServedModel

        # Bad requests are told apart in _one: a ValueError of the model itself is INTERNAL.
        self._served = served = ServedModel(args, VlmModelConfig, invalid=())
        config = served.config
        served.set_torch_threads(config.torch_threads)
        self._structurer = QwenVLStructurer(
            checkpoint=config.structurer.checkpoint,
            lora=config.structurer.lora,
            device=config.structurer.device,
            dtype=config.dtype,
            max_new_tokens=config.structurer.max_new_tokens,
            gamma=config.gamma,
        )
        producer = self._structurer.producer
        served.check_random_init(config.random_init, producer.random_init)
        self._producer_bytes = producer_to_wire(producer)
        self._invalid_output = InvalidModelOutput
        self._invalid_prefix = INVALID_OUTPUT_PREFIX
        self._from_wire = request_from_wire

        self._events = served.counter("vigil_triton_vlm_events_total", "Valid events written")
        self._invalid = served.counter(
            "vigil_triton_vlm_invalid_outputs_total", "Requests whose model output was not a valid event"
        )
        self._tokens = served.counter("vigil_triton_vlm_generated_tokens_total", "Tokens generated")
        served.count_rejected("vigil_triton_vlm_rejected_requests_total")
        served.log_info(f"ready: {producer}")

    def _one(self, request: Any) -> Any:
        image = self._served.tensor(request, "IMAGE")
        payload = self._served.tensor(request, "REQUEST")
        try:
            size = 0 if payload is None else payload.size
            if image is None or payload is None or size != 1:
                raise ValueError(f"REQUEST must hold exactly one JSON object, got {size}")
            structuring_request = self._from_wire(image, bytes(payload.reshape(-1)[0]))
        except ValueError as exc:
            return self._served.reject(exc)
        try:
            event = self._structurer.structure(structuring_request)
        except self._invalid_output as exc:
            self._invalid.increment(1)
            return self._served.error(f"{self._invalid_prefix}{exc}")
        stats = self._structurer.last_stats
        if stats is not None:
            self._tokens.increment(stats.new_tokens)
        self._events.increment(1)
        return self._served.response(
            {
                "EVENT": np.array([event.to_json_bytes()], dtype=np.object_),
                "PRODUCER": np.array([self._producer_bytes], dtype=np.object_),
            }
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        """One event per request; a bad request fails alone."""
        return self._served.execute(requests, self._one)

    def finalize(self) -> None:
        """Drop the model."""
        self._structurer = None  # type: ignore[assignment]
