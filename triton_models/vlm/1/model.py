"""Triton Python model `vlm`: Qwen2.5-VL structured events, running the in-process QwenVLStructurer.

Thin on purpose: the wire format is ``services.models.structurers.triton_vlm`` and the
prompt, generation, constrained decoding and validation are
``services.models.structurers.qwen_vl.QwenVLStructurer``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


def _parameters(model_config: dict[str, Any]) -> dict[str, str]:
    return {k: str(v.get("string_value", "")) for k, v in model_config.get("parameters", {}).items()}


def _import_vigil(params: dict[str, str]) -> None:
    # The Python backend ignores PYTHONPATH: put the checkout on sys.path from the config (or our location).
    root = params.get("vigil_root") or str(Path(__file__).resolve().parents[3])
    if root not in sys.path:
        sys.path.insert(0, root)


def _error(message: str, code: Any) -> Any:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


class TritonPythonModel:
    """One QwenVLStructurer per model instance; one response per request, errors per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the checkpoint (and adapter) named by the config parameters."""
        params = _parameters(json.loads(args["model_config"]))
        _import_vigil(params)
        import torch

        from services.models.structurers.base import InvalidModelOutput
        from services.models.structurers.qwen_vl import QwenVLStructurer
        from services.models.structurers.triton_vlm import INVALID_OUTPUT_PREFIX, producer_to_wire, request_from_wire

        if not params.get("checkpoint"):
            raise ValueError(
                "parameter `checkpoint` is empty: prepare the repository with "
                "`python scripts/prepare_triton_repo.py OUT --vlm-checkpoint DIR`"
            )
        if int(params.get("torch_threads") or 0):
            torch.set_num_threads(int(params["torch_threads"]))
        self._structurer = QwenVLStructurer(
            checkpoint=Path(params["checkpoint"]),
            lora=Path(params["lora"]) if params.get("lora") else None,
            device=params.get("device") or "cpu",
            dtype=params.get("dtype") or None,
            max_new_tokens=int(params.get("max_new_tokens") or 256),
            gamma=float(params.get("gamma") or 0.5),
        )
        producer = self._structurer.producer
        declared = params.get("random_init", "").lower()
        if declared and (declared == "true") != producer.random_init:
            raise ValueError(
                f"parameter random_init={declared} but the checkpoint says random_init={producer.random_init}; "
                "re-run scripts/prepare_triton_repo.py"
            )
        self._producer_bytes = producer_to_wire(producer)
        self._invalid_output = InvalidModelOutput
        self._invalid_prefix = INVALID_OUTPUT_PREFIX
        self._from_wire = request_from_wire

        labels = {"model": args["model_name"], "version": args["model_version"]}
        self._families: list[Any] = []
        self._events = self._counter("vigil_triton_vlm_events_total", "Valid events written", labels)
        self._invalid = self._counter(
            "vigil_triton_vlm_invalid_outputs_total", "Requests whose model output was not a valid event", labels
        )
        self._tokens = self._counter("vigil_triton_vlm_generated_tokens_total", "Tokens generated", labels)
        self._rejected = self._counter(
            "vigil_triton_vlm_rejected_requests_total", "Requests refused as invalid input", labels
        )
        pb_utils.Logger.log_info(f"vlm ready: {producer}")

    def _one(self, request: Any) -> Any:
        image = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
        payload = pb_utils.get_input_tensor_by_name(request, "REQUEST").as_numpy().reshape(-1)
        try:
            if payload.size != 1:
                raise ValueError(f"REQUEST must hold exactly one JSON object, got {payload.size}")
            structuring_request = self._from_wire(image, bytes(payload[0]))
        except ValueError as exc:
            self._rejected.increment(1)
            return _error(str(exc), pb_utils.TritonError.INVALID_ARG)
        try:
            event = self._structurer.structure(structuring_request)
        except self._invalid_output as exc:
            self._invalid.increment(1)
            return _error(f"{self._invalid_prefix}{exc}", pb_utils.TritonError.INTERNAL)
        stats = self._structurer.last_stats
        if stats is not None:
            self._tokens.increment(stats.new_tokens)
        self._events.increment(1)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("EVENT", np.array([event.to_json_bytes()], dtype=np.object_)),
                pb_utils.Tensor("PRODUCER", np.array([self._producer_bytes], dtype=np.object_)),
            ]
        )

    def _counter(self, name: str, description: str, labels: dict[str, str]) -> Any:
        # A Metric is only valid while its MetricFamily object lives: keep both.
        family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.COUNTER)
        self._families.append(family)
        return family.Metric(labels=labels)

    def execute(self, requests: list[Any]) -> list[Any]:
        """One event per request; a bad request fails alone."""
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except Exception as exc:
                pb_utils.Logger.log_error(f"vlm failed: {type(exc).__name__}: {exc}")
                responses.append(_error(f"{type(exc).__name__}: {exc}", pb_utils.TritonError.INTERNAL))
        return responses

    def finalize(self) -> None:
        """Drop the model."""
        self._structurer = None  # type: ignore[assignment]
