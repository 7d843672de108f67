"""Qwen2.5-VL answerer on a Triton server (triton_models/vlm_answer) through tritonclient gRPC.

The server runs ``QwenVLAnswerer`` (the same multi-image prompt, greedy decoding
and citation parsing as the in-process backend); this client sends the question
and the keyframes and gets the whole Answer back. The wire format of the
`vlm_answer` model lives here, used by both ends:

* ``REQUEST``: one JSON object: ``question`` and ``frames``, one object per keyframe
  (camera_id, time_s, aux_text, similarity, probability, from_index_frame, and
  ``image``: null without one, else how its ``IMAGES`` item is written:
  ``{"format": "bgr", "height": H, "width": W}`` for raw H x W x 3 uint8 BGR pixels,
  ``{"format": "encoded"}`` for JPEG or PNG bytes);
* ``IMAGES`` (optional, absent when no keyframe has an image): one item per keyframe
  with an image, in ``frames`` order. Items are bytes, so keyframes of different
  sizes share the tensor. This client sends raw pixels: the server answers on
  exactly the client's pixels, with no codec time on either side (an in-cluster
  wire carries a few MB per question easily; PNG cost ~70 ms per 1080p frame);
  ``encoded`` is there for clients that hold the keyframes' JPEGs;
* ``ANSWER``: the Answer as one JSON object (text, used_times_s, vlm_ran, vlm,
  random_init, notes).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, ClassVar

import cv2
import numpy as np
from pydantic import Field

from services.models.answerers.base import Answer, Answerer, AnswerError, AnswerUnavailable, EvidenceFrame, format_time
from services.models.answerers.config import QwenVLAnswererConfig, TritonVLMAnswererConfig
from services.models.answerers.qwen_vl import RANDOM_INIT_NOTE
from services.models.triton import TritonError, TritonModelClient, TritonRequestError
from services.models.triton_python import ServedConfig

__all__ = ["TritonVLMAnswerer", "TritonVLMAnswererConfig"]

log = logging.getLogger(__name__)

REQUEST_INPUT = "REQUEST"
IMAGES_INPUT = "IMAGES"
ANSWER_OUTPUT = "ANSWER"


def _raw_image(frame: EvidenceFrame) -> tuple[dict[str, Any], bytes]:
    image = frame.image
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0 or image.dtype != np.uint8:
        raise AnswerError(f"keyframe at {format_time(frame.time_s)} is not a non-empty 3-channel uint8 image")
    height, width = image.shape[:2]
    return {"format": "bgr", "height": height, "width": width}, np.ascontiguousarray(image).tobytes()


def request_to_wire(question: str, frames: Sequence[EvidenceFrame]) -> dict[str, np.ndarray]:
    """The `vlm_answer` model's inputs for one question; AnswerError for a keyframe image it cannot send."""
    specs: list[dict[str, Any]] = []
    images: list[bytes] = []
    for f in frames:
        spec: dict[str, Any] | None = None
        if f.image is not None:
            spec, data = _raw_image(f)
            images.append(data)
        specs.append(
            {
                "camera_id": f.camera_id,
                "time_s": f.time_s,
                "aux_text": f.aux_text,
                "similarity": f.similarity,
                "probability": f.probability,
                "from_index_frame": f.from_index_frame,
                "image": spec,
            }
        )
    meta = {"question": question, "frames": specs}
    inputs = {REQUEST_INPUT: np.array([json.dumps(meta).encode()], dtype=np.object_)}
    if images:
        inputs[IMAGES_INPUT] = np.array(images, dtype=np.object_)
    return inputs


def _image_spec(spec: Any) -> tuple[str, int, int] | None:
    if spec is None:
        return None
    fmt = spec["format"]
    if fmt == "encoded":
        return fmt, 0, 0
    if fmt == "bgr":
        height, width = int(spec["height"]), int(spec["width"])
        if height < 1 or width < 1:
            raise ValueError(f"image height and width must be positive, got {height} x {width}")
        return fmt, height, width
    raise ValueError(f"image format {fmt!r} is neither 'bgr' nor 'encoded'")


def _decode_image(i: int, spec: tuple[str, int, int], data: bytes) -> np.ndarray:
    fmt, height, width = spec
    if fmt == "bgr":
        if len(data) != height * width * 3:
            raise ValueError(f"IMAGES[{i}] holds {len(data)} bytes, not the {height} x {width} x 3 its frame says")
        return np.frombuffer(data, np.uint8).reshape(height, width, 3)
    # What the reasoning does with the memory's keyframe JPEGs.
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise ValueError(f"IMAGES[{i}] ({len(data)} bytes) is not a JPEG or PNG image")
    return np.asarray(image)


def request_from_wire(payload: np.ndarray, images: np.ndarray | None) -> tuple[str, list[EvidenceFrame]]:
    """The question and keyframes on the server; ValueError says what in the input is wrong."""
    items = payload.reshape(-1)
    if items.size != 1:
        raise ValueError(f"{REQUEST_INPUT} must hold exactly one JSON object, got {items.size}")
    try:
        meta = json.loads(bytes(items[0]))
        question = meta["question"]
        if not isinstance(question, str):
            raise TypeError(f"question is a {type(question).__name__}, not a string")
        specs = [
            (
                str(f["camera_id"]),
                float(f["time_s"]),
                str(f.get("aux_text", "")),
                float(f.get("similarity", 0.0)),
                float(f.get("probability", 0.0)),
                bool(f.get("from_index_frame", False)),
                _image_spec(f.get("image")),
            )
            for f in meta["frames"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{REQUEST_INPUT} is not a valid answer request JSON ({type(exc).__name__}: {exc})") from exc
    if not specs:
        raise ValueError("no keyframes to answer from")
    data = [] if images is None else [bytes(b) for b in images.reshape(-1)]
    image_specs = [spec[-1] for spec in specs if spec[-1] is not None]
    if len(data) != len(image_specs):
        raise ValueError(f"{len(image_specs)} keyframe(s) have an image, but {IMAGES_INPUT} holds {len(data)}")
    decoded = iter([_decode_image(i, spec, item) for i, (spec, item) in enumerate(zip(image_specs, data, strict=True))])
    frames = [
        EvidenceFrame(camera, time_s, None if image is None else next(decoded), aux, sim, prob, from_index)
        for camera, time_s, aux, sim, prob, from_index, image in specs
    ]
    return question, frames


def answer_to_wire(answer: Answer) -> dict[str, np.ndarray]:
    """The `vlm_answer` model's output for one Answer."""
    return {ANSWER_OUTPUT: np.array([json.dumps(asdict(answer)).encode()], dtype=np.object_)}


def answer_from_wire(output: np.ndarray) -> Answer:
    """The Answer from the model's ANSWER output; AnswerError when it is not one."""
    try:
        (item,) = output.reshape(-1)
        data: dict[str, Any] = json.loads(bytes(item))
        return Answer(
            text=str(data["text"]),
            used_times_s=[float(t) for t in data["used_times_s"]],
            vlm_ran=bool(data["vlm_ran"]),
            vlm=str(data["vlm"]),
            random_init=bool(data["random_init"]),
            notes=[str(n) for n in data["notes"]],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise AnswerError(f"the served answer is not an Answer ({type(exc).__name__}: {exc})") from exc


class VlmAnswerModelConfig(ServedConfig):
    """`vigil_config` of triton_models/vlm_answer: the in-process QwenVLAnswererConfig and the served extras."""

    prepare_args: ClassVar[str] = "--models vlm_answer --vlm-checkpoint DIR"
    answerer: QwenVLAnswererConfig
    # From the weights' VIGIL_RANDOM_INIT marker at preparation; checked at load (None: not checked).
    random_init: bool | None = None
    # 0 = torch's default thread count.
    torch_threads: int = Field(default=0, ge=0)


def served_vlm_name(config: QwenVLAnswererConfig) -> str:
    """What QwenVLAnswerer.name says for the checkpoint (and adapter) of the served config."""
    lora = config.lora.name if config.lora else ""
    return f"qwen2.5-vl:{config.checkpoint.name}" + (f"+{lora}" if lora else "")


class TritonVLMAnswerer(Answerer):
    """Answerer whose model runs on Triton; the served answer comes back whole."""

    def __init__(self, config: TritonVLMAnswererConfig, client: TritonModelClient | None = None) -> None:
        self._config = config
        self._client = client or TritonModelClient(config, config.model_name)
        self._client.wait_ready()
        served = VlmAnswerModelConfig.from_parameters(self._client.parameters(), config.model_name)
        # The model refuses to load when `random_init` disagrees with the weights' marker.
        self._random_init = served.random_init is True
        self._vlm = served_vlm_name(served.answerer)
        log.info("using Triton model %s at %s (%s)", config.model_name, config.url, self._vlm)

    @property
    def name(self) -> str:
        """triton:<model>@<url>(<served answerer's name>)."""
        return f"triton:{self._config.model_name}@{self._config.url}({self._vlm})"

    @property
    def random_init(self) -> bool:
        """Whether the served checkpoint or adapter is a random stand-in."""
        return self._random_init

    def close(self) -> None:
        """Close the gRPC channel."""
        self._client.close()

    def answer(self, question: str, frames: Sequence[EvidenceFrame]) -> Answer:
        """The served model's answer; AnswerError (with the server's message) when it gives none."""
        try:
            out = self._client.infer(request_to_wire(question, frames), (ANSWER_OUTPUT,))
        except TritonRequestError as exc:
            raise AnswerError(exc.message) from exc
        except TritonError as exc:
            # Unreachable, not ready or past the deadline: the backend's state, not the request's fault.
            raise AnswerUnavailable(str(exc)) from exc
        answer = answer_from_wire(out[ANSWER_OUTPUT])
        self._vlm = answer.vlm
        if self._random_init and not (answer.random_init and RANDOM_INIT_NOTE in answer.notes):
            # Never let a random stand-in's text pass for an answer, whatever the server said.
            notes = answer.notes if RANDOM_INIT_NOTE in answer.notes else [RANDOM_INIT_NOTE, *answer.notes]
            answer = Answer(answer.text, answer.used_times_s, answer.vlm_ran, answer.vlm, True, notes)
        return answer
