"""`vigil eval structurer` on real labelled CCTV frames: the shipped gate, the real structurers, Tables 1-2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.cli import main
from tests.cctv import tiny_cctv


@pytest.fixture(scope="module")
def cctv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cctv(tmp_path_factory.mktemp("cctv") / "cctv")


def _records(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_detector_prior_tables_on_held_out_clips(cctv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["eval", "structurer", "--data", str(cctv), "--split", "test", "--input", "boxed", "--input", "raw"]) == 0
    )
    out = capsys.readouterr().out
    boxed, raw = _records(out)
    assert (boxed["input"], raw["input"], boxed["tuning"], boxed["random_init"]) == ("boxed", "raw", "n/a", False)
    assert str(boxed["structurer"]).startswith("detector-prior:onnx:vigil-accident-yolov8n.onnx")
    # The detector-prior structurer writes valid events by construction, and ignores the image.
    assert (boxed["parse"], boxed["schema"], boxed["rule"], boxed["viol"]) == (1.0, 1.0, 1.0, 0.0)
    metrics = ("count_em", "count_mae", "sev_acc", "sev_f1", "bbox_miou", "recall_at_0_5")
    assert {k: boxed[k] for k in metrics} == {k: raw[k] for k in metrics}
    # One test clip of the tiny copy: its boxed and normal frames have known counts, its unboxed one not.
    assert boxed["n_frames"] == boxed["n_count"] + 1 and boxed["n_boxes"] >= 2
    for k in ("count_em", "sev_acc", "sev_f1", "bbox_miou", "recall_at_0_5"):
        assert boxed[k] is None or 0.0 <= float(boxed[k]) <= 1.0
    assert "Table 1: structured accident understanding" in out and "| Structurer | Input | Parse |" in out


def test_bad_inputs_exit_2_naming_the_problem(cctv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "structurer", "--data", str(tmp_path / "nowhere")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert main(["eval", "structurer", "--data", str(cctv), "--structurer", "qwen2.5-vl"]) == 2
    assert "needs --checkpoint" in capsys.readouterr().err
    broken = tiny_cctv(tmp_path / "broken")
    victim = sorted((broken / "frames").rglob("*.jpg"))[0]
    victim.write_bytes(b"not a jpeg")
    # Whichever split holds it: evaluate every split until the broken frame is met.
    codes = [
        main(["eval", "structurer", "--data", str(broken), "--split", s, "--json"]) for s in ("train", "val", "test")
    ]
    err = capsys.readouterr().err
    assert 2 in codes and f"{victim.name}: not a readable image" in err


def test_a_checkpoint_that_is_not_qwen_is_refused(
    cctv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text('{"model_type": "bert"}')
    code = main(
        [
            "eval",
            "structurer",
            "--data",
            str(cctv),
            "--structurer",
            "qwen2.5-vl",
            "--checkpoint",
            str(tmp_path / "ckpt"),
        ]
    )
    assert code == 2
    assert "ckpt" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.torch
def test_tiny_random_qwen_rows_say_random(cctv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    from scripts.make_tiny_qwen_vl import make_tiny_qwen_vl

    ckpt = make_tiny_qwen_vl(tmp_path / "tiny-qwen", seed=0)
    args = ["eval", "structurer", "--data", str(cctv), "--structurer", "qwen2.5-vl", "--checkpoint", str(ckpt)]
    assert main([*args, "--limit", "2"]) == 0
    out = capsys.readouterr().out
    (row,) = _records(out)
    assert (row["random_init"], row["tuning"], row["n_frames"]) == (True, "none", 2)
    # Constrained decoding: whatever the random weights say is still a valid event.
    assert row["schema"] == 1.0 and row["rule"] == 1.0
    assert "(RANDOM weights: meaningless)" in out
