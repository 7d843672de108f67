"""Qwen2.5-VL answerer: every keyframe the edge memory sampled, in one multi-image prompt (Venus).

The prompt lists the keyframes in time order, each as a line "Frame k at <time>
(camera C): <description>" followed by its image (frames the memory kept no image
for are described in text only), then the question and an instruction to answer
briefly and cite the frames used. Decoding is greedy and free-form; the frames
the answer cites (by number or by time) become ``Answer.used_times_s``.

The model loads from a local checkpoint directory through
:mod:`services.models.qwen`; torch / transformers are imported only when an
answerer is built, and importing this module does no I/O.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from services.models.answerers.base import Answer, Answerer, AnswerError, EvidenceFrame, format_time
from services.models.answerers.config import QwenVLAnswererConfig
from services.models.qwen import ContentItem, load_qwen_vl

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are the assistant of a video-surveillance system. You are shown keyframes that the system's "
    "video memory retrieved for an operator's question, each with its time and camera. "
    "Answer only from what the keyframes show; say so when they do not show the answer."
)
ANSWER_INSTRUCTION = "Answer briefly, and cite the frames you used as 'Frame <number> at <time>'."
RANDOM_INIT_NOTE = (
    "the Qwen2.5-VL weights are randomly initialised (VIGIL_RANDOM_INIT test model): the answer text is meaningless"
)
NO_TEXT_ANSWER = "The model produced no text for this question."

# "frame 2", "Frames 1, 3 and 4", "frames 2-3", "frame #2": one number, or a range, per item.
_FRAME_WORD = re.compile(r"\bframes?\b", re.IGNORECASE)
# A number that is not part of a time ("12.0s", "12 s", "10:04:05") and not followed by more digits.
_NUMBER = r"#?(\d+)(?!\d|[.:]\d|\s*(?:s|sec|secs|seconds)\b)"
_FRAME_ITEM = re.compile(rf"\s*{_NUMBER}(?:\s*(?:-|–|to)\s*{_NUMBER})?", re.IGNORECASE)
_FRAME_SEP = re.compile(r"\s*(?:,|&|\band\b|\bor\b)", re.IGNORECASE)
_SECONDS = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*(?:s|sec|secs|seconds)\b", re.IGNORECASE)
_CLOCK = re.compile(r"(?<!\d)(\d{1,2}:\d{2}:\d{2})(?!\d)")


def _cited_frame_numbers(text: str) -> set[int]:
    numbers: set[int] = set()
    for word in _FRAME_WORD.finditer(text):
        pos = word.end()
        while item := _FRAME_ITEM.match(text, pos):
            first = int(item.group(1))
            last = int(item.group(2)) if item.group(2) else first
            numbers.update(range(min(first, last), max(first, last) + 1))
            pos = item.end()
            sep = _FRAME_SEP.match(text, pos)
            if sep is None:
                break
            pos = sep.end()
    return numbers


def cited_times(text: str, frames: Sequence[EvidenceFrame]) -> list[float]:
    """Times (sorted, unique) of the frames `text` cites as "frame k" (1-based) or by their time; [] if none."""
    cited: set[float] = set()
    for k in _cited_frame_numbers(text):
        if 1 <= k <= len(frames):
            cited.add(frames[k - 1].time_s)
    # Times are shown with one decimal (format_time): a mention within half a tenth names that frame.
    for match in _SECONDS.finditer(text):
        value = float(match.group(1))
        cited.update(f.time_s for f in frames if f.time_s < 1e9 and abs(f.time_s - value) <= 0.05 + 1e-9)
    for match in _CLOCK.finditer(text):
        clock = match.group(1).zfill(8)
        cited.update(f.time_s for f in frames if f.time_s >= 1e9 and f" {clock} " in format_time(f.time_s))
    return sorted(cited)


def frame_line(k: int, frame: EvidenceFrame) -> str:
    """How keyframe k (1-based) is introduced in the prompt."""
    aux = frame.aux_text.strip() or "no description"
    suffix = "" if frame.image is not None else " [no image kept for this frame]"
    return f"Frame {k} at {format_time(frame.time_s)} (camera {frame.camera_id}): {aux}{suffix}"


class QwenVLAnswerer(Answerer):
    """Qwen2.5-VL (optionally + LoRA) over all keyframes in one prompt; greedy, one answer at a time."""

    def __init__(self, config: QwenVLAnswererConfig, *, system_prompt: str = SYSTEM_PROMPT) -> None:
        self._config = config
        self._system_prompt = system_prompt
        self._lock = threading.Lock()
        self._qwen = load_qwen_vl(config.checkpoint, config.lora, config.device)
        name = f"qwen2.5-vl:{self._qwen.checkpoint.name}"
        self._name = f"{name}+{self._qwen.lora.name}" if self._qwen.lora is not None else name

    @property
    def name(self) -> str:
        """qwen2.5-vl:<checkpoint dir>[+<LoRA dir>]."""
        return self._name

    @property
    def random_init(self) -> bool:
        """Whether the checkpoint or adapter is a random stand-in."""
        return self._qwen.random_init

    def prompt_content(self, question: str, frames: Sequence[EvidenceFrame]) -> list[ContentItem]:
        """The user turn: each frame's line then its image (if any), in time order, then the question."""
        content: list[ContentItem] = [
            {"type": "text", "text": f"{len(frames)} keyframes from the video memory, in time order:\n"}
        ]
        for k, frame in enumerate(frames, 1):
            content.append({"type": "text", "text": frame_line(k, frame) + "\n"})
            if frame.image is not None:
                content.append({"type": "image"})
                content.append({"type": "text", "text": "\n"})
        content.append({"type": "text", "text": f"Question: {question.strip()}\n{ANSWER_INSTRUCTION}"})
        return content

    def build_inputs(self, question: str, frames: Sequence[EvidenceFrame]) -> dict[str, torch.Tensor]:
        """Model inputs for the question over `frames` (images downscaled to max_image_side, BGR -> RGB)."""
        import numpy as np
        from PIL import Image

        images = []
        for frame in frames:
            if frame.image is None:
                continue
            if frame.image.ndim != 3 or frame.image.shape[2] != 3 or frame.image.size == 0:
                raise AnswerError(f"keyframe at {format_time(frame.time_s)} is not a non-empty 3-channel image")
            rgb = Image.fromarray(np.ascontiguousarray(frame.image[..., ::-1]))
            images.append(self._qwen.fit_image(rgb, self._config.max_image_side))
        text = self._qwen.chat_text(self._system_prompt, self.prompt_content(question, frames))
        return self._qwen.encode(text, images)

    def _generate(self, inputs: dict[str, Any]) -> torch.Tensor:
        import torch

        gen_config = self._qwen.generation_config(self._config.max_new_tokens)
        with torch.inference_mode():
            out: torch.Tensor = self._qwen.model.generate(**inputs, generation_config=gen_config)
        return out

    def answer(self, question: str, frames: Sequence[EvidenceFrame]) -> Answer:
        """Generate a brief answer over all keyframes; cite-parse it into used_times_s."""
        if not frames:
            raise AnswerError("no keyframes to answer from")
        frames = sorted(frames, key=lambda f: f.time_s)
        with self._lock:
            t0 = time.perf_counter()
            inputs = self.build_inputs(question, frames)
            prompt_len = int(inputs["input_ids"].shape[1])
            try:
                out = self._generate(inputs)
            except (RuntimeError, ValueError) as exc:
                raise AnswerError(f"{self._name} failed to generate: {exc}") from exc
            generated = self._qwen.new_token_ids(out, prompt_len)
            seconds = time.perf_counter() - t0
        text = self._qwen.tokenizer.decode(generated, skip_special_tokens=True).strip()
        log.debug(
            "answered over %d frames in %.3f s (%d prompt, %d new tokens)",
            len(frames),
            seconds,
            prompt_len,
            len(generated),
        )
        notes = [RANDOM_INIT_NOTE] if self._qwen.random_init else []
        all_times = [f.time_s for f in frames]
        if not text:
            return Answer(
                text=NO_TEXT_ANSWER,
                used_times_s=all_times,
                vlm_ran=True,
                vlm=self._name,
                random_init=self._qwen.random_init,
                notes=notes,
            )
        return Answer(
            text=text,
            used_times_s=cited_times(text, frames) or all_times,
            vlm_ran=True,
            vlm=self._name,
            random_init=self._qwen.random_init,
            notes=notes,
        )
