"""Memory Retrieve/Describe and reasoning Ask over real gRPC servers on port 0, on a real memory.

The memory is Qdrant Edge + the frame store in tmp, with the real aux-minilm embedder (MiniLM and
MobileNetV2 from PyPI wheels, OCR off for speed); index entries go in through the writer's topic
handler, exactly as the index topic delivers them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from services.common.bus import Message, PoisonMessage
from services.indexing.stream import point_id_for
from services.memory.bootstrap import Memory
from services.memory.config import FrameStoreConfig, MemoryConfig
from services.memory.grpc_server import create_server as memory_server
from services.memory.qdrant_client_store import QdrantClientStore
from services.memory.store import QdrantEdgeStoreConfig, QdrantServerStoreConfig
from services.models.answerers.base import Answer, AnswerUnavailable, EvidenceAnswerer, EvidenceFrame
from services.models.embedders.base import AuxMiniLMEmbedderConfig, Embedder, build_embedder
from services.reasoning.grpc_server import create_server as reasoning_server
from services.reasoning.reasoner import GrpcMemory, Reasoner
from tests.fixtures.tcp_proxy import free_port
from vigil.media.v1 import frame_pb2
from vigil.memory.v1 import memory_pb2, memory_pb2_grpc
from vigil.reasoning.v1 import reasoning_pb2, reasoning_pb2_grpc

pytestmark = pytest.mark.torch

# (start_s, what the detector/OCR said): 1 s clusters of 5 frames at 5 fps on camera "lobby".
SCENES = [
    (0.0, "nothing detected, no text"),
    (1.0, "objects: 2 person"),
    (2.0, "objects: 1 person fallen on the ground"),
    (3.0, "text: EXIT"),
    (4.0, "nothing detected, no text"),
    (5.0, "objects: 3 car"),
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return build_embedder(AuxMiniLMEmbedderConfig(ocr=False))


def jpeg(seed: int) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (72, 128, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def frame_msg(camera: str, t: float, seq: int) -> Message:
    f = frame_pb2.Frame(camera_id=camera, seq=seq, pts_s=t, capture_time_ns=seq, jpeg=jpeg(seq))
    return Message("frames", 0, seq, camera.encode(), f.SerializeToString())


def entries(embedder: Embedder, camera: str = "lobby") -> list[memory_pb2.IndexEntry]:
    """Index entries with the real embedder's vectors of each scene's auxiliary text."""
    images = [cv2.imdecode(np.frombuffer(jpeg(i), np.uint8), cv2.IMREAD_COLOR) for i in range(len(SCENES))]
    vectors = [embedder.embed_texts([text])[0] for _, text in SCENES]  # type: ignore[attr-defined]
    pix = embedder.embed_pixels(images)  # type: ignore[attr-defined]
    out = []
    for k, ((start, text), tv, iv) in enumerate(zip(SCENES, vectors, pix, strict=True)):
        members = [memory_pb2.FrameRef(time_s=start + i * 0.2, capture_time_ns=i, seq=k * 5 + i) for i in range(5)]
        out.append(
            memory_pb2.IndexEntry(
                point_id=point_id_for(camera, start),
                camera_id=camera,
                scene_id=k,
                cluster_id=k,
                start_s=start,
                end_s=start + 0.8,
                index_frame=members[2],
                members=members,
                vectors=[
                    memory_pb2.NamedVector(name="text", values=tv.tolist()),
                    memory_pb2.NamedVector(name="image", values=iv.tolist()),
                ],
                aux_text=text,
                embedder=embedder.name,
                index_jpeg=jpeg(1000 + k),
            )
        )
    return out


def fill(memory: Memory, embedder: Embedder) -> None:
    for k, (start, _) in enumerate(SCENES):
        for i in range(5):
            memory.writer.on_frame(frame_msg("lobby", start + i * 0.2, k * 5 + i))
    for e in entries(embedder):
        memory.writer.on_index_entry(Message("index", 0, 0, b"lobby", e.SerializeToString()))


def config(root: Path) -> MemoryConfig:
    return MemoryConfig(
        store=QdrantEdgeStoreConfig(path=root / "qdrant"),
        frames=FrameStoreConfig(path=root / "frames"),
        embedder=AuxMiniLMEmbedderConfig(ocr=False),
    )


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Memory]:
    mem = Memory(config(tmp_path_factory.mktemp("mem")), embedder=embedder)
    fill(mem, embedder)
    yield mem
    mem.close()


@pytest.fixture(scope="module")
def memory_address(memory: Memory) -> Iterator[str]:
    server, port, _ = memory_server("127.0.0.1:0", memory)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


@pytest.fixture(scope="module")
def memory_stub(memory_address: str) -> Iterator[memory_pb2_grpc.MemoryServiceStub]:
    with grpc.insecure_channel(memory_address) as ch:
        yield memory_pb2_grpc.MemoryServiceStub(ch)


@pytest.fixture(scope="module")
def reasoning_stub(memory_address: str) -> Iterator[reasoning_pb2_grpc.ReasoningServiceStub]:
    source = GrpcMemory(memory_address, timeout_s=10.0)
    server, port, _ = reasoning_server("127.0.0.1:0", Reasoner(source, EvidenceAnswerer()))
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield reasoning_pb2_grpc.ReasoningServiceStub(ch)
    server.stop(0)
    source.close()


def test_retrieve_top_k_finds_the_right_span(memory_stub: memory_pb2_grpc.MemoryServiceStub) -> None:
    resp = memory_stub.Retrieve(
        memory_pb2.RetrieveRequest(
            question="did someone fall down?", mode=memory_pb2.RETRIEVAL_MODE_TOP_K, max_frames=1
        )
    )
    (k,) = resp.keyframes
    assert 2.0 <= k.time_s <= 2.8 and k.aux_text.endswith("fallen on the ground")
    assert k.jpeg and k.from_index_frame and k.index_point_id == point_id_for("lobby", 2.0)
    assert math.isnan(resp.covered_probability)
    resp = memory_stub.Retrieve(
        memory_pb2.RetrieveRequest(question="the EXIT sign", mode=memory_pb2.RETRIEVAL_MODE_TOP_K, max_frames=1)
    )
    assert 3.0 <= resp.keyframes[0].time_s <= 3.8


def test_retrieve_akr_samples_raw_frames_with_metadata(memory_stub: memory_pb2_grpc.MemoryServiceStub) -> None:
    req = memory_pb2.RetrieveRequest(question="people", camera_id="lobby", seed=11, temperature=0.05)
    resp = memory_stub.Retrieve(req)
    assert resp.mode == memory_pb2.RETRIEVAL_MODE_AKR and resp.seed == 11
    assert resp.index_frames_in_range == len(SCENES)
    assert resp.n_min <= resp.draws <= resp.n_max
    assert resp.embedder.startswith("aux-minilm") and "cannot" in resp.embedder_limitations
    times = [k.time_s for k in resp.keyframes]
    assert times == sorted(times) and all(k.jpeg for k in resp.keyframes)
    assert all(k.cluster_start_s <= k.time_s <= k.cluster_end_s + 1e-6 for k in resp.keyframes)
    # The most probable cluster is the one with people in it.
    best = max(resp.keyframes, key=lambda k: k.probability)
    assert best.aux_text == "objects: 2 person"
    again = memory_stub.Retrieve(req)
    assert [k.time_s for k in again.keyframes] == times
    ranged = memory_stub.Retrieve(
        memory_pb2.RetrieveRequest(question="people", range=memory_pb2.TimeRange(since_s=4.5), omit_images=True)
    )
    assert ranged.index_frames_in_range == 2 and all(not k.jpeg and k.time_s >= 4.0 for k in ranged.keyframes)


@pytest.mark.parametrize(
    ("request_kwargs", "code", "match"),
    [
        ({"question": "  "}, grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        (
            {"question": "x", "range": memory_pb2.TimeRange(since_s=9, until_s=1)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "inverted",
        ),
        ({"question": "x", "camera_id": "garage"}, grpc.StatusCode.NOT_FOUND, "unknown camera 'garage'.*lobby"),
        ({"question": "x", "range": memory_pb2.TimeRange(since_s=60)}, grpc.StatusCode.NOT_FOUND, "nothing"),
        ({"question": "x", "theta": 2.0}, grpc.StatusCode.INVALID_ARGUMENT, "theta"),
    ],
)
def test_retrieve_bad_requests(
    memory_stub: memory_pb2_grpc.MemoryServiceStub, request_kwargs: dict[str, object], code: grpc.StatusCode, match: str
) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        memory_stub.Retrieve(memory_pb2.RetrieveRequest(**request_kwargs))  # type: ignore[arg-type]
    assert exc.value.code() == code
    import re

    assert re.search(match, exc.value.details())


def test_describe(memory_stub: memory_pb2_grpc.MemoryServiceStub) -> None:
    resp = memory_stub.Describe(memory_pb2.DescribeRequest())
    (cam,) = resp.cameras
    assert (cam.camera_id, cam.index_frames, cam.earliest_s, round(cam.latest_s, 3)) == ("lobby", 6, 0.0, 5.8)
    assert resp.raw_frames == 30 and resp.store == "qdrant-edge"


def test_ask_answers_with_evidence_and_says_no_vlm_ran(
    reasoning_stub: reasoning_pb2_grpc.ReasoningServiceStub,
) -> None:
    resp = reasoning_stub.Ask(
        reasoning_pb2.AskRequest(
            question="did anyone fall?", seed=5, mode=memory_pb2.RETRIEVAL_MODE_TOP_K, max_frames=2
        )
    )
    assert not resp.vlm_ran and resp.vlm == "evidence" and "No VLM ran" in resp.answer
    assert "fallen on the ground" in resp.answer
    assert list(resp.used_times_s) == sorted(k.time_s for k in resp.keyframes)
    assert any("no VLM" in n for n in resp.notes) and any("aux-minilm" in n for n in resp.notes)
    assert all(not k.jpeg for k in resp.keyframes)  # include_images was not asked for
    with_images = reasoning_stub.Ask(reasoning_pb2.AskRequest(question="people", include_images=True, seed=1))
    assert all(k.jpeg for k in with_images.keyframes)


@pytest.mark.parametrize(
    ("question", "camera", "code"),
    [("", "", grpc.StatusCode.INVALID_ARGUMENT), ("who?", "garage", grpc.StatusCode.NOT_FOUND)],
)
def test_ask_passes_the_memory_status_through(
    reasoning_stub: reasoning_pb2_grpc.ReasoningServiceStub, question: str, camera: str, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        reasoning_stub.Ask(reasoning_pb2.AskRequest(question=question, camera_id=camera))
    assert exc.value.code() == code and exc.value.details()


def test_ask_with_the_edge_memory_down_is_unavailable() -> None:
    source = GrpcMemory(f"127.0.0.1:{free_port()}", timeout_s=2.0)
    server, port, _ = reasoning_server("127.0.0.1:0", Reasoner(source, EvidenceAnswerer()))
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as exc:
                reasoning_pb2_grpc.ReasoningServiceStub(ch).Ask(reasoning_pb2.AskRequest(question="anyone?"))
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE and "edge memory" in exc.value.details()
        assert time.monotonic() - t0 < 10
    finally:
        server.stop(0)
        source.close()


def test_qdrant_server_down_fails_retrieve_fast_with_unavailable(tmp_path: Path, embedder: Embedder) -> None:
    """The qdrant-client adapter (local mode here) loses its server: Retrieve says UNAVAILABLE, at once."""
    cfg = config(tmp_path).model_copy(update={"store": QdrantServerStoreConfig(path=tmp_path / "local")})
    mem = Memory(cfg, embedder=embedder)
    fill(mem, embedder)
    server, port, _ = memory_server("127.0.0.1:0", mem)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = memory_pb2_grpc.MemoryServiceStub(ch)
            assert stub.Retrieve(memory_pb2.RetrieveRequest(question="people", seed=1)).keyframes
            # The server goes away: the adapter's client now talks to a Qdrant URL where nothing listens
            # (no Qdrant server binary exists here to stop; this swaps the connection under the adapter).
            from qdrant_client import QdrantClient

            store = mem.store
            assert isinstance(store, QdrantClientStore)
            store._client.close()
            store._client = QdrantClient(url=f"http://127.0.0.1:{free_port()}", timeout=1, check_compatibility=False)
            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as exc:
                stub.Retrieve(memory_pb2.RetrieveRequest(question="people"))
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE and "unavailable" in exc.value.details()
            assert time.monotonic() - t0 < 5
    finally:
        server.stop(0)
        mem.close()


def test_memory_survives_a_restart(tmp_path: Path, embedder: Embedder) -> None:
    mem = Memory(config(tmp_path), embedder=embedder)
    fill(mem, embedder)
    from services.memory.retriever import Mode, RetrieveQuery

    q = RetrieveQuery("did someone fall down?", mode=Mode.SAMPLE, max_frames=8, seed=2)
    first = [(f.time_s, f.jpeg) for f in mem.retriever.retrieve(q).frames]
    mem.close()
    reopened = Memory(config(tmp_path), embedder=embedder)
    try:
        assert reopened.count() == len(SCENES) and reopened.frames.raw_usage()[0] == 30
        assert [(f.time_s, f.jpeg) for f in reopened.retriever.retrieve(q).frames] == first
        # Re-indexing the same clusters replaces their points (deterministic ids), it does not add.
        fill(reopened, embedder)
        assert reopened.count() == len(SCENES)
    finally:
        reopened.close()


def test_entries_from_another_embedder_are_poison(memory: Memory, embedder: Embedder) -> None:
    e = entries(embedder)[0]
    e.embedder = "clip:some-other-model"
    with pytest.raises(PoisonMessage, match="same embedder"):
        memory.writer.on_index_entry(Message("index", 0, 0, None, e.SerializeToString()))
    with pytest.raises(PoisonMessage):
        memory.writer.on_index_entry(Message("index", 0, 0, None, b"\xff\xff garbage"))
    with pytest.raises(PoisonMessage):
        memory.writer.on_frame(Message("frames", 0, 0, None, frame_pb2.Frame(camera_id="x").SerializeToString()))


class _BackendAway(EvidenceAnswerer):
    """An answerer whose VLM backend is unreachable (how TritonVLMAnswerer fails when Triton is down)."""

    def answer(self, question: str, frames: Sequence[EvidenceFrame]) -> Answer:
        raise AnswerUnavailable("triton at 127.0.0.1:8001 refused the connection")


def test_ask_with_the_vlm_backend_down_is_unavailable(memory_address: str) -> None:
    source = GrpcMemory(memory_address, timeout_s=10.0)
    server, port, _ = reasoning_server("127.0.0.1:0", Reasoner(source, _BackendAway()))
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch, pytest.raises(grpc.RpcError) as exc:
            reasoning_pb2_grpc.ReasoningServiceStub(ch).Ask(reasoning_pb2.AskRequest(question="people"))
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE and "VLM backend" in exc.value.details()
    finally:
        server.stop(0)
        source.close()


def test_ask_across_mutual_tls_and_tokens(memory: Memory, tmp_path: Path) -> None:
    """The WAN leg as the charts set it up: reasoning (its own TLS, an operator's token) asks a memory that
    admits Retrieve only for the client certificate whose CN is "reasoning"."""
    from services.common.config import GrpcServerSecurity
    from services.common.grpc_runtime import ClientSecurity, ServerSecurity, open_channel
    from services.reasoning.bootstrap import build as build_reasoning
    from services.reasoning.config import ReasoningConfig, ReasoningSettings
    from tests.fixtures.pki import Pki

    pki = Pki.create(tmp_path / "pki")
    memory_security = GrpcServerSecurity(
        tls=pki.cert("memory"), require_client_cert=True, allow={"Retrieve": ["reasoning"], "*": ["operator"]}
    )
    server, port, _ = memory_server("127.0.0.1:0", memory, ServerSecurity.load(memory_security))
    server.start()
    tokens_file, tokens = pki.tokens("operator")
    settings = ReasoningSettings(
        grpc_address="127.0.0.1:0",
        grpc_security=GrpcServerSecurity(
            tls=pki.cert("reasoning-server"), tokens_file=tokens_file, allow={"Ask": ["operator"]}
        ),
        reasoning=ReasoningConfig(memory_address=f"localhost:{port}", memory_security=pki.client("reasoning")),
    )
    stage = build_reasoning(settings)
    stop = threading.Event()
    stage.start(stop)
    assert stage.endpoint is not None
    try:
        operator = ClientSecurity.load(pki.client(token=tokens["operator"]), "test")
        with open_channel(f"localhost:{stage.endpoint.port}", operator) as ch:
            resp = reasoning_pb2_grpc.ReasoningServiceStub(ch).Ask(
                reasoning_pb2.AskRequest(
                    question="did anyone fall?", mode=memory_pb2.RETRIEVAL_MODE_TOP_K, max_frames=2
                ),
                timeout=30,
            )
        assert "fallen on the ground" in resp.answer and resp.keyframes
        # Another certificate from the same CA may not Retrieve raw frames; none at all gets no handshake.
        for client, code in (
            (pki.client("operator"), grpc.StatusCode.PERMISSION_DENIED),
            (pki.client(), grpc.StatusCode.UNAVAILABLE),
        ):
            with open_channel(f"localhost:{port}", ClientSecurity.load(client, "test")) as ch:
                with pytest.raises(grpc.RpcError) as err:
                    memory_pb2_grpc.MemoryServiceStub(ch).Retrieve(
                        memory_pb2.RetrieveRequest(question="a car"), timeout=10
                    )
                assert err.value.code() == code
    finally:
        stop.set()
        stage.close(grace_s=0.2)
        server.stop(0)
