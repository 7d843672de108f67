"""`vigil train structurer` on the tiny random Qwen2.5-VL (CPU) and a few real labelled CCTV frames.

The tiny model's lm_head is random and flat: no hidden state can make one token much likelier than
another, so no low-rank update of the blocks alone can fit a target. The fitting test therefore also
trains the head (`--train-module lm_head`, peft's modules_to_save); a real checkpoint needs nothing extra.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from services.gating.bootstrap import build_gater
from services.gating.config import GatingConfig
from services.gating.training.structurer_eval import build_examples, request_for
from services.gating.training.structurer_train import LoraTrainParams, latest_checkpoint, train_structurer
from tests.cctv import tiny_cctv

pytestmark = [pytest.mark.slow, pytest.mark.torch]
pytest.importorskip("transformers")
pytest.importorskip("peft")

from scripts.make_tiny_qwen_vl import make_tiny_qwen_vl  # noqa: E402
from services.cli import main  # noqa: E402
from services.models.structurers.qwen_vl import QwenVLStructurer  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("structurer")
    # One boxed accident, one normal and one unboxed accident frame per clip; the unboxed ones are not trained on.
    return tiny_cctv(root / "cctv", per_kind=1), make_tiny_qwen_vl(root / "tiny-qwen2.5-vl", seed=0)


def test_loss_falls_and_the_adapter_reproduces_its_targets(setup: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = setup
    gater = build_gater(GatingConfig())
    params = LoraTrainParams(
        learning_rate=3e-3, epochs=80, grad_accumulation=1, dropout=0.0, val_limit=1, modules_to_save=("lm_head",)
    )
    result = train_structurer(ckpt, data, tmp_path / "run", gater, params)
    losses = [h["train_loss"] for h in result.epochs]
    assert len(losses) == 80 and losses[-1] < losses[0] / 20
    # Each epoch was validated with the eval's metrics, and the adapter says it sits on a random base.
    assert result.epochs[-1]["val"]["random_init"] is True and result.epochs[-1]["val"]["schema"] == 1.0
    card = result.card.read_text()
    assert "RANDOM BASE" in card and '"learning_rate": 0.003' in card and "| 80 |" in card
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-epoch-*")) == [
        "checkpoint-epoch-79",
        "checkpoint-epoch-80",
    ]
    structurer = QwenVLStructurer(ckpt, lora=result.adapter, gamma=0.5)
    assert structurer.producer.random_init
    trained = [ex for ex in build_examples(data, "train") if ex.count_known]
    assert {ex.target["level"] for ex in trained} == {0, 1}
    for ex in trained:
        request = request_for(cv2.imread(str(ex.frame.image)), gater, "boxed")
        assert dict(structurer.structure(request).data) == dict(ex.target), ex.frame.image.name


def test_cli_checkpoints_and_resumes(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, ckpt = setup
    out = tmp_path / "run"
    base = ["train", "structurer", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out)]
    quick = ["--limit", "2", "--val-limit", "1", "--lr", "1e-3", "--grad-accumulation", "1"]
    assert main([*base, *quick, "--epochs", "1"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [e["epoch"] for e in first["epochs"]] == [1]
    assert latest_checkpoint(out) == out / "checkpoint-epoch-1"
    assert main([*base, *quick, "--epochs", "2", "--resume"]) == 0
    second = json.loads(capsys.readouterr().out.splitlines()[-1])
    # Epoch 1 came from the checkpoint, only epoch 2 was trained now.
    assert [e["epoch"] for e in second["epochs"]] == [1, 2]
    assert second["epochs"][0] == first["epochs"][0]
    state = json.loads((out / "checkpoint-epoch-2" / "trainer_state.json").read_text())
    assert state["epoch"] == 2 and (out / "adapter" / "ADAPTER.md").is_file()


def test_bad_bases_and_adapters_are_refused(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, ckpt = setup
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    args = ["train", "structurer", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert main([*args, "--checkpoint", str(tmp_path / "bert")]) == 2
    assert "holds a 'bert' model, not Qwen2.5-VL" in capsys.readouterr().err
    other = make_tiny_qwen_vl(tmp_path / "other-base", seed=1)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(ckpt)}))
    with pytest.raises(ValueError, match=r"was trained on 'tiny-qwen2\.5-vl', not on 'other-base'"):
        QwenVLStructurer(other, lora=adapter)
    assert main([*args, "--checkpoint", str(ckpt), "--data", str(tmp_path / "nowhere")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
