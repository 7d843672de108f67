"""make bench-triton: each model through Triton vs in-process on the same inputs, on this machine (CPU).

Prints JSON lines: per backend, per-request latency (mean, p50, p95) and
throughput of sequential requests; for the detector also the throughput of
concurrent clients through Triton (its dynamic batcher at work); per model the
overhead ratio (Triton mean latency / in-process mean latency). The server is
the real tritonserver 2.51 of nvidia-pytriton (Python backend) on 127.0.0.1,
started on a repository prepared in a temporary folder; the detector is the
shipped fall detector (best_fp16.onnx), the vlm a tiny random Qwen2.5-VL (its
timings are the serving overhead around a ~200k-parameter model, not a VLM's),
vlm_answer the same checkpoint answering a question over three full-resolution
keyframes (raw pixels on the wire), the embedder
a tiny random CLIP (32x32 input: its timings are the serving overhead, chiefly
shipping a raw full-resolution frame, plus CLIP's preprocessing, around a model
that computes almost nothing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.harness import SHARED_DATA, compare, emit, machine_info, percentiles
from scripts.make_tiny_clip import make_tiny_clip
from scripts.make_tiny_qwen_vl import make_tiny_qwen_vl
from scripts.prepare_triton_repo import (
    DetectorWeights,
    EmbedderWeights,
    VlmAnswerWeights,
    VlmWeights,
    prepare_repository,
)
from services.models.answerers.base import EvidenceFrame, build_answerer
from services.models.answerers.config import QwenVLAnswererConfig, TritonVLMAnswererConfig
from services.models.detectors.base import OnnxDetectorConfig, TritonDetectorConfig, build_detector
from services.models.embedders.base import (
    ClipEmbedderConfig,
    Embedder,
    TritonEmbedderConfig,
    build_embedder,
)
from services.models.structurers.base import StructuringRequest
from services.models.structurers.config import EVENT_TOKEN_BUDGET, TritonVLMConfig
from services.models.structurers.triton_vlm import TritonVLMStructurer
from tests.fixtures.media import bus_jpg, package_file
from tests.fixtures.triton import TritonServer

FRAMES = SHARED_DATA / "images" / "accident_cctv_yolo" / "images"


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """Mean, p50 and p95 in milliseconds, and sequential throughput in requests per second."""
    ms = np.asarray(seconds) * 1e3
    p50, p95 = percentiles(ms)
    return {
        "requests": len(ms),
        "mean_ms": round(float(ms.mean()), 2),
        "p50_ms": round(p50, 2),
        "p95_ms": round(p95, 2),
        "throughput_rps": round(float(1e3 / ms.mean()), 2),
    }


def overhead(model: str, served: dict[str, float], base: dict[str, float], **fields: Any) -> None:
    """The Triton-over-in-process record: mean latency ratio and the milliseconds Triton adds."""
    compare(
        model,
        {"overhead_ratio": served["mean_ms"]},
        {"overhead_ratio": base["mean_ms"]},
        label="model",
        **fields,
        overhead_ms=round(served["mean_ms"] - base["mean_ms"], 2),
    )


def time_each(fn: Callable[[Any], object], inputs: Sequence[Any], warmup: int = 2) -> list[float]:
    """Per-call wall time of fn over inputs, after `warmup` untimed calls."""
    for x in inputs[:warmup]:
        fn(x)
    out = []
    for x in inputs:
        t0 = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t0)
    return out


def load_images(n: int) -> list[np.ndarray]:
    """bus.jpg plus real CCTV frames from ../shared/data (when present), cycled to n."""
    paths = [bus_jpg(), package_file("ultralytics", "assets", "zidane.jpg")]
    if FRAMES.is_dir():
        paths += sorted(FRAMES.glob("*.jpg"))[:8]
    images = [img for img in (cv2.imread(str(p)) for p in paths if p.is_file()) if img is not None]
    return [images[i % len(images)] for i in range(n)]


def bench_detector(server: TritonServer, images: list[np.ndarray], concurrency: int) -> None:
    """OnnxDetector in-process vs TritonDetector, sequential, then concurrent clients through Triton."""
    local = build_detector(OnnxDetectorConfig())
    remote = build_detector(TritonDetectorConfig(url=server.grpc_url))
    base = latency_stats(time_each(local.detect, images))
    emit({"model": "detector", "backend": "in-process", "detector": local.name, **base})
    served = latency_stats(time_each(remote.detect, images))
    emit({"model": "detector", "backend": "triton", "detector": remote.name, **served})

    clients = [build_detector(TritonDetectorConfig(url=server.grpc_url)) for _ in range(concurrency)]
    for c in clients:
        c.detect(images[0])
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda i: clients[i % concurrency].detect(images[i]), range(len(images))))
    wall = time.perf_counter() - t0
    emit(
        {
            "model": "detector",
            "backend": "triton",
            "mode": f"{concurrency} concurrent clients (dynamic batching)",
            "requests": len(images),
            "throughput_rps": round(len(images) / wall, 2),
        }
    )
    overhead("detector", served, base)


def bench_vlm(server: TritonServer, checkpoint: Path, images: list[np.ndarray], max_new_tokens: int) -> None:
    """QwenVLStructurer in-process vs TritonVLMStructurer on the same boxed frames and priors."""
    import torch

    from services.models.structurers.qwen_vl import QwenVLStructurer

    torch.set_num_threads(1)  # the served model runs with one torch thread too
    detector = build_detector(OnnxDetectorConfig())
    requests = []
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        requests.append(StructuringRequest(img, detector.detect(img), w, h, camera_id=f"cam-{i}"))
    local = QwenVLStructurer(checkpoint, max_new_tokens=max_new_tokens)
    remote = TritonVLMStructurer(TritonVLMConfig(url=server.grpc_url))
    base = latency_stats(time_each(local.structure, requests))
    emit({"model": "vlm", "backend": "in-process", "producer": local.producer.name, **base})
    served = latency_stats(time_each(remote.structure, requests))
    emit({"model": "vlm", "backend": "triton", "producer": remote.producer.name, **served})
    same = sum(local.structure(r).to_json_bytes() == remote.structure(r).to_json_bytes() for r in requests[:3])
    overhead("vlm", served, base, identical_events=f"{same}/3")


def bench_answer(
    server: TritonServer, checkpoint: Path, images: list[np.ndarray], max_new_tokens: int, max_image_side: int
) -> None:
    """QwenVLAnswerer in-process vs TritonVLMAnswerer on the same question and three keyframes per request."""
    import torch

    torch.set_num_threads(1)  # the served model runs with one torch thread too
    local = build_answerer(
        QwenVLAnswererConfig(checkpoint=checkpoint, max_new_tokens=max_new_tokens, max_image_side=max_image_side)
    )
    remote = build_answerer(TritonVLMAnswererConfig(url=server.grpc_url))
    question = "Did anyone fall, and when?"
    requests = [
        [
            EvidenceFrame(f"cam-{i}", 10.0 * i + k, images[(i + k) % len(images)], f"{k + 1} x person", 0.3, 0.5)
            for k in range(3)
        ]
        for i in range(len(images))
    ]
    base = latency_stats(time_each(lambda frames: local.answer(question, frames), requests))
    emit({"model": "vlm_answer", "backend": "in-process", "keyframes": 3, "answerer": local.name, **base})
    served = latency_stats(time_each(lambda frames: remote.answer(question, frames), requests))
    emit({"model": "vlm_answer", "backend": "triton", "keyframes": 3, "answerer": remote.name, **served})
    same = sum(local.answer(question, r) == remote.answer(question, r) for r in requests[:3])
    overhead("vlm_answer", served, base, identical_answers=f"{same}/3")


def bench_embedder(server: TritonServer, checkpoint: Path, images: list[np.ndarray], concurrency: int) -> None:
    """ClipEmbedder in-process vs TritonEmbedder: one index frame per request, then one question per request."""
    import torch

    torch.set_num_threads(1)  # the served model runs with one torch thread too
    local = build_embedder(ClipEmbedderConfig(checkpoint=checkpoint))
    remote = build_embedder(TritonEmbedderConfig(url=server.grpc_url))
    frames = [(img, f"{i % 4} x person") for i, img in enumerate(images)]
    questions = [f"a person lying on the road near camera {i}" for i in range(len(images))]

    def frame_request(embedder: Embedder) -> Callable[[tuple[np.ndarray, str]], object]:
        return lambda frame: embedder.embed_frames([frame[0]], [frame[1]])

    rows: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
    for kind, inputs, call in (
        ("frame", frames, frame_request),
        ("query", questions, lambda e: e.embed_query),
    ):
        base = latency_stats(time_each(call(local), inputs))
        emit({"model": "embedder", "backend": "in-process", "request": kind, "embedder": local.name, **base})
        served = latency_stats(time_each(call(remote), inputs))
        emit({"model": "embedder", "backend": "triton", "request": kind, "embedder": remote.name, **served})
        rows[kind] = (base, served)

    clients = [build_embedder(TritonEmbedderConfig(url=server.grpc_url)) for _ in range(concurrency)]
    for c in clients:
        c.embed_frames([images[0]], [""])
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(
            pool.map(
                lambda i: clients[i % concurrency].embed_frames([frames[i][0]], [frames[i][1]]), range(len(frames))
            )
        )
    wall = time.perf_counter() - t0
    emit(
        {
            "model": "embedder",
            "backend": "triton",
            "request": "frame",
            "mode": f"{concurrency} concurrent clients (dynamic batching)",
            "requests": len(frames),
            "throughput_rps": round(len(frames) / wall, 2),
        }
    )
    sample = frames[:3]
    diffs = [
        float(np.abs(got.vectors["clip"] - want.vectors["clip"]).max())
        for img, text in sample
        for got, want in zip(remote.embed_frames([img], [text]), local.embed_frames([img], [text]), strict=True)
    ]
    for kind, (base, served) in rows.items():
        extra = {"max_abs_vector_diff": float(f"{max(diffs):.2e}")} if kind == "frame" else {}
        overhead("embedder", served, base, request=kind, **extra)


def main() -> int:
    """Prepare a repository, start tritonserver, run the four comparisons, print JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector-requests", type=int, default=30)
    ap.add_argument("--vlm-requests", type=int, default=10)
    ap.add_argument("--embedder-requests", type=int, default=30)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=EVENT_TOKEN_BUDGET, help="at least the event budget")
    ap.add_argument("--answer-requests", type=int, default=10)
    ap.add_argument("--answer-max-new-tokens", type=int, default=64)
    ap.add_argument("--max-image-side", type=int, default=448)
    args = ap.parse_args()
    emit(
        {
            "bench": "triton",
            **machine_info(),
            "server": "tritonserver 2.51 (nvidia-pytriton 0.7.0), Python backend, CPU",
        }
    )
    with tempfile.TemporaryDirectory(prefix="vigil-bench-triton-") as tmp:
        checkpoint = make_tiny_qwen_vl(Path(tmp) / "tiny-qwen2.5-vl", seed=0)
        clip = make_tiny_clip(Path(tmp) / "tiny-clip", seed=0)
        repo = prepare_repository(
            Path(tmp) / "repo",
            # The shipped fall detector, as bench_detector's in-process OnnxDetectorConfig() runs.
            detector=DetectorWeights(model="fall"),
            vlm=VlmWeights(checkpoint, max_new_tokens=args.max_new_tokens, torch_threads=1),
            embedder=EmbedderWeights(clip, torch_threads=1),
            vlm_answer=VlmAnswerWeights(
                checkpoint,
                max_new_tokens=args.answer_max_new_tokens,
                max_image_side=args.max_image_side,
                torch_threads=1,
            ),
        )
        with TritonServer(repo) as server:
            bench_detector(server, load_images(args.detector_requests), args.concurrency)
            bench_vlm(server, checkpoint, load_images(args.vlm_requests), args.max_new_tokens)
            bench_answer(
                server, checkpoint, load_images(args.answer_requests), args.answer_max_new_tokens, args.max_image_side
            )
            bench_embedder(server, clip, load_images(args.embedder_requests), args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
