"""Venus end to end: `vigil run` builds the memory from a real video, `vigil ask` answers from it,
embedded and through the memory and reasoning services as their own processes.

The clip is PySceneDetect's GoldenEye test video (../shared/data, MANIFEST: cuts at ~3.75 s and
~8.76 s). Its middle scene is a computer screen reading "Initiate Search Program / Enter
Password"; its last scene shows two people. The real models see exactly that: OCR reads the
screen text, the fall detector's Normal/Fall classes are people. The questions must land in
those spans.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.fixtures.media import shared
from tests.fixtures.tcp_proxy import free_port

pytestmark = [pytest.mark.slow, pytest.mark.torch]

ROOT = Path(__file__).resolve().parents[2]
CUT_1, CUT_2 = 3.75, 8.76


def vigil(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real CLI."""
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"vigil {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def ask_json(*args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(vigil("ask", *args, "--json").stdout)
    return out


@pytest.fixture(scope="module")
def memory_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    video = shared("videos", "scene_cuts", "goldeneye-vfr-drop3.mp4")
    mem = tmp_path_factory.mktemp("venus") / "memory"
    run = vigil("run", "--video", str(video), "--fps", "2", "--memory", str(mem), "--json", "--no-progress")
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["type"] == "summary" and summary["frames"] >= 18
    assert summary["index_entries"] >= 3 and summary["memory_points"] == summary["index_entries"]
    return mem


def test_ask_embedded_finds_the_screen_text_and_the_people(memory_dir: Path, tmp_path: Path) -> None:
    text = ask_json("Initiate Search Program", "--memory", str(memory_dir), "--mode", "top-k", "--max-frames", "1")
    (k,) = text["keyframes"]
    assert CUT_1 <= k["time_s"] <= CUT_2, k
    assert "Initiate" in k["aux_text"]

    people = ask_json("a person", "--memory", str(memory_dir), "--mode", "top-k", "--max-frames", "1")
    assert people["keyframes"][0]["time_s"] >= CUT_2, people["keyframes"]

    # AKR (the default): several keyframes, the most probable in the right span, saved to a folder.
    akr = ask_json("Initiate Search Program", "--memory", str(memory_dir), "--seed", "3", "--save", str(tmp_path))
    best = max(akr["keyframes"], key=lambda k: k["probability"])
    assert CUT_1 <= best["time_s"] <= CUT_2
    assert akr["vlm_ran"] is False and "No VLM ran" in akr["answer"]
    assert any("aux-minilm" in n for n in akr["notes"])
    assert len(akr["saved"]) == len(akr["keyframes"]) and all(Path(p).stat().st_size > 1000 for p in akr["saved"])


def test_ask_bad_input_exits_with_a_message(memory_dir: Path) -> None:
    for args, needle in [
        (["", "--memory", str(memory_dir)], "empty"),
        (["x", "--camera", "garage", "--memory", str(memory_dir)], "unknown camera 'garage'"),
        (["x", "--since", "9", "--until", "1", "--memory", str(memory_dir)], "inverted"),
        (["x", "--since", "500", "--memory", str(memory_dir)], "nothing"),
    ]:
        proc = vigil("ask", *args, check=False)
        assert proc.returncode == 2 and needle in proc.stderr, (args, proc.stderr[-500:])
    proc = vigil("ask", "x", "--memory", str(memory_dir.parent / "missing"), check=False)
    assert proc.returncode == 3 and "vigil run" in proc.stderr


def test_ask_while_vigil_run_writes_the_same_memory(memory_dir: Path) -> None:
    """The writer holds the memory; the ask goes through the run's own Retrieve and never touches its files.

    (It used to open Qdrant Edge beside the writer: the ask was refused, but the writer's tracker journal
    broke, clusters went to the dead-letter topic and the run failed.)
    """
    from services.memory.volume import read_holder

    clusters_before = len(list((memory_dir / "frames" / "clusters").rglob("*.json")))
    video = shared("videos", "scene_cuts", "goldeneye-vfr-drop3.mp4")
    # --realtime: the run lasts the clip's length, so the ask lands while it writes.
    args = ["run", "--video", str(video), "--fps", "2", "--memory", str(memory_dir), "--json", "--no-progress"]
    run = subprocess.Popen(
        [sys.executable, "-m", "services.cli", *args, "--realtime"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while (holder := read_holder(memory_dir / "frames")) is None or not holder.retrieve_address:
            assert run.poll() is None and time.monotonic() < deadline, "vigil run never advertised its Retrieve"
            time.sleep(0.2)
        during = ask_json("people", "--memory", str(memory_dir))
        assert run.poll() is None, "the run ended before the ask: nothing concurrent was tested"
        out, err = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    # Every cluster of the second pass stored (same clip, same point ids: the count is unchanged).
    assert summary["index_entries"] >= 3 and summary["memory_refused"] == 0
    assert summary["memory_points"] >= clusters_before
    assert during["keyframes"] and read_holder(memory_dir / "frames") is None


def _wait_serving(address: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"service exited {proc.returncode}"
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                time.sleep(0.5)
    raise AssertionError(f"{address} did not become SERVING")


def test_ask_through_the_memory_and_reasoning_services(memory_dir: Path, tmp_path: Path) -> None:
    mem_port, rsn_port = free_port(), free_port()
    base = {**os.environ, "PYTHONUNBUFFERED": "1"}
    memory_env = {
        **base,
        "VIGIL_GRPC_ADDRESS": f"127.0.0.1:{mem_port}",
        # Nested settings replace the whole block: the discriminator comes along.
        "VIGIL_MEMORY__STORE__TYPE": "qdrant-edge",
        "VIGIL_MEMORY__STORE__PATH": str(memory_dir / "qdrant"),
        "VIGIL_MEMORY__FRAMES__PATH": str(memory_dir / "frames"),
    }
    reasoning_env = {
        **base,
        "VIGIL_GRPC_ADDRESS": f"127.0.0.1:{rsn_port}",
        "VIGIL_REASONING__MEMORY_ADDRESS": f"127.0.0.1:{mem_port}",
    }
    logs = [open(tmp_path / "memory.log", "wb"), open(tmp_path / "reasoning.log", "wb")]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "services.memory"], cwd=ROOT, env=memory_env, stdout=logs[0], stderr=logs[0]
        ),
        subprocess.Popen(
            [sys.executable, "-m", "services.reasoning"], cwd=ROOT, env=reasoning_env, stdout=logs[1], stderr=logs[1]
        ),
    ]
    try:
        _wait_serving(f"127.0.0.1:{mem_port}", procs[0])
        _wait_serving(f"127.0.0.1:{rsn_port}", procs[1])
        out = json.loads(
            vigil(
                "ask",
                "a person",
                "--reasoning",
                f"127.0.0.1:{rsn_port}",
                "--mode",
                "top-k",
                "--max-frames",
                "1",
                "--json",
            ).stdout
        )
        assert out["keyframes"][0]["time_s"] >= CUT_2 and out["vlm"] == "evidence"
        bad = vigil("ask", "x", "--camera", "garage", "--reasoning", f"127.0.0.1:{rsn_port}", check=False)
        assert bad.returncode == 2 and "unknown camera" in bad.stderr
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()
    # SIGTERM drains both cleanly.
    assert [p.returncode for p in procs] == [0, 0], [
        (tmp_path / n).read_text()[-2000:] for n in ("memory.log", "reasoning.log")
    ]
