"""QwenVLAnswerer end to end on a tiny random-init Qwen2.5-VL built on disk and loaded back by path.

The weights are random, so the answers mean nothing; what is tested is the real
loading (model, tokenizer, image processor, LoRA), the multi-image prompt (one
image per keyframe that has one, image tokens and mm_token_type_ids), greedy
generation and what the Answer says about it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from services.models.answerers.base import Answer, AnswerError, EvidenceFrame, build_answerer, format_time
from services.models.answerers.config import QwenVLAnswererConfig

pytestmark = [pytest.mark.slow, pytest.mark.torch]

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from scripts.make_tiny_qwen_vl import make_tiny_lora, make_tiny_qwen_vl  # noqa: E402
from services.models.answerers.qwen_vl import NO_TEXT_ANSWER, RANDOM_INIT_NOTE, QwenVLAnswerer  # noqa: E402

MAX_IMAGE_SIDE = 112
QUESTION = "Did anyone fall, and when?"


@pytest.fixture(scope="module")
def tiny_qwen_vl(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random Qwen2.5-VL checkpoint and a random LoRA adapter for it, built once per module."""
    root = tmp_path_factory.mktemp("tiny-qwen-vl-answer")
    checkpoint = make_tiny_qwen_vl(root / "tiny-qwen2.5-vl", seed=0)
    return {"checkpoint": checkpoint, "lora": make_tiny_lora(checkpoint, root / "tiny-lora", seed=0)}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    # A 200k-parameter model is dominated by thread hand-offs: one thread is much faster on shared cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def answerer(tiny_qwen_vl: dict[str, Path]) -> QwenVLAnswerer:
    config = QwenVLAnswererConfig(
        checkpoint=tiny_qwen_vl["checkpoint"], max_new_tokens=24, max_image_side=MAX_IMAGE_SIDE
    )
    built = build_answerer(config)
    assert isinstance(built, QwenVLAnswerer)
    return built


def keyframes() -> list[EvidenceFrame]:
    """Three keyframes in time order; the middle one was kept without an image."""
    rng = np.random.default_rng(0)
    return [
        EvidenceFrame("cam-1", 3.0, rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), "a person walks in", 0.3, 0.5),
        EvidenceFrame("cam-1", 7.5, None, "a person lies on the floor", 0.4, 0.9),
        EvidenceFrame("cam-2", 12.0, rng.integers(0, 255, (300, 200, 3), dtype=np.uint8), "", 0.2, 0.2),
    ]


def assert_random_answer(answer: Answer, frames: list[EvidenceFrame]) -> None:
    assert isinstance(answer.text, str) and answer.text
    assert answer.vlm_ran and answer.random_init
    assert RANDOM_INIT_NOTE in answer.notes
    assert answer.used_times_s and set(answer.used_times_s) <= {f.time_s for f in frames}


def test_prompt_holds_two_images_and_every_frame(answerer: QwenVLAnswerer) -> None:
    frames = keyframes()
    inputs = answerer.build_inputs(QUESTION, frames)
    grid = inputs["image_grid_thw"]
    assert grid.shape[0] == 2  # the frame without an image is text only
    expected_tokens = int(grid.prod(dim=1).sum()) // 4  # 2x2 spatial merge
    ids = inputs["input_ids"][0]
    assert int(inputs["mm_token_type_ids"].sum()) == expected_tokens
    assert int((ids == answerer._qwen.image_token_id).sum()) == expected_tokens
    assert inputs["pixel_values"].shape[0] == int(grid.prod(dim=1).sum())
    # Every image was brought to at most MAX_IMAGE_SIDE on its longer side, in whole 28-pixel units.
    for _, h, w in grid.tolist():
        assert max(h, w) * 14 <= MAX_IMAGE_SIDE and h % 2 == 0 and w % 2 == 0
    text = answerer._qwen.tokenizer.decode(ids)
    assert text.count("<|vision_start|>") == 2
    for k, f in enumerate(frames, 1):
        assert f"Frame {k} at {format_time(f.time_s)} (camera {f.camera_id})" in text
    assert "a person lies on the floor" in text and QUESTION in text
    # Frame 1's image follows its line, before frame 2's line.
    assert text.index("Frame 1 at") < text.index("<|vision_start|>") < text.index("Frame 2 at")


def test_answer_over_three_frames(answerer: QwenVLAnswerer, tiny_qwen_vl: dict[str, Path]) -> None:
    frames = keyframes()
    t0 = time.perf_counter()
    answer = answerer.answer(QUESTION, frames)
    seconds = time.perf_counter() - t0
    assert_random_answer(answer, frames)
    assert answer.vlm == f"qwen2.5-vl:{tiny_qwen_vl['checkpoint'].name}" == answerer.name
    assert seconds < 5.0, f"one answer took {seconds:.2f} s"
    # Greedy: the same question over the same frames gives the same answer.
    assert answerer.answer(QUESTION, frames).text == answer.text


def test_frames_out_of_order_and_without_any_image(answerer: QwenVLAnswerer) -> None:
    frames = keyframes()
    assert_random_answer(answerer.answer(QUESTION, frames[::-1]), frames)
    text_only = [f for f in frames if f.image is None]
    inputs = answerer.build_inputs(QUESTION, text_only)
    assert "pixel_values" not in inputs and int(inputs["mm_token_type_ids"].sum()) == 0
    assert_random_answer(answerer.answer(QUESTION, text_only), text_only)


def test_empty_output_is_an_answer_not_an_error(answerer: QwenVLAnswerer, monkeypatch: pytest.MonkeyPatch) -> None:
    def only_end_of_turn(inputs: dict[str, object]) -> object:
        ids = inputs["input_ids"]
        return torch.cat([ids, torch.tensor([[answerer._qwen.eos_ids[0]]])], dim=1)  # type: ignore[list-item]

    monkeypatch.setattr(answerer, "_generate", only_end_of_turn)
    frames = keyframes()
    answer = answerer.answer(QUESTION, frames)
    assert answer.text == NO_TEXT_ANSWER
    assert answer.used_times_s == [f.time_s for f in frames] and RANDOM_INIT_NOTE in answer.notes


def test_bad_input_raises_answer_error(answerer: QwenVLAnswerer) -> None:
    with pytest.raises(AnswerError):
        answerer.answer(QUESTION, [])
    gray = EvidenceFrame("cam-1", 1.0, np.zeros((32, 32), dtype=np.uint8), "", 0.1, 0.1)
    with pytest.raises(AnswerError):
        answerer.answer(QUESTION, [gray])


def test_lora_answerer(tiny_qwen_vl: dict[str, Path]) -> None:
    config = QwenVLAnswererConfig(
        checkpoint=tiny_qwen_vl["checkpoint"], lora=tiny_qwen_vl["lora"], max_new_tokens=16, max_image_side=56
    )
    answerer = QwenVLAnswerer(config)
    assert answerer.name == f"qwen2.5-vl:{tiny_qwen_vl['checkpoint'].name}+{tiny_qwen_vl['lora'].name}"
    frames = keyframes()
    assert_random_answer(answerer.answer(QUESTION, frames), frames)


def test_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        QwenVLAnswerer(QwenVLAnswererConfig(checkpoint=missing))
