"""Triton Python model `vlm_answer`: Qwen2.5-VL answers over keyframes, running the in-process QwenVLAnswerer.

Thin on purpose: the wire format is ``services.models.answerers.triton_vlm`` and the
prompt, generation and citation parsing are
``services.models.answerers.qwen_vl.QwenVLAnswerer``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

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
    """One QwenVLAnswerer per model instance; one response per request, errors per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the checkpoint (and adapter) named by the config parameters."""
        params = _parameters(json.loads(args["model_config"]))
        _import_vigil(params)
        import torch

        from services.models.answerers.base import AnswerError
        from services.models.answerers.config import QwenVLAnswererConfig
        from services.models.answerers.qwen_vl import QwenVLAnswerer
        from services.models.answerers import triton_vlm as wire

        if not params.get("checkpoint"):
            raise ValueError(
                "parameter `checkpoint` is empty: prepare the repository with "
                "`python scripts/prepare_triton_repo.py OUT --models vlm_answer --vlm-checkpoint DIR`"
            )
        if int(params.get("torch_threads") or 0):
            torch.set_num_threads(int(params["torch_threads"]))
        config = QwenVLAnswererConfig(
            checkpoint=Path(params["checkpoint"]),
            lora=Path(params["lora"]) if params.get("lora") else None,
            device=params.get("device") or "cpu",
            max_new_tokens=int(params.get("max_new_tokens") or 192),
            max_image_side=int(params.get("max_image_side") or 448),
        )
        self._answerer = QwenVLAnswerer(config)
        declared = params.get("random_init", "").lower()
        if declared and (declared == "true") != self._answerer.random_init:
            raise ValueError(
                f"parameter random_init={declared} but the checkpoint says random_init={self._answerer.random_init}; "
                "re-run scripts/prepare_triton_repo.py"
            )
        self._wire = wire
        self._answer_error = AnswerError

        labels = {"model": args["model_name"], "version": args["model_version"]}
        self._families: list[Any] = []
        self._answers = self._counter("vigil_triton_vlm_answer_answers_total", "Answers written", labels)
        self._keyframes = self._counter(
            "vigil_triton_vlm_answer_keyframes_total", "Keyframes of the answered requests", labels
        )
        self._failed = self._counter(
            "vigil_triton_vlm_answer_failures_total", "Requests the model could not answer", labels
        )
        self._rejected = self._counter(
            "vigil_triton_vlm_answer_rejected_requests_total", "Requests refused as invalid input", labels
        )
        pb_utils.Logger.log_info(f"vlm_answer ready: {self._answerer.name} ({config.model_dump_json()})")

    def _counter(self, name: str, description: str, labels: dict[str, str]) -> Any:
        # A Metric is only valid while its MetricFamily object lives: keep both.
        family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.COUNTER)
        self._families.append(family)
        return family.Metric(labels=labels)

    def _one(self, request: Any) -> Any:
        wire = self._wire
        payload = pb_utils.get_input_tensor_by_name(request, wire.REQUEST_INPUT).as_numpy()
        images = pb_utils.get_input_tensor_by_name(request, wire.IMAGES_INPUT)
        try:
            question, frames = wire.request_from_wire(payload, None if images is None else images.as_numpy())
        except ValueError as exc:
            self._rejected.increment(1)
            return _error(str(exc), pb_utils.TritonError.INVALID_ARG)
        try:
            answer = self._answerer.answer(question, frames)
        except self._answer_error as exc:
            self._failed.increment(1)
            pb_utils.Logger.log_error(f"vlm_answer could not answer: {exc}")
            return _error(str(exc), pb_utils.TritonError.INTERNAL)
        self._answers.increment(1)
        self._keyframes.increment(len(frames))
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, value) for name, value in wire.answer_to_wire(answer).items()]
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        """One answer per request; a bad request fails alone."""
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except Exception as exc:
                pb_utils.Logger.log_error(f"vlm_answer failed: {type(exc).__name__}: {exc}")
                responses.append(_error(f"{type(exc).__name__}: {exc}", pb_utils.TritonError.INTERNAL))
        return responses

    def finalize(self) -> None:
        """Drop the model."""
        self._answerer = None  # type: ignore[assignment]
