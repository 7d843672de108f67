"""`vigil run` and `vigil index` on a folder of real CCTV frames, in process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from services.cli import main
from tests.fixtures.media import shared

N_IMAGES = 5


@pytest.fixture
def frames_dir(tmp_path: Path) -> Path:
    """Copies of the first real frames of one accident clip (the shared data stays untouched)."""
    src = shared("images", "cctv_accidents", "frames", "test13")
    folder = tmp_path / "frames"
    folder.mkdir()
    for image in sorted(src.glob("*.jpg"))[:N_IMAGES]:
        shutil.copy(image, folder / image.name)
    return folder


def test_run_on_a_folder_of_frames(frames_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--video", str(frames_dir), "--no-memory", "--json", "--no-progress"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    summary = records[-1]
    assert summary["type"] == "summary"
    assert summary["frames"] == summary["frames_read"] == N_IMAGES
    assert summary["corrupt_frames"] == 0 and not summary["ended_early"]


def test_index_on_a_pattern(frames_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", "--video", str(frames_dir / "test13_%03d.jpg"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["frames"] == N_IMAGES


def test_run_on_an_empty_folder_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--video", str(tmp_path), "--no-memory", "--json", "--no-progress"]) == 2
    assert f"no images in folder {tmp_path}" in capsys.readouterr().err
