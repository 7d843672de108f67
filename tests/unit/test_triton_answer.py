"""The `vlm_answer` model's wire format and the TritonVLMAnswerer client, with no server and no torch.

A fake TritonModelClient plays the server side with the same wire functions the
Triton model uses, in front of the evidence answerer (which reports the frames
it was given, so what crossed the wire shows in the answer); the real server
with a tiny Qwen2.5-VL is exercised in tests/integration/test_triton.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import TypeAdapter

from scripts.prepare_triton_repo import TEMPLATES
from services.models.answerers.base import Answer, Answerer, AnswerError, EvidenceAnswerer, EvidenceFrame
from services.models.answerers.config import AnswererConfig, QwenVLAnswererConfig, TritonVLMAnswererConfig
from services.models.answerers.qwen_vl import RANDOM_INIT_NOTE
from services.models.answerers.triton_vlm import (
    ANSWER_OUTPUT,
    IMAGES_INPUT,
    REQUEST_INPUT,
    TritonVLMAnswerer,
    VlmAnswerModelConfig,
    answer_from_wire,
    answer_to_wire,
    request_from_wire,
    request_to_wire,
    served_vlm_name,
)
from services.models.triton import TritonRequestError, TritonUnavailable
from tests.fakes import FakeModelClient

QUESTION = "Did anyone fall, and when? ☕"


def keyframes() -> list[EvidenceFrame]:
    """Three keyframes of two sizes; the middle one was kept without an image."""
    rng = np.random.default_rng(0)
    return [
        EvidenceFrame("cam-1", 3.0, rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), "a person walks in", 0.3, 0.5),
        EvidenceFrame("cam-1", 7.25, None, "a person lies on the floor", 0.4, 0.9, from_index_frame=True),
        EvidenceFrame("cam-2", 1.7e9 + 0.1, rng.integers(0, 255, (30, 20, 3), dtype=np.uint8), "", 0.2, 0.2),
    ]


class FakeServer(FakeModelClient):
    """A TritonModelClient stand-in answering like triton_models/vlm_answer/1/model.py."""

    def __init__(self, answerer: Answerer, params: Mapping[str, str]) -> None:
        super().__init__(params)
        self.answerer = answerer

    def respond(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            question, frames = request_from_wire(inputs[REQUEST_INPUT], inputs.get(IMAGES_INPUT))
        except ValueError as exc:
            raise TritonRequestError("vlm_answer", "INVALID_ARGUMENT", str(exc)) from exc
        return answer_to_wire(self.answerer.answer(question, frames))


def served_parameters(random_init: bool = False) -> dict[str, str]:
    """The parameters of a vlm_answer model prepared on /models/qwen2.5-vl-3b/."""
    answerer = QwenVLAnswererConfig(checkpoint=Path("/models/qwen2.5-vl-3b/"))
    return VlmAnswerModelConfig(answerer=answerer, random_init=random_init).to_parameters()


PARAMS = served_parameters()


def _client(server: FakeServer) -> TritonVLMAnswerer:
    return TritonVLMAnswerer(TritonVLMAnswererConfig(url="cloud-triton:8001"), client=server)  # type: ignore[arg-type]


def test_config_is_an_answerer_type_with_a_generous_deadline() -> None:
    config = TypeAdapter(AnswererConfig).validate_python({"type": "triton-vlm", "url": "triton.svc:8001"})
    assert isinstance(config, TritonVLMAnswererConfig)
    assert config.model_name == "vlm_answer" and config.timeout_s >= 120
    assert (TEMPLATES / "vlm_answer" / "config.pbtxt").read_text().count('name: "vlm_answer"') == 1


def test_request_round_trips_the_wire_losslessly() -> None:
    frames = keyframes()
    wire = request_to_wire(QUESTION, frames)
    assert set(wire) == {REQUEST_INPUT, IMAGES_INPUT}
    assert wire[REQUEST_INPUT].shape == (1,) and wire[IMAGES_INPUT].shape == (2,)
    question, back = request_from_wire(wire[REQUEST_INPUT], wire[IMAGES_INPUT])
    assert question == QUESTION
    assert len(back) == len(frames)
    for got, want in zip(back, frames, strict=True):
        assert (got.camera_id, got.time_s, got.aux_text, got.similarity, got.probability, got.from_index_frame) == (
            want.camera_id,
            want.time_s,
            want.aux_text,
            want.similarity,
            want.probability,
            want.from_index_frame,
        )
        if want.image is None:
            assert got.image is None
        else:
            assert got.image is not None
            np.testing.assert_array_equal(got.image, want.image)


def test_frames_without_images_send_no_images_tensor() -> None:
    frames = [keyframes()[1]]
    wire = request_to_wire(QUESTION, frames)
    assert set(wire) == {REQUEST_INPUT}
    _, back = request_from_wire(wire[REQUEST_INPUT], None)
    assert back == frames


def test_answer_round_trips_the_wire() -> None:
    answer = Answer("Frame 1 at 3.0s.", [3.0, 1.7e9 + 0.1], True, "qwen2.5-vl:x", True, [RANDOM_INIT_NOTE, "n ☕"])
    out = answer_to_wire(answer)
    assert set(out) == {ANSWER_OUTPUT}
    assert answer_from_wire(out[ANSWER_OUTPUT]) == answer
    with pytest.raises(AnswerError, match="not an Answer"):
        answer_from_wire(np.array([b'{"text": "x"}'], dtype=np.object_))


def test_bad_requests_say_what_is_wrong() -> None:
    frames = keyframes()
    wire = request_to_wire(QUESTION, frames)
    with pytest.raises(ValueError, match="no keyframes to answer from"):
        request_from_wire(request_to_wire(QUESTION, [])[REQUEST_INPUT], None)
    with pytest.raises(ValueError, match=r"2 keyframe\(s\) have an image, but IMAGES holds 1"):
        request_from_wire(wire[REQUEST_INPUT], wire[IMAGES_INPUT][:1])
    with pytest.raises(ValueError, match=r"IMAGES\[1\] holds 12 bytes, not the 30 x 20 x 3 its frame says"):
        request_from_wire(wire[REQUEST_INPUT], np.array([wire[IMAGES_INPUT][0], b"not an image"], dtype=np.object_))
    meta = json.loads(bytes(wire[REQUEST_INPUT][0]))
    meta["frames"][0]["image"] = {"format": "encoded"}
    encoded = np.array([json.dumps(meta).encode()], dtype=np.object_)
    with pytest.raises(ValueError, match=r"IMAGES\[0\] \(2304 bytes\) is not a JPEG or PNG image"):
        request_from_wire(encoded, wire[IMAGES_INPUT])
    meta["frames"][0]["image"] = {"format": "bgr", "height": 0, "width": 32}
    with pytest.raises(ValueError, match="height and width must be positive"):
        request_from_wire(np.array([json.dumps(meta).encode()], dtype=np.object_), wire[IMAGES_INPUT])
    meta["frames"][0]["image"] = {"format": "webp"}
    with pytest.raises(ValueError, match="image format 'webp' is neither"):
        request_from_wire(np.array([json.dumps(meta).encode()], dtype=np.object_), wire[IMAGES_INPUT])
    with pytest.raises(ValueError, match="not a valid answer request JSON"):
        request_from_wire(np.array([b"{"], dtype=np.object_), None)
    with pytest.raises(ValueError, match=r"not a valid answer request JSON.*question"):
        request_from_wire(np.array([json.dumps({"question": 1, "frames": []}).encode()], dtype=np.object_), None)
    with pytest.raises(ValueError, match="exactly one JSON object"):
        request_from_wire(np.array([b"{}", b"{}"], dtype=np.object_), None)


def test_encoded_images_are_decoded_as_the_reasoning_decodes_keyframes() -> None:
    frame = keyframes()[0]
    meta = json.loads(bytes(request_to_wire(QUESTION, [frame])[REQUEST_INPUT][0]))
    assert meta["frames"][0]["image"] == {"format": "bgr", "height": 24, "width": 32}
    meta["frames"][0]["image"] = {"format": "encoded"}
    assert frame.image is not None
    for ext in (".jpg", ".png"):
        ok, data = cv2.imencode(ext, frame.image)
        assert ok
        payload = np.array([json.dumps(meta).encode()], dtype=np.object_)
        _, (back,) = request_from_wire(payload, np.array([data.tobytes()], dtype=np.object_))
        assert back.image is not None
        np.testing.assert_array_equal(back.image, cv2.imdecode(data, cv2.IMREAD_COLOR))


def test_unsendable_image_fails_on_the_client() -> None:
    frame = EvidenceFrame("cam-1", 3.0, np.zeros((0, 0, 3), np.uint8), "", 0.1, 0.1)
    with pytest.raises(AnswerError, match=r"keyframe at 3\.0s is not a non-empty 3-channel uint8 image"):
        request_to_wire(QUESTION, [frame])


def test_triton_answerer_gives_the_served_answer() -> None:
    server = FakeServer(EvidenceAnswerer(), PARAMS)
    answerer = _client(server)
    assert answerer.name == "triton:vlm_answer@cloud-triton:8001(qwen2.5-vl:qwen2.5-vl-3b)"
    assert not answerer.random_init
    frames = keyframes()
    assert answerer.answer(QUESTION, frames) == EvidenceAnswerer().answer(QUESTION, frames)
    answerer.close()
    assert server.closed


def test_served_name_names_the_adapter() -> None:
    config = QwenVLAnswererConfig(checkpoint=Path("/m/qwen"), lora=Path("/m/dat-lora"))
    assert served_vlm_name(config) == "qwen2.5-vl:qwen+dat-lora"


def test_a_random_served_checkpoint_always_says_so() -> None:
    # Even a server whose answers forget it: the served config's random_init is enough.
    answerer = _client(FakeServer(EvidenceAnswerer(), served_parameters(random_init=True)))
    assert answerer.random_init
    answer = answerer.answer(QUESTION, keyframes())
    assert answer.random_init and answer.notes[0] == RANDOM_INIT_NOTE
    assert EvidenceAnswerer.NOTE in answer.notes


def test_server_errors_become_answer_errors_with_the_servers_message() -> None:
    server = FakeServer(EvidenceAnswerer(), PARAMS)
    answerer = _client(server)
    with pytest.raises(AnswerError, match=r"^no keyframes to answer from$") as info:
        answerer.answer(QUESTION, [])
    assert isinstance(info.value.__cause__, TritonRequestError) and info.value.__cause__.invalid_argument
    server.fail_with = TritonUnavailable("Triton at cloud-triton:8001 unavailable: connection refused")
    with pytest.raises(AnswerError, match="unavailable: connection refused") as unavailable:
        answerer.answer(QUESTION, keyframes())
    assert isinstance(unavailable.value.__cause__, TritonUnavailable)


def test_build_answerer_selects_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.models.answerers import base as answer_module
    from services.models.answerers import triton_vlm as triton_answer

    built: list[TritonVLMAnswererConfig] = []

    class Recording(TritonVLMAnswerer):
        def __init__(self, config: TritonVLMAnswererConfig) -> None:
            built.append(config)
            super().__init__(config, client=FakeServer(EvidenceAnswerer(), PARAMS))  # type: ignore[arg-type]

    monkeypatch.setattr(triton_answer, "TritonVLMAnswerer", Recording)
    config = TritonVLMAnswererConfig(url="cloud-triton:8001")
    assert isinstance(answer_module.build_answerer(config), Recording)
    assert built == [config]
