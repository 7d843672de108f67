"""The answerer interface (keyframes + question -> answer) and the no-VLM evidence answerer.

Backends, chosen by `ReasoningConfig.vlm.type`:

* ``evidence`` (default, no weights needed): lists what the memory found, with times and the
  clusters' auxiliary descriptions, and says plainly that no VLM ran;
* ``qwen2.5-vl``: Qwen2.5-VL from a local checkpoint on all keyframes in one multi-image prompt
  (services/models/answerers/qwen_vl.py);
* ``triton-vlm``: the same answerer served by Triton (triton_models/vlm_answer), called over gRPC
  (services/models/answerers/triton_vlm.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from services.models.answerers.config import EvidenceAnswererConfig, QwenVLAnswererConfig, TritonVLMAnswererConfig


class AnswerError(RuntimeError):
    """The answerer could not produce an answer (model failure, no usable keyframe)."""


class AnswerUnavailable(AnswerError):
    """The answerer's model backend is away, not ready or too slow: a transient state, worth a retry."""


@dataclass(frozen=True)
class EvidenceFrame:
    """One keyframe as the answerer sees it: decoded pixels (BGR, or None without an image) and context."""

    camera_id: str
    time_s: float
    image: np.ndarray | None
    aux_text: str
    similarity: float
    probability: float
    from_index_frame: bool = False


@dataclass(frozen=True)
class Answer:
    """The answer text, the keyframe times it rests on, which model wrote it and what a user must know."""

    text: str
    used_times_s: list[float]
    vlm_ran: bool
    vlm: str
    random_init: bool = False
    notes: list[str] = field(default_factory=list)


class Answerer(ABC):
    """Question + keyframes (time order) -> Answer."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Which model (or 'evidence') answers."""

    @abstractmethod
    def answer(self, question: str, frames: Sequence[EvidenceFrame]) -> Answer:
        """Answer `question` from `frames` (non-empty, in time order)."""


def format_time(t: float) -> str:
    """A time on the camera axis for people: seconds into a video, or a UTC clock time for a live camera."""
    if t >= 1e9:  # Unix seconds: a live camera's axis
        import datetime as dt

        return dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{t:.1f}s"


class EvidenceAnswerer(Answerer):
    """No VLM: the evidence itself, grouped by cluster, most probable first."""

    NOTE = "no VLM is configured (VIGIL_REASONING__VLM__TYPE=evidence): this answer lists the retrieved evidence"

    @property
    def name(self) -> str:
        """Not a model."""
        return "evidence"

    def answer(self, question: str, frames: Sequence[EvidenceFrame]) -> Answer:
        """List the keyframes' time spans and descriptions; no claim beyond what the memory holds."""
        if not frames:
            raise AnswerError("no keyframes to answer from")
        groups: dict[tuple[str, str, float], list[EvidenceFrame]] = {}
        for f in frames:
            groups.setdefault((f.camera_id, f.aux_text, f.probability), []).append(f)
        ranked = sorted(groups.items(), key=lambda kv: -kv[0][2])
        lines = [f"No VLM ran. The memory's most relevant moments for {question.strip()!r}:"]
        for (camera, aux, prob), members in ranked:
            times = sorted(m.time_s for m in members)
            span = format_time(times[0]) if len(times) == 1 else f"{format_time(times[0])}-{format_time(times[-1])}"
            lines.append(
                f"- {camera} at {span} ({len(times)} frame{'s' if len(times) > 1 else ''}, "
                f"similarity {members[0].similarity:.2f}, p={prob:.2f}): {aux or 'no description'}"
            )
        return Answer(
            text="\n".join(lines),
            used_times_s=sorted(f.time_s for f in frames),
            vlm_ran=False,
            vlm=self.name,
            notes=[self.NOTE],
        )


def build_answerer(config: EvidenceAnswererConfig | QwenVLAnswererConfig | TritonVLMAnswererConfig) -> Answerer:
    """Instantiate the backend named by `config.type` (imports torch only for an in-process VLM)."""
    if config.type == "evidence":
        return EvidenceAnswerer()
    if config.type == "triton-vlm":
        from services.models.answerers.triton_vlm import TritonVLMAnswerer

        return TritonVLMAnswerer(config)
    from services.models.answerers.qwen_vl import QwenVLAnswerer

    return QwenVLAnswerer(config)
