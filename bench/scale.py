"""What N cameras cost in one `vigil run`: 1, 4 and 16 live-paced cameras, then the most this machine holds.

Each camera replays one of the shared videos (cycled to make N) as a live camera would send it:
paced in real time at `--fps` (2 per camera by default), looping the file, for `--duration`
seconds, started at staggered phases (cameras are not synchronised). The frames are live, so a
camera whose gating queue is full drops its oldest frame, as on a site. Everything runs through
the embedded pipeline (`vigil run`'s `EmbeddedPipeline`) with the memory on.

One JSON line per N: frames/s through the pipeline; p95 frame-to-alert (capture -> alert delivered),
frame-to-gated (capture -> gating done with the frame: every frame, not only alerting ones)
and frame-to-index (capture -> its cluster's index entry stored in the memory); the CPU
share of each stage (per-thread CPU time; the detectors run on their callers' threads so
their time is the gate's) and the gate's own split (motion, detect, context, structure); the
seconds each instrumented stage was busy and each serial loop's busy share of the wall clock
(the busiest binds); whether the memory kept up (its backlog drained within 10% of the stream);
RSS growth; live frames dropped. Each record carries its ratios to
the 1-camera run, the reference the issue names. Then a search for the most cameras at
`--fps` whose p95 frame-to-alert stays under `--slo` seconds with no frame dropped (and whose
p95 frame-to-gated does: few of the shared videos alert, so the gate's latency over every frame
decides where fewer than MIN_ALERT_SAMPLES alerts were delivered).

    python -m bench.scale                         # make bench-scale
    python -m bench.scale --counts 1,2 --duration 10 --no-search
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import SHARED_DATA, emit, machine_info, percentiles, ratio
from services.common.bus import Message
from services.common.bus.inprocess import InProcessBus
from services.common.frames import RawFrame
from services.common.runtime import Stage
from services.embedded import CameraFeed, EdgeSettings, EmbeddedPipeline
from services.ingest.source import SourceStats, VideoSource
from vigil.memory.v1 import memory_pb2

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
# Per-thread CPU time is read from /proc in clock ticks.
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
# Thread-name prefixes (Stage names its threads `<stage>-<part>`) -> the stage they do the work of.
THREAD_STAGES = (
    ("ingest-", "ingest (decode + JPEG encode)"),
    ("gating-consumer", "gating JPEG decode"),
    ("gating-gate", "gate (motion, detect, context, structure)"),
    ("indexing", "indexing (scene features, OCR + embed at cluster close)"),
    ("memory", "memory write"),
    ("uplink", "uplink"),
    ("alert-sink", "alert sink"),
    ("bench-", "bench probes"),
)
OTHER = "other (main thread, import-time pools)"
MODEL_POOLS = "indexing/memory model pools (embedders, OCR, Qdrant)"
DECODERS = "ingest video decoder threads (FFmpeg)"
GATE_STAGES = ("motion", "detect", "context", "evidence", "structure")
INDEX_STAGES = ("segment_cluster", "describe", "embed")
# Below this many alerts, their p95 does not decide whether a run held (the gate's p95 does).
MIN_ALERT_SAMPLES = 3


def busy_s() -> dict[str, float]:
    """Seconds each instrumented stage was busy in this process (the services' own stage histograms)."""
    from prometheus_client import REGISTRY

    out: dict[str, float] = {}
    for metric, stages in (
        ("vigil_gating_stage_seconds", ("decode", *GATE_STAGES)),
        ("vigil_indexing_stage_seconds", INDEX_STAGES),
    ):
        for stage in stages:
            value = REGISTRY.get_sample_value(f"{metric}_sum", {"stage": stage})
            if value:
                out[f"{metric.split('_')[1]}.{stage}"] = value
    return out


def shared_videos() -> list[Path]:
    """The shared videos, in name order (the bench cycles them to make N cameras)."""
    root = SHARED_DATA / "videos"
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


class ReplayCamera(VideoSource):
    """A video file replayed as a live camera: looped, sampled and paced at `fps` in real time for `duration_s`.

    Its frames are live (`is_stream`): time-stamped on arrival, and dropped oldest-first by
    gating when the camera's queue is full. It never reconnects, so ending is not a failure.
    """

    def __init__(self, path: Path, fps: float, duration_s: float, phase_s: float = 0.0) -> None:
        # Not VideoSource.__init__: the file is opened (and reopened at its end) by an inner source.
        self._path = str(path)
        self._inner = VideoSource(self._path, fps=fps)
        self.source = self._path
        self.is_stream = True
        # A replay of a set length ends by itself: that is no lost camera.
        self.ends = True
        self.target_fps = fps
        self.native_fps = fps
        self.width, self.height = self._inner.width, self._inner.height
        self.stats = SourceStats()
        self._duration_s = duration_s
        self._phase_s = phase_s

    def frames(self) -> Iterator[RawFrame]:
        """Frame k at phase + k / fps (sleeping until then), the file looped, until `duration_s`."""
        period = 1.0 / self.target_fps if self.target_fps else 0.0
        n = int(self._duration_s / period) if period else 0
        t0 = time.monotonic() + self._phase_s
        k = 0
        while k < n:
            for raw in self._inner.frames():
                if k >= n:
                    return
                delay = t0 + k * period - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.stats.frames_read += 1
                self.stats.frames_sampled += 1
                yield RawFrame(index=k, pts_s=k * period, image=raw.image)
                k += 1
            self._inner.close()
            self._inner = VideoSource(self._path, fps=self.target_fps)

    def close(self) -> None:
        """Release the decoder."""
        self._inner.close()


class IndexProbe:
    """Frame -> index latency: each index entry's member capture times, matched with the moment the memory stored it.

    The memory stores the index topic's entries in order (one partition in-process), so the
    k-th entry stored is the k-th published; the watcher stamps each as the writer's count moves.
    """

    def __init__(self, bus: InProcessBus, topic: str, pipeline: EmbeddedPipeline) -> None:
        assert pipeline.memory is not None
        self.writer = pipeline.memory.memory.writer
        self.stored0 = self.writer.entries_stored
        self.published: list[tuple[list[int], int]] = []  # (member capture ns, indexed ns) per entry
        self.stored_ns: list[int] = []
        self.stage = Stage(
            "bench-index-probe",
            consumers=[bus.consumer([topic], f"bench-index-probe-{time.time_ns()}", self._on_entry)],
            loops=[("watch", self._watch)],
        )

    def _on_entry(self, msg: Message) -> None:
        entry = memory_pb2.IndexEntry.FromString(msg.value)
        self.published.append(([m.capture_time_ns for m in entry.members], entry.indexed_time_ns))

    def _watch(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self.writer.cond:
                self.writer.cond.wait(0.05)
                stored = self.writer.entries_stored - self.stored0
            now = time.time_ns()
            while len(self.stored_ns) < stored:
                self.stored_ns.append(now)

    def latencies_ms(self) -> tuple[list[float], list[float]]:
        """(capture -> stored per member frame, cluster closed -> stored per entry), in ms."""
        frame: list[float] = []
        close: list[float] = []
        for (members, indexed_ns), stored_ns in zip(self.published, self.stored_ns, strict=False):
            frame.extend((stored_ns - c) / 1e6 for c in members if c)
            if indexed_ns:
                close.append((stored_ns - indexed_ns) / 1e6)
        return frame, close


class ThreadCpu:
    """CPU seconds per thread of this process (sampled until each thread ends), attributed to stages.

    Python threads are named by their Stage (`<stage>-<part>`). Native threads carry no name,
    so they are told apart by when they appeared: those started while the pipeline was built
    are the model runtimes' pools (the gate's detectors run on one intra-op thread, on the
    gate's own thread, so these are the indexing embedders', the OCR's and Qdrant's); those
    started once the cameras were opened are the video decoders' (FFmpeg) threads.
    """

    def __init__(self, before_build: set[int], after_build: set[int]) -> None:
        self.cpu: dict[int, float] = {}
        self.cpu0: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self._before, self._built = before_build, after_build - before_build
        self.rss_max = rss_bytes()
        self.rss_warm: int | None = None
        self._process0 = process_cpu_s()
        self.process_s = 0.0
        self.sample()
        self.cpu0 = dict(self.cpu)

    def sample(self) -> None:
        """Read every thread's CPU time, and the process's RSS."""
        self.names.update({t.native_id: t.name for t in threading.enumerate() if t.native_id is not None})
        for tid in task_ids():
            try:
                fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime and stime are the stat file's 14th and 15th fields (11th and 12th after the name).
            self.cpu[tid] = (int(fields[11]) + int(fields[12])) * TICK_S
        self.rss_max = max(self.rss_max, rss_bytes())
        self.process_s = process_cpu_s() - self._process0

    def run(self, stop: threading.Event, warm_after_s: float) -> None:
        """Sample every 0.25 s until stopped; note the RSS once `warm_after_s` have passed."""
        t0 = time.monotonic()
        while not stop.wait(0.25):
            self.sample()
            if self.rss_warm is None and time.monotonic() - t0 >= warm_after_s:
                self.rss_warm = rss_bytes()

    def stage_of(self, tid: int) -> str:
        """The stage a thread works for."""
        name = self.names.get(tid)
        if name is not None:
            return next((label for prefix, label in THREAD_STAGES if name.startswith(prefix)), OTHER)
        if tid in self._built:
            return MODEL_POOLS
        if tid not in self._before:
            return DECODERS
        return OTHER

    def shares(self) -> dict[str, float]:
        """CPU seconds per stage over the run."""
        out: dict[str, float] = {}
        for tid, cpu_s in self.cpu.items():
            stage = self.stage_of(tid)
            out[stage] = out.get(stage, 0.0) + cpu_s - self.cpu0.get(tid, 0.0)
        return out


def task_ids() -> set[int]:
    """The ids of this process's threads, native ones included."""
    return {int(t.name) for t in Path("/proc/self/task").iterdir()}


def rss_bytes() -> int:
    """Resident set size of this process."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def process_cpu_s() -> float:
    """User + system CPU seconds of this process so far."""
    t = os.times()
    return t.user + t.system


@dataclass
class Measured:
    """One run's record and whether it held the service level."""

    record: dict[str, Any]
    held: bool


def settings_for(memory_dir: Path) -> EdgeSettings:
    """The edge settings of a run: defaults (traffic profile), the memory under `memory_dir`.

    The ONNX detectors run on one intra-op thread: their work then lands on the gate's thread,
    where the CPU shares can see it (on 2 cores a second pool thread buys little anyway).
    """
    return EdgeSettings.model_validate(
        {
            "gating": {
                "detector": {"type": "onnx", "model": "accident", "intra_op_threads": 1},
                "context_detector": {"type": "onnx", "model": "coco", "min_confidence": 0.3, "intra_op_threads": 1},
            },
            "memory": {
                "store": {"type": "qdrant-edge", "path": str(memory_dir / "qdrant")},
                "frames": {"path": str(memory_dir / "frames")},
            },
        }
    )


def run_cameras(n: int, videos: list[Path], fps: float, duration_s: float, slo_s: float) -> Measured:
    """N live-paced cameras through the embedded pipeline with the memory on; the record for this N."""
    memory_dir = Path(tempfile.mkdtemp(prefix=f"vigil-bench-scale-{n}-"))
    try:
        bus = InProcessBus()
        before = task_ids()
        pipeline = EmbeddedPipeline(settings_for(memory_dir), bus, with_memory=True)
        built = task_ids()
        feeds = [
            CameraFeed(f"cam{i:02d}", ReplayCamera(videos[i % len(videos)], fps, duration_s, phase_s=i / (n * fps)))
            for i in range(n)
        ]
        probe = IndexProbe(bus, pipeline.settings.topics.index, pipeline)
        cpu = ThreadCpu(before, built)
        rss0 = rss_bytes()
        stop = threading.Event()
        probe.stage.start(stop, serve=False)
        sampler = threading.Thread(target=cpu.run, args=(stop, duration_s / 4), name="bench-cpu-sampler", daemon=True)
        sampler.start()
        t0 = time.monotonic()
        try:
            summary = pipeline.run(feeds, max_inflight=0, drain_timeout_s=120)
        finally:
            wall = time.monotonic() - t0
            # Let the probe see the last stores before it stops.
            time.sleep(0.3)
            cpu.sample()
            stop.set()
            sampler.join(timeout=5)
            probe.stage.close(join_timeout_s=5)
            for feed in feeds:
                feed.source.close()
        rss1 = rss_bytes()
        return _record(n, fps, duration_s, slo_s, pipeline, summary, probe, cpu, wall, rss0, rss1)
    finally:
        shutil.rmtree(memory_dir, ignore_errors=True)


def _record(
    n: int,
    fps: float,
    duration_s: float,
    slo_s: float,
    pipeline: EmbeddedPipeline,
    summary: Any,
    probe: IndexProbe,
    cpu: ThreadCpu,
    wall: float,
    rss0: int,
    rss1: int,
) -> Measured:
    lat = pipeline.latency
    alert_p95 = percentiles(lat.samples("frame_to_delivered"), (95,))[0]
    gated_p50, gated_p95 = percentiles(lat.samples("frame_to_gated"))
    index_ms, close_ms = probe.latencies_ms()
    index_p95 = percentiles(index_ms, (95,))[0]
    close_p95 = percentiles(close_ms, (95,))[0]
    cpu_s = cpu.shares()
    total_cpu = sum(cpu_s.values()) or 1.0
    busy = lat.totals()
    gate_ms = {s: busy.get(s, 0.0) for s in GATE_STAGES}
    gate_total = sum(gate_ms.values()) or 1.0
    stage_s = busy_s() | {"ingest.encode": busy.get("ingest_encode", 0.0) / 1e3}
    # Each serial loop's work per second of stream: above 1.0 it cannot keep up in real time (gating then
    # drops live frames, indexing falls behind); the highest is the stage that binds, and n / load is
    # about how many cameras that loop holds at this fps.
    loops = {
        "gate loop (motion, detect, context, structure)": sum(
            v for k, v in stage_s.items() if k.startswith("gating.") and k != "gating.decode"
        ),
        "indexing consumer (segment + cluster, describe, embed)": sum(
            v for k, v in stage_s.items() if k.startswith("indexing.")
        ),
    }
    loop_load = {k: round(v / duration_s, 3) for k, v in loops.items()}
    dropped = sum(c.dropped for c in summary.cameras)
    frames = summary.frames_published
    gated = pipeline.gating.handler.frames
    binding = max(loop_load, key=lambda k: loop_load[k])
    alert_samples = len(lat.samples("frame_to_delivered"))
    # Few cameras alert (most shared videos show no accident), so an alert p95 over one or two alerts is
    # noise; every frame goes through the gate, so the gate's p95 decides too: an alerting frame waits as
    # long as any other before its event is written.
    held = (
        dropped == 0
        and all(not c.failed for c in summary.cameras)
        and gated_p95 < slo_s * 1e3
        and (alert_samples < MIN_ALERT_SAMPLES or alert_p95 < slo_s * 1e3)
    )
    record: dict[str, Any] = {
        "bench": "scale",
        "cameras": n,
        "fps_per_camera": fps,
        "stream_s": duration_s,
        "wall_s": round(wall, 1),
        "frames": frames,
        "frames_gated": gated,
        "dropped_live_frames": dropped,
        "offered_fps": round(n * fps, 2),
        # The alert path: frames gated per second of stream (live frames beyond it are dropped).
        "gated_fps": round(gated / duration_s, 2),
        # The whole pipeline (every frame gated or dropped, indexed and stored) over the stream and its drain.
        "frames_per_s": round(frames / wall, 2) if wall else 0.0,
        "alerts": summary.alerts,
        "alert_samples": alert_samples,
        "p95_frame_to_alert_ms": _round(alert_p95),
        "p50_frame_to_gated_ms": _round(gated_p50),
        "p95_frame_to_gated_ms": _round(gated_p95),
        "p95_frame_to_index_ms": _round(index_p95),
        "p95_cluster_close_to_index_ms": _round(close_p95),
        "index_entries": summary.index_entries,
        "cpu_s": round(sum(cpu_s.values()), 1),
        "cpu_utilisation": round(cpu.process_s / wall / (os.cpu_count() or 1), 3) if wall else 0.0,
        "cpu_share": {k: round(v / total_cpu, 3) for k, v in sorted(cpu_s.items(), key=lambda kv: -kv[1])},
        "gate_share": {k: round(v / gate_total, 3) for k, v in gate_ms.items() if v},
        "stage_busy_s": {k: round(v, 2) for k, v in sorted(stage_s.items(), key=lambda kv: -kv[1])},
        "loop_load": loop_load,
        "cameras_each_loop_holds": {k: round(n / v, 1) if v else None for k, v in loop_load.items()},
        "drain_s": round(wall - duration_s, 1),
        "memory_keeps_up": wall - duration_s <= max(5.0, 0.1 * duration_s),
        "detector_runs": pipeline.gating.handler.detector_runs,
        "detect_ms_p50": lat.summary().get("detect", {}).get("p50_ms"),
        "rss_start_mb": round(rss0 / 2**20, 1),
        "rss_end_mb": round(rss1 / 2**20, 1),
        "rss_growth_mb": round((rss1 - rss0) / 2**20, 1),
        # After the first quarter of the stream: the runtimes' arenas and caches are warm by then.
        "rss_growth_after_warmup_mb": round((rss1 - (cpu.rss_warm or rss0)) / 2**20, 1),
        "rss_peak_growth_mb": round((cpu.rss_max - rss0) / 2**20, 1),
        "binding_stage": binding,
        "held": held,
        "slo_s": slo_s,
        "failed_cameras": [c.camera_id for c in summary.cameras if c.failed],
    }
    return Measured(record, held)


def _round(v: float) -> float | None:
    return None if v != v else round(v, 1)


# The figures each record compares with the 1-camera run.
RATIO_KEYS = (
    "gated_fps",
    "frames_per_s",
    "p95_frame_to_alert_ms",
    "p95_frame_to_gated_ms",
    "p95_frame_to_index_ms",
    "rss_growth_mb",
)


def with_ratios(record: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """The record plus its ratios to the 1-camera reference run."""
    record["vs_1_camera"] = {
        k: ratio(record[k], reference[k]) if record[k] is not None and reference[k] is not None else None
        for k in RATIO_KEYS
    }
    return record


def measure(n: int, args: argparse.Namespace) -> Measured:
    """One count in a fresh process, so that neither memory growth nor threads carry over from another run."""
    cmd = [sys.executable, "-m", "bench.scale", "--one", str(n), "--fps", str(args.fps)]
    cmd += ["--duration", str(args.duration), "--slo", str(args.slo)]
    print(f"bench-scale: {n} cameras at {args.fps:g} fps for {args.duration:g} s", file=sys.stderr)
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True, timeout=args.duration + 600)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    return Measured(record, bool(record["held"]))


def search_max(measured: dict[int, Measured], args: argparse.Namespace) -> int:
    """The most cameras that held: doubling from the largest that held, then bisecting (runs only what it lacks)."""

    def held(n: int) -> bool:
        if n not in measured:
            measured[n] = measure(n, args)
            emit(with_ratios(measured[n].record, measured[1].record) | {"search": True})
        return measured[n].held

    good = max((n for n, m in measured.items() if m.held), default=0)
    bad = min((n for n, m in measured.items() if not m.held and n > good), default=None)
    while bad is None:
        nxt = max(1, good * 2)
        if nxt > args.max_cameras:
            return good
        if held(nxt):
            good = nxt
        else:
            bad = nxt
    while bad - good > 1:
        mid = (good + bad) // 2
        if held(mid):
            good = mid
        else:
            bad = mid
    return good


def main(argv: list[str] | None = None) -> int:
    """Run the counts, then the search; JSON lines on stdout."""
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n", 1)[0])
    ap.add_argument("--counts", default="1,4,16", help="camera counts to measure (default 1,4,16)")
    ap.add_argument("--fps", type=float, default=2.0, help="frames per second per camera (default 2)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds each camera streams (default 20)")
    ap.add_argument("--slo", type=float, default=2.0, help="p95 frame-to-alert bound in seconds (default 2)")
    ap.add_argument("--no-search", action="store_true", help="skip the search for the most cameras")
    ap.add_argument("--max-cameras", type=int, default=64, help="the search stops here (default 64)")
    ap.add_argument("--one", type=int, metavar="N", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    videos = shared_videos()
    if not videos:
        print(f"no videos under {SHARED_DATA / 'videos'}", file=sys.stderr)
        return 2
    if args.one is not None:
        emit(run_cameras(args.one, videos, args.fps, args.duration, args.slo).record)
        return 0
    counts = sorted({int(c) for c in args.counts.split(",")} | {1})
    emit({"bench": "scale", "machine": machine_info(), "videos": [p.name for p in videos], "counts": counts})
    measured: dict[int, Measured] = {}
    for n in counts:
        measured[n] = measure(n, args)
        emit(with_ratios(measured[n].record, measured[1].record))
    if not args.no_search:
        most = search_max(measured, args)
        overloaded = [n for n, m in measured.items() if not m.held]
        emit(
            {
                "bench": "scale",
                "max_cameras": most,
                "fps_per_camera": args.fps,
                "slo_p95_frame_to_alert_s": args.slo,
                "held": {str(n): m.held for n, m in sorted(measured.items())},
                # The busiest loop of the smallest count that did not hold, and every loop's load there: the
                # gate loop decides the alerts, the indexing loop whether the memory keeps up.
                "binding_stage_when_overloaded": measured[min(overloaded)].record["binding_stage"]
                if overloaded
                else None,
                "loop_load_when_overloaded": measured[min(overloaded)].record["loop_load"] if overloaded else None,
                "most_cameras_measured_with_memory_keeping_up": max(
                    (n for n, m in measured.items() if m.record.get("memory_keeps_up")), default=0
                ),
            }
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
