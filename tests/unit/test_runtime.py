"""The service runtime: a Stage starts its parts, ends in a fixed order; `vigil run` builds one validated settings."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import pytest

from services.cli.run import parse_source, run_overrides
from services.cli.settings import CliError, load
from services.common.bus import Message
from services.common.bus.inprocess import InProcessBus
from services.common.runtime import Stage
from services.embedded import EdgeSettings
from services.gating.config import GatingSettings
from services.indexing.config import IndexingSettings
from services.memory.config import MemorySettings
from services.uplink.config import UplinkSettings


def test_stage_runs_its_parts_and_closes_in_order() -> None:
    order: list[str] = []
    bus = InProcessBus()
    seen: list[bytes] = []

    def handle(msg: Message) -> None:
        seen.append(msg.value)

    consumer = bus.consumer(["t"], "g", handle)
    looped = threading.Event()

    def loop(stop: threading.Event) -> None:
        looped.set()
        stop.wait()
        order.append("loop ended")

    stage = Stage(
        "test",
        consumers=[consumer],
        loops=[("loop", loop)],
        on_drained=[lambda: order.append("drained")],
        closers=[lambda: order.append("closed")],
    )
    stop = threading.Event()
    stage.start(stop)
    bus.publish("t", b"x")
    assert looped.wait(5)
    stop.set()
    stage.close()
    assert order == ["loop ended", "drained", "closed"]
    assert seen == [b"x"]


def test_a_job_stage_ends_when_its_loops_return() -> None:
    stop = threading.Event()
    stage = Stage("job", loops=[("once", lambda _stop: None)], ends_by_itself=True)
    stage.start(stop)
    stage.wait(stop)
    assert stop.is_set()


def test_edge_settings_give_each_service_its_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_GATING__TAU_G", "0.4")
    monkeypatch.setenv("VIGIL_TOPICS__EVENTS", "my.events")
    settings = load(EdgeSettings)
    gating = settings.service(GatingSettings)
    assert gating.gating.tau_g == 0.4 and gating.topics.events == "my.events"
    assert gating.grpc_address == GatingSettings.model_fields["grpc_address"].default
    assert settings.service(UplinkSettings).uplink == settings.uplink
    assert settings.service(IndexingSettings).indexing == settings.indexing
    assert settings.service(MemorySettings).memory == settings.memory


def _args(**flags: object) -> argparse.Namespace:
    """The namespace `vigil run` parses: every flag left out but `flags`."""
    names = ("camera", "fps", "camera_id", "open_timeout", "profile", "tau_g", "uplink_method", "memory", "kafka")
    defaults: dict[str, object] = {name: None for name in names}
    defaults.update(video=["clip.mp4"], realtime=False, detector=None)
    return argparse.Namespace(**{**defaults, **flags})


def test_run_flags_are_validated_like_the_environment() -> None:
    with pytest.raises(CliError, match=r"gating.tau_g: Input should be less than or equal to 1"):
        load(EdgeSettings, **run_overrides(_args(tau_g=5.0)))


def test_run_flags_merge_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_BUS__SESSION_TIMEOUT_MS", "9000")
    monkeypatch.setenv("VIGIL_GATING__MOTION_GATE", "false")
    monkeypatch.setenv("VIGIL_INGEST__CAMERA_ID", "gate-3")
    args = _args(kafka="127.0.0.1:19092", profile="people", memory=Path("/tmp/m"))
    settings = load(EdgeSettings, **run_overrides(args))
    # --kafka swaps kind and bootstrap; the rest of VIGIL_BUS__* still holds.
    assert (settings.bus.kind, settings.bus.bootstrap, settings.bus.session_timeout_ms) == (
        "kafka",
        "127.0.0.1:19092",
        9000,
    )
    assert settings.gating.profile == "people" and settings.indexing.profile == "people"
    assert settings.gating.motion_gate is False
    assert settings.ingest.camera_id == "gate-3" and settings.ingest.source == "clip.mp4"
    assert settings.memory.frames.path == Path("/tmp/m/frames")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("lobby=/data/lobby.mp4", ("lobby", "/data/lobby.mp4")),
        ("/data/lobby.mp4", (None, "/data/lobby.mp4")),
        ("door=rtsp://u:p@host/stream?ch=1", ("door", "rtsp://u:p@host/stream?ch=1")),
        # The '=' of a URL's query is no id.
        ("rtsp://host/stream?ch=1", (None, "rtsp://host/stream?ch=1")),
        ("frames/a b=%03d.jpg", (None, "frames/a b=%03d.jpg")),
    ],
)
def test_a_source_spec_is_an_optional_id_and_a_source(spec: str, expected: tuple[str | None, str]) -> None:
    assert parse_source(spec) == expected


def test_a_file_whose_name_holds_an_equals_sign_is_a_path(tmp_path: Path) -> None:
    odd = tmp_path / "a=b.mp4"
    odd.write_bytes(b"x")
    assert parse_source(str(odd)) == (None, str(odd))


def test_one_source_keeps_the_single_camera_settings() -> None:
    settings = load(EdgeSettings, **run_overrides(_args(video=["lobby=clip.mp4"])))
    assert settings.cameras == [] and (settings.ingest.camera_id, settings.ingest.source) == ("lobby", "clip.mp4")
    plain = load(EdgeSettings, **run_overrides(_args(camera_id="gate-3")))
    assert [(c.camera_id, c.source) for c in plain.sources()] == [("gate-3", "clip.mp4")]


def test_several_sources_get_their_ids_or_their_stems() -> None:
    args = _args(video=["lobby=a/lobby.mp4", "b/yard.avi"], camera=["rtsp://cam.local/live"])
    settings = load(EdgeSettings, **run_overrides(args))
    assert [(c.camera_id, c.source) for c in settings.sources()] == [
        ("lobby", "a/lobby.mp4"),
        ("yard", "b/yard.avi"),
        ("cam.local-live", "rtsp://cam.local/live"),
    ]
    cam = settings.camera_ingest(settings.cameras[1])
    assert (cam.ingest.camera_id, cam.ingest.source, cam.ingest.fps) == ("yard", "b/yard.avi", settings.ingest.fps)


def test_two_sources_with_one_id_are_refused_naming_the_id() -> None:
    with pytest.raises(CliError, match=r"two sources have the camera id 'lobby'") as err:
        run_overrides(_args(video=["lobby=a.mp4", "lobby=rtsp://u:secret@h/s"]))
    assert err.value.code == 2 and "secret" not in str(err.value)
    # Derived ids collide too: the same stem in two folders.
    with pytest.raises(CliError, match=r"camera id 'clip'"):
        run_overrides(_args(video=["a/clip.mp4", "b/clip.mp4"]))
    with pytest.raises(CliError, match="--camera-id names a single source"):
        run_overrides(_args(video=["a.mp4", "b.mp4"], camera_id="x"))


def test_duplicate_camera_ids_from_the_environment_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_CAMERAS", '[{"camera_id": "x", "source": "a.mp4"}, {"camera_id": "x", "source": "b"}]')
    with pytest.raises(CliError, match=r"cameras: Value error, two sources have the camera id 'x'"):
        load(EdgeSettings)
