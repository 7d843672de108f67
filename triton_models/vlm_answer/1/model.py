"""Triton Python model `vlm_answer`: Qwen2.5-VL answers over keyframes, running the in-process QwenVLAnswerer.

Thin on purpose: the wire format and the `vigil_config` schema
(``VlmAnswerModelConfig``) are ``services.models.answerers.triton_vlm``, the
prompt, generation and citation parsing are
``services.models.answerers.qwen_vl.QwenVLAnswerer``, and the config, metrics and
per-request errors are ``services.models.triton_python.ServedModel``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


class TritonPythonModel:
    """One QwenVLAnswerer per model instance; one response per request, errors per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the checkpoint (and adapter) of the `vigil_config` parameter (a VlmAnswerModelConfig)."""
        # The Python backend ignores PYTHONPATH: import the checkout in `vigil_root` (empty: the one holding us).
        root = json.loads(args["model_config"]).get("parameters", {}).get("vigil_root", {}).get("string_value")
        sys.path.insert(0, root or str(Path(__file__).resolve().parents[3]))
        from services.models.answerers import triton_vlm as wire
        from services.models.answerers.base import AnswerError
        from services.models.answerers.qwen_vl import QwenVLAnswerer
        from services.models.triton_python import ServedModel

        # Bad requests are told apart in _one: a ValueError of the model itself is INTERNAL.
        self._served = served = ServedModel(args, wire.VlmAnswerModelConfig, invalid=())
        config = served.config
        served.set_torch_threads(config.torch_threads)
        self._answerer = QwenVLAnswerer(config.answerer)
        served.check_random_init(config.random_init, self._answerer.random_init)
        self._wire = wire
        self._answer_error = AnswerError

        self._answers = served.counter("vigil_triton_vlm_answer_answers_total", "Answers written")
        self._keyframes = served.counter(
            "vigil_triton_vlm_answer_keyframes_total", "Keyframes of the answered requests"
        )
        self._failed = served.counter("vigil_triton_vlm_answer_failures_total", "Requests the model could not answer")
        served.count_rejected("vigil_triton_vlm_answer_rejected_requests_total")
        served.log_info(f"ready: {self._answerer.name} ({config.answerer.model_dump_json()})")

    def _one(self, request: Any) -> Any:
        wire = self._wire
        try:
            question, frames = wire.request_from_wire(
                self._served.tensor(request, wire.REQUEST_INPUT), self._served.tensor(request, wire.IMAGES_INPUT)
            )
        except ValueError as exc:
            return self._served.reject(exc)
        try:
            answer = self._answerer.answer(question, frames)
        except self._answer_error as exc:
            self._failed.increment(1)
            self._served.pb.Logger.log_error(f"vlm_answer could not answer: {exc}")
            return self._served.error(str(exc))
        self._answers.increment(1)
        self._keyframes.increment(len(frames))
        return self._served.response(wire.answer_to_wire(answer))

    def execute(self, requests: list[Any]) -> list[Any]:
        """One answer per request; a bad request fails alone."""
        return self._served.execute(requests, self._one)

    def finalize(self) -> None:
        """Drop the model."""
        self._answerer = None  # type: ignore[assignment]
