"""Qwen2.5-VL event structurer on a Triton server (triton_models/vlm) through tritonclient gRPC.

The server runs ``QwenVLStructurer`` (the same prompt, constrained decoding and
validation as the in-process backend); this client sends the boxed image and
the request's priors, and validates the returned event again before anything
is published. The wire format of the `vlm` model lives here, used by both ends:

* ``IMAGE``: the boxed frame, H x W x 3 uint8 BGR;
* ``REQUEST``: one JSON object: detections (box in pixels, class id, label,
  confidence), width, height, camera_id, extra;
* ``EVENT``: the validated event as compact JSON; ``PRODUCER``: who wrote it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from services.models.detections import Box, Detection
from services.models.structurers.base import (
    EventStructurer,
    InvalidModelOutput,
    ProducerInfo,
    StructuredEvent,
    StructuringRequest,
    validate_event,
)
from services.models.structurers.config import QwenVLConfig, TritonVLMConfig
from services.models.structurers.qwen_vl import RANDOM_INIT_NOTE
from services.models.triton import TritonModelClient, TritonRequestError
from services.models.triton_python import ServedConfig

__all__ = ["TritonVLMConfig", "TritonVLMStructurer"]

log = logging.getLogger(__name__)

# The model's error message for an event it could not produce; the client maps it back to InvalidModelOutput.
INVALID_OUTPUT_PREFIX = "invalid model output: "


def request_to_wire(request: StructuringRequest) -> dict[str, np.ndarray]:
    """The `vlm` model's inputs for one request."""
    meta = {
        "detections": [
            {
                "box": [d.box.x1, d.box.y1, d.box.x2, d.box.y2],
                "class_id": d.class_id,
                "label": d.label,
                "confidence": d.confidence,
            }
            for d in request.detections
        ],
        "width": request.width,
        "height": request.height,
        "camera_id": request.camera_id,
        "extra": dict(request.extra),
    }
    return {
        "IMAGE": np.ascontiguousarray(request.boxed_image, dtype=np.uint8),
        "REQUEST": np.array([json.dumps(meta).encode()], dtype=np.object_),
    }


def request_from_wire(image: np.ndarray, payload: bytes) -> StructuringRequest:
    """Rebuild the StructuringRequest on the server; ValueError says what in the input is wrong."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"IMAGE must be a non-empty H x W x 3 uint8 BGR image, got {image.shape} {image.dtype}")
    try:
        meta = json.loads(payload)
        dets = [
            Detection(Box(*(float(v) for v in d["box"])), int(d["class_id"]), str(d["label"]), float(d["confidence"]))
            for d in meta.get("detections", [])
        ]
        width, height = int(meta["width"]), int(meta["height"])
        extra: Mapping[str, Any] = meta.get("extra", {})
        camera_id = str(meta.get("camera_id", ""))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"REQUEST is not a valid request JSON ({type(exc).__name__}: {exc})") from exc
    if width < 1 or height < 1:
        raise ValueError(f"REQUEST width and height must be positive, got {width} x {height}")
    return StructuringRequest(
        boxed_image=image,
        detections=dets,
        width=width,
        height=height,
        camera_id=camera_id,
        extra={str(k): str(v) for k, v in extra.items()},
    )


def producer_to_wire(producer: ProducerInfo) -> bytes:
    """ProducerInfo as JSON bytes."""
    return json.dumps(asdict(producer)).encode()


def producer_from_wire(payload: bytes) -> ProducerInfo:
    """ProducerInfo from JSON bytes."""
    return ProducerInfo(**json.loads(payload))


class VlmModelConfig(ServedConfig):
    """`vigil_config` of triton_models/vlm: the in-process QwenVLConfig and what only the served model sets."""

    prepare_args: ClassVar[str] = "--models vlm --vlm-checkpoint DIR"
    structurer: QwenVLConfig
    # Eq. 4 boundary the constraint is compiled with (in-process: gating.gamma); clients refuse another.
    gamma: float = Field(default=0.5, gt=0.0, lt=1.0)
    # None = float32 on CPU, bfloat16 on GPUs (services.models.qwen.load_qwen_vl).
    dtype: str | None = None
    # From the weights' VIGIL_RANDOM_INIT marker at preparation; checked at load (None: not checked).
    random_init: bool | None = None
    # 0 = torch's default thread count.
    torch_threads: int = Field(default=0, ge=0)


class TritonVLMStructurer(EventStructurer):
    """EventStructurer whose model runs on Triton; its events are validated again here."""

    def __init__(self, config: TritonVLMConfig, gamma: float = 0.5, client: TritonModelClient | None = None) -> None:
        self._config = config
        self._gamma = gamma
        self._client = client or TritonModelClient(config, config.model_name)
        self._client.wait_ready()
        served = VlmModelConfig.from_parameters(self._client.parameters(), config.model_name)
        served_gamma = served.gamma
        if served_gamma != gamma:
            # The constraint is compiled with the server's gamma: its events would fail our eq. 4 check.
            raise ValueError(
                f"Triton model {config.model_name!r} decodes with gamma {served_gamma}, gating is configured "
                f"with {gamma}: prepare the repository with --gamma {gamma}"
            )
        # Until the first event names its producer, describe it from the served config the way
        # QwenVLStructurer does (the model refuses to load when `random_init` there is wrong).
        checkpoint = served.structurer.checkpoint.name
        lora = served.structurer.lora.name if served.structurer.lora else ""
        random_init = served.random_init is True
        self._producer = ProducerInfo(
            kind="qwen2.5-vl",
            name=checkpoint,
            random_init=random_init,
            note=RANDOM_INIT_NOTE if random_init else (f"LoRA adapter {lora}" if lora else ""),
        )
        log.info("using Triton model %s at %s (%s)", config.model_name, config.url, self._producer)

    @property
    def producer(self) -> ProducerInfo:
        """The served model's identity (as the last event reported it)."""
        return self._producer

    def close(self) -> None:
        """Close the gRPC channel."""
        self._client.close()

    def structure(self, request: StructuringRequest) -> StructuredEvent:
        """One event from the served model; InvalidModelOutput when it could not write a valid one."""
        try:
            out = self._client.infer(request_to_wire(request), ("EVENT", "PRODUCER"))
        except TritonRequestError as exc:
            if INVALID_OUTPUT_PREFIX in exc.message:
                raise InvalidModelOutput(exc.message.split(INVALID_OUTPUT_PREFIX, 1)[1]) from exc
            if exc.invalid_argument:
                raise ValueError(exc.message) from exc
            raise
        self._producer = producer_from_wire(bytes(out["PRODUCER"][0]))
        raw = bytes(out["EVENT"][0])
        try:
            data = validate_event(raw, self._gamma)
        except InvalidModelOutput as exc:
            raise InvalidModelOutput(str(exc), raw=raw.decode("utf-8", "replace")) from exc
        return StructuredEvent(data=data, producer=self._producer)
