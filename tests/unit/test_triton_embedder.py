"""The `embedder` model's wire format and the TritonEmbedder client, with no server and no torch.

A fake embedder shaped like aux-minilm (vectors "text" and "image", questions
get "text" only) stands behind a fake TritonModelClient that plays the server
side with the same wire functions the Triton model uses; the real server is
exercised with a tiny CLIP in tests/integration/test_triton.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from scripts.prepare_triton_repo import TEMPLATES, set_vector_outputs
from services.models.embedders.aux_backend import IMAGE_DIM, IMAGE_VECTOR, TEXT_DIM, TEXT_VECTOR
from services.models.embedders.base import (
    AuxMiniLMEmbedderConfig,
    Embedder,
    EmbedderConfig,
    EmbedderError,
    FrameEmbedding,
    TritonEmbedderConfig,
    check_inputs,
    check_query,
    l2_normalize,
)
from services.models.embedders.triton_backend import (
    AUX_TEXT_INPUT,
    IMAGE_INPUT,
    PROMPT_OUTPUT,
    TEXT_INPUT,
    EmbedderModelConfig,
    ServedEmbedder,
    TritonEmbedder,
    frames_from_outputs,
    frames_from_wire,
    frames_to_outputs,
    frames_to_wire,
    queries_from_wire,
    queries_to_outputs,
    query_from_outputs,
    query_to_wire,
    vector_output,
)
from services.models.triton import TritonRequestError
from tests.fakes import FakeModelClient


def _text_vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return l2_normalize(np.random.default_rng(seed).normal(size=TEXT_DIM))


class FakeAuxEmbedder(Embedder):
    """aux-minilm's vector names and dimensions, deterministic vectors, no model."""

    @property
    def name(self) -> str:
        return "fake-aux"

    @property
    def vector_specs(self) -> dict[str, int]:
        return {TEXT_VECTOR: TEXT_DIM, IMAGE_VECTOR: IMAGE_DIM}

    @property
    def limitations(self) -> str:
        return 'understands only the words "in" its prompts'

    def embed_frames(self, images: Sequence[np.ndarray], aux_texts: Sequence[str]) -> list[FrameEmbedding]:
        check_inputs(images, aux_texts)
        out = []
        for image, text in zip(images, aux_texts, strict=True):
            pixels = np.resize(image.astype(np.float32).reshape(-1), IMAGE_DIM) + 1.0
            prompt = f"objects: {text.strip()}"
            out.append(FrameEmbedding({TEXT_VECTOR: _text_vector(prompt), IMAGE_VECTOR: l2_normalize(pixels)}, prompt))
        return out

    def embed_query(self, text: str) -> dict[str, np.ndarray]:
        return {TEXT_VECTOR: _text_vector(check_query(text))}


class FakeServer(FakeModelClient):
    """A TritonModelClient stand-in answering like triton_models/embedder/1/model.py."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.served = ServedEmbedder.of(embedder)
        super().__init__(
            EmbedderModelConfig(embedder=AuxMiniLMEmbedderConfig(type="aux-minilm"), served=self.served).to_parameters()
        )

    def respond(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            if TEXT_INPUT in inputs:
                texts = queries_from_wire(inputs[TEXT_INPUT])
                return queries_to_outputs([self.embedder.embed_query(t) for t in texts], self.served.query_vectors)
            images, texts = frames_from_wire(inputs[IMAGE_INPUT], inputs[AUX_TEXT_INPUT])
            return frames_to_outputs(self.embedder.embed_frames(images, texts), list(self.served.vector_specs))
        except EmbedderError as exc:
            raise TritonRequestError("embedder", "INVALID_ARGUMENT", str(exc)) from exc


def _client(server: FakeServer, **settings: Any) -> TritonEmbedder:
    return TritonEmbedder(TritonEmbedderConfig(url="edge:8001", **settings), client=server)  # type: ignore[arg-type]


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = [(48, 64), (32, 32), (48, 64), (48, 64), (32, 32)]
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def test_served_embedder_round_trips_through_parameters() -> None:
    served = ServedEmbedder.of(FakeAuxEmbedder())
    assert served.vector_specs == {"text": 384, "image": 1280}
    assert served.query_vectors == ("text",)
    config = EmbedderModelConfig(embedder=AuxMiniLMEmbedderConfig(type="aux-minilm"), served=served)
    params = config.to_parameters()
    assert json.loads(params["vigil_config"])["served"]["vector_specs"] == {"text": 384, "image": 1280}
    assert EmbedderModelConfig.from_parameters(params, "embedder").served == served
    with pytest.raises(ValueError, match=r"prepare_triton_repo\.py"):
        EmbedderModelConfig.from_parameters({"vigil_config": ""}, "embedder")
    wrong = json.loads(params["vigil_config"])
    wrong["served"]["query_vectors"] = ["clip"]
    with pytest.raises(ValueError, match=r"model 'embedder'.*query_vectors \['clip'\]"):
        EmbedderModelConfig.from_parameters({"vigil_config": json.dumps(wrong)}, "embedder")


def test_frames_round_trip_the_wire() -> None:
    images = _images()[:2]
    images = [images[0], images[0][::-1].copy()]
    texts = ["2 x person", "café ☕ EXIT 12"]
    wire = frames_to_wire(images, texts)
    assert wire[IMAGE_INPUT].shape == (2, 48, 64, 3) and wire[AUX_TEXT_INPUT].shape == (2, 1)
    got_images, got_texts = frames_from_wire(wire[IMAGE_INPUT], wire[AUX_TEXT_INPUT])
    assert got_texts == texts
    for g, w in zip(got_images, images, strict=True):
        np.testing.assert_array_equal(g, w)

    frames = FakeAuxEmbedder().embed_frames(images, texts)
    outputs = frames_to_outputs(frames, ["text", "image"])
    assert set(outputs) == {"VECTOR_text", "VECTOR_image", PROMPT_OUTPUT}
    assert outputs["VECTOR_image"].shape == (2, 1280) and outputs["VECTOR_image"].dtype == np.float32
    back = frames_from_outputs(outputs, ["text", "image"])
    assert [f.prompt for f in back] == [f.prompt for f in frames]
    for b, f in zip(back, frames, strict=True):
        for name in ("text", "image"):
            np.testing.assert_array_equal(b.vectors[name], f.vectors[name])


def test_queries_round_trip_the_wire_with_only_text_vectors() -> None:
    texts = queries_from_wire(query_to_wire("a person near the EXIT")[TEXT_INPUT])
    assert texts == ["a person near the EXIT"]
    vectors = [FakeAuxEmbedder().embed_query(t) for t in texts]
    outputs = queries_to_outputs(vectors, ["text"])
    assert set(outputs) == {vector_output("text")}
    np.testing.assert_array_equal(query_from_outputs(outputs, ["text"])["text"], vectors[0]["text"])


def test_bad_frames_requests_say_what_is_wrong() -> None:
    ok = np.zeros((1, 16, 16, 3), np.uint8)
    with pytest.raises(EmbedderError, match="N x H x W x 3"):
        frames_from_wire(np.zeros((16, 16, 3), np.uint8), np.array([[b""]], dtype=np.object_))
    with pytest.raises(EmbedderError, match="one text per image"):
        frames_from_wire(ok, np.array([[b"a"], [b"b"]], dtype=np.object_))
    with pytest.raises(EmbedderError, match=r"AUX_TEXT\[0\] is not UTF-8"):
        frames_from_wire(ok, np.array([[b"\xff"]], dtype=np.object_))
    with pytest.raises(EmbedderError, match="too small"):
        frames_from_wire(np.zeros((1, 4, 16, 3), np.uint8), np.array([[b""]], dtype=np.object_))


def test_triton_embedder_exposes_the_served_embedder() -> None:
    server = FakeServer(FakeAuxEmbedder())
    emb = _client(server)
    assert emb.name == "triton:embedder@edge:8001(fake-aux)"
    assert emb.vector_specs == {"text": 384, "image": 1280}
    assert emb.limitations == 'understands only the words "in" its prompts'
    emb.close()
    assert server.closed


def test_triton_embedder_groups_frames_by_shape_and_keeps_their_order() -> None:
    server = FakeServer(FakeAuxEmbedder())
    emb = _client(server, batch_size=2)
    images = _images()
    texts = [f"{i} x person" for i in range(len(images))]
    got = emb.embed_frames(images, texts)
    want = FakeAuxEmbedder().embed_frames(images, texts)
    assert [g.prompt for g in got] == [w.prompt for w in want]
    for g, w in zip(got, want, strict=True):
        assert set(g.vectors) == {"text", "image"}
        for name in ("text", "image"):
            np.testing.assert_allclose(g.vectors[name], w.vectors[name])
    # Three frames of 48x64 in chunks of two, then two of 32x32: three requests, each of one shape.
    assert [r[IMAGE_INPUT].shape[:3] for r in server.requests] == [(2, 48, 64), (1, 48, 64), (2, 32, 32)]
    assert emb.embed_frames([], []) == []


def test_triton_embedder_queries_get_the_query_vectors_only() -> None:
    emb = _client(FakeServer(FakeAuxEmbedder()))
    query = emb.embed_query("a person near the EXIT")
    assert set(query) == {"text"} and query["text"].shape == (384,)
    np.testing.assert_allclose(query["text"], FakeAuxEmbedder().embed_query("a person near the EXIT")["text"])


def test_triton_embedder_maps_rejections_to_embedder_errors() -> None:
    server = FakeServer(FakeAuxEmbedder())
    emb = _client(server)
    with pytest.raises(EmbedderError, match="the question is empty") as info:
        emb.embed_query("   ")
    assert isinstance(info.value.__cause__, TritonRequestError) and info.value.__cause__.invalid_argument
    with pytest.raises(EmbedderError, match="too small"):
        emb.embed_frames([np.zeros((4, 4, 3), np.uint8)], [""])
    sent = len(server.requests)
    # What cannot be put on the wire is refused here, without a request.
    with pytest.raises(EmbedderError, match="uint8 BGR"):
        emb.embed_frames([np.zeros((16, 16, 3), np.float32)], [""])
    with pytest.raises(EmbedderError, match="one text per image"):
        emb.embed_frames([np.zeros((16, 16, 3), np.uint8)], [])
    assert len(server.requests) == sent


def test_triton_embedder_refuses_an_unprepared_model() -> None:
    server = FakeServer(FakeAuxEmbedder())
    server.parameters = lambda: {"embedder": "", "vector_specs": ""}  # type: ignore[method-assign]
    with pytest.raises(EmbedderError, match=r"'embedder' at edge:8001: .*prepare_triton_repo\.py"):
        _client(server)


def test_config_discriminates_triton() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(EmbedderConfig)
    config = adapter.validate_python({"type": "triton", "url": "triton:8001"})
    assert isinstance(config, TritonEmbedderConfig)
    assert (config.model_name, config.url, config.batch_size) == ("embedder", "triton:8001", 16)
    with pytest.raises(ValidationError):
        adapter.validate_python({"type": "triton", "checkpoint": "/x"})
    with pytest.raises(ValidationError):
        adapter.validate_python({"type": "triton", "batch_size": 0})


def test_prepared_config_declares_one_output_per_vector() -> None:
    template = (TEMPLATES / "embedder" / "config.pbtxt").read_text()
    text = set_vector_outputs(template, {"text": 384, "image": 1280})
    assert "# VECTOR_OUTPUTS:" not in text
    for name, dim in (("text", 384), ("image", 1280)):
        assert f'name: "VECTOR_{name}"\n    data_type: TYPE_FP32\n    dims: [ {dim} ]' in text
    with pytest.raises(ValueError, match="VECTOR_OUTPUTS"):
        set_vector_outputs(text, {"text": 384})
