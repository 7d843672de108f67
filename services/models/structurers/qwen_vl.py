"""Qwen2.5-VL event structurer (DAT eq. 3): boxed image + detector-prior prompt -> constrained event JSON.

The model, its tokenizer and image processor load from a local checkpoint
directory (no hub access) through :mod:`services.models.qwen`; an optional PEFT
LoRA adapter (DAT eq. 5-6) is applied on top. Decoding is constrained by xgrammar
(:mod:`services.models.structurers.event_grammar`), so the output is an event of the
schema at this gamma unless the vocabulary cannot spell one; whatever comes out is
still checked by ``validate_event``.

torch / transformers / peft are imported inside the class: this module is only
imported when the ``qwen2.5-vl`` structurer is configured, and importing it does
no I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.models.context import describe_counts
from services.models.qwen import (
    IMAGE_PAD,
    IMAGE_PLACEHOLDER,
    ContentItem,
    QwenVL,
    expand_image_tokens,
    load_qwen_vl,
    qwen_chat_format,
)
from services.models.random_init import is_random_init
from services.models.structurers.base import (
    AdaptableStructurer,
    InvalidModelOutput,
    ProducerInfo,
    StructuredEvent,
    StructuringRequest,
    validate_event,
)
from services.models.structurers.event_grammar import EventGrammar, EventLogitsProcessor, event_token_budget

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Re-exported: callers of the structurer import these from here.
__all__ = [
    "IMAGE_PAD",
    "IMAGE_PLACEHOLDER",
    "RANDOM_INIT_NOTE",
    "GenerationStats",
    "QwenVLStructurer",
    "build_task_prompt",
    "expand_image_tokens",
    "qwen_chat_text",
]

RANDOM_INIT_NOTE = "randomly initialised test model: the text is meaningless"

DEFAULT_SYSTEM_PROMPT = (
    "You are the event structurer of a video-surveillance edge node. "
    "Reply with exactly one compact JSON object and nothing else."
)


@dataclass(frozen=True)
class GenerationStats:
    """Cost of the last structure() call."""

    prompt_tokens: int
    image_tokens: int
    new_tokens: int
    seconds: float


def build_task_prompt(request: StructuringRequest, gamma: float, max_priors: int = 8) -> str:
    """DAT's task prompt p_t: the task, the schema's keys and rules, and the detector priors D+_t."""
    dets = sorted(request.detections, key=lambda d: -d.confidence)[:max_priors]
    lines = [
        "The image shows one camera frame with the detector's boxes drawn on it.",
        "Describe the incident as JSON with keys, in this order: "
        "event_type, count, severity, level, score, objects, summary.",
        "event_type: fall, accident, person, vehicle or other. severity: none, minor or severe.",
        f"level 1 only if severity is severe, then score in [{gamma}, 1]; otherwise level 0 and score in [0, {gamma}).",
        "objects: up to 8 of {label, bbox}; label: accident, person, fallen_person, vehicle or other; "
        "bbox [x1, y1, x2, y2] as integers in 0..1000 of the frame width and height.",
        "summary: one short sentence.",
    ]
    if request.camera_id:
        lines.append(f"Camera: {request.camera_id}.")
    for key, value in request.extra.items():
        lines.append(f"{key}: {value}.")
    if dets:
        lines.append("Detector priors (label, confidence, bbox 0..1000):")
        for i, d in enumerate(dets, 1):
            box = d.box.normalised(request.width, request.height)
            lines.append(f"{i}. {d.label} {d.confidence:.2f} [{box[0]}, {box[1]}, {box[2]}, {box[3]}]")
    else:
        lines.append("Detector priors: none.")
    ctx = request.context
    if ctx is not None:
        if ctx.involved:
            lines.append("Objects overlapping the incident (context detector: label, confidence, bbox 0..1000):")
            for i, d in enumerate(ctx.involved[:max_priors], 1):
                box = d.box.normalised(request.width, request.height)
                lines.append(f"{i}. {d.label} {d.confidence:.2f} [{box[0]}, {box[1]}, {box[2]}, {box[3]}]")
        lines.append(f"In view: {describe_counts(ctx.counts()) or 'nothing detected'}.")
    return "\n".join(lines)


def qwen_chat_text(system: str, user_text: str) -> str:
    """Qwen2-VL's chat format with one image before the user text (used when a tokenizer has no template)."""
    return qwen_chat_format(system, [{"type": "image"}, {"type": "text", "text": user_text}])


def prompt_inputs(
    qwen: QwenVL,
    request: StructuringRequest,
    gamma: float,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    max_image_pixels: int | None = None,
) -> dict[str, Any]:
    """Eq. 3's input (I_t, p_t) as model inputs: the chat prompt and the boxed image (training shares it)."""
    import numpy as np
    from PIL import Image

    rgb = np.ascontiguousarray(request.boxed_image[..., ::-1])  # BGR (OpenCV) -> RGB
    kwargs: dict[str, Any] = {}
    if max_image_pixels is not None:
        size = dict(qwen.image_processor.size)
        size["longest_edge"] = max_image_pixels
        kwargs["size"] = size
    content: list[ContentItem] = [{"type": "image"}, {"type": "text", "text": build_task_prompt(request, gamma)}]
    return qwen.encode(qwen.chat_text(system_prompt, content), [Image.fromarray(rgb)], kwargs)


class QwenVLStructurer(AdaptableStructurer):
    """Qwen2.5-VL (optionally + LoRA) with schema-constrained decoding (greedy unless `sample`).

    With `swappable=True` the LoRA weights stay beside the base weights (PEFT, unmerged) so
    adapters published by the cloud can be loaded and swapped while it runs, between two events;
    otherwise a configured adapter is merged into the weights once (no per-token overhead).
    """

    def __init__(
        self,
        checkpoint: Path,
        lora: Path | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        max_new_tokens: int | None = None,
        gamma: float = 0.5,
        *,
        merge_lora: bool = True,
        swappable: bool = False,
        sample: bool = False,
        top_k_valid: int = 1,
        max_image_pixels: int | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    ) -> None:
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1), got {gamma}")
        checkpoint = Path(checkpoint)
        self._gamma = gamma
        # The grammar's longest event plus EOS: any less could cut a valid event; more is never used.
        budget = event_token_budget(gamma)
        if max_new_tokens is not None and max_new_tokens < budget:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} could cut an event: the longest one the grammar allows "
                f"needs {budget} tokens with EOS (leave it unset for exactly that)"
            )
        self._max_new_tokens = budget if max_new_tokens is None else max_new_tokens
        self._sample = sample
        self._top_k_valid = top_k_valid
        self._max_image_pixels = max_image_pixels
        self._system_prompt = system_prompt
        self._lock = threading.Lock()
        self.last_stats: GenerationStats | None = None

        self._checkpoint = checkpoint
        self._qwen = load_qwen_vl(checkpoint, lora, device, dtype, merge_lora=merge_lora and not swappable)
        self._tokenizer: Any = self._qwen.tokenizer
        self._image_processor: Any = self._qwen.image_processor
        self._model: Any = self._qwen.model
        self._eos_ids = self._qwen.eos_ids
        self._pad_id = self._qwen.pad_id

        # The mask is as wide as the logits: Qwen's embedding is padded beyond len(tokenizer).
        vocab_size = int(self._model.get_output_embeddings().weight.shape[0])
        self._grammar = EventGrammar.build(self._tokenizer, vocab_size, self._eos_ids, gamma)

        # The configured adapter is version "<dir name>"; PEFT names an adapter loaded with the model "default".
        self._adapters: dict[str, tuple[str, Path]] = {}
        self._active = ""
        if lora is not None and swappable:
            self._adapters[Path(lora).name] = ("default", Path(lora))
            self._active = Path(lora).name
        self._producer = self._describe(Path(lora) if lora is not None else None, self._active)
        random_init = self._producer.random_init
        if random_init:
            log.warning("%s is randomly initialised: its events are meaningless", checkpoint)
        log.info("Qwen2.5-VL structurer ready (%d-token vocabulary, event budget %d)", vocab_size, budget)

    @property
    def producer(self) -> ProducerInfo:
        """Which checkpoint (and adapter version) writes the events, and whether it is a random stand-in."""
        return self._producer

    def _describe(self, lora: Path | None, version: str) -> ProducerInfo:
        random_init = is_random_init(self._checkpoint, lora)
        note = RANDOM_INIT_NOTE if random_init else (f"LoRA adapter {lora.name}" if lora else "")
        return ProducerInfo(
            kind="qwen2.5-vl", name=self._checkpoint.name, random_init=random_init, note=note, adapter=version
        )

    # ------------------------------------------------------------ adapters (hot swap)

    @property
    def base_model(self) -> str:
        """Adapters must name this checkpoint directory as their base."""
        return self._checkpoint.name

    @property
    def adapter_version(self) -> str:
        """The version writing events now ("" = the base model)."""
        return self._active

    def loaded_adapters(self) -> list[str]:
        """Versions held beside the base weights."""
        return list(self._adapters)

    def _require_swappable(self) -> None:
        if self._qwen.lora is not None and not self._adapters:
            raise RuntimeError("this structurer merged its adapter into the weights: build it with swappable=True")

    def load_adapter(self, path: Path, version: str) -> None:
        """Load a PEFT adapter beside the base weights (not active yet); ValueError when it does not fit."""
        import warnings

        from peft import PeftModel

        self._require_swappable()
        if not version or version in self._adapters:
            raise ValueError(f"adapter version {version!r} is empty or loaded already")
        with self._lock, warnings.catch_warnings():
            # peft 0.21 still reads a transformers attribute deprecated in 5.x; nothing to act on.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            # PEFT adapter names become module attribute names: no dots.
            name = "v_" + "".join(c if c.isalnum() else "_" for c in version)
            try:
                if isinstance(self._model, PeftModel):
                    self._model.load_adapter(str(path), adapter_name=name)
                else:
                    self._model = PeftModel.from_pretrained(self._model, str(path), adapter_name=name)
                    if not self._active:
                        # Wrapping activated the new adapter; the base model keeps writing until activate.
                        self._model.base_model.disable_adapter_layers()
            except (RuntimeError, ValueError, KeyError, OSError) as exc:
                if isinstance(self._model, PeftModel) and name in self._model.peft_config:
                    self._model.delete_adapter(name)
                raise ValueError(f"adapter {version} does not fit {self.base_model}: {exc}") from exc
            self._model.eval()
            self._adapters[version] = (name, Path(path))
            if self._active:
                # load_adapter leaves the active adapter as it was; say so explicitly.
                self._model.set_adapter(self._adapters[self._active][0])

    def activate_adapter(self, version: str) -> None:
        """Switch the adapter (or "" for the base model) between two events: structure() holds the same lock."""
        if version and version not in self._adapters:
            raise KeyError(f"adapter {version!r} is not loaded (loaded: {', '.join(self._adapters) or 'none'})")
        with self._lock:
            if version:
                self._model.base_model.enable_adapter_layers()
                self._model.set_adapter(self._adapters[version][0])
            elif self._adapters:
                self._model.base_model.disable_adapter_layers()
            self._active = version
            self._producer = self._describe(self._adapters[version][1] if version else None, version)
        log.info("structurer now writes with adapter %s", version or "(none: base model)")

    def unload_adapter(self, version: str) -> None:
        """Free a loaded adapter that is not active."""
        if version == self._active:
            raise ValueError(f"adapter {version!r} is active: activate another first")
        with self._lock:
            name, _ = self._adapters.pop(version)
            self._model.delete_adapter(name)

    def _chat_text(self, user_text: str) -> str:
        return self._qwen.chat_text(self._system_prompt, [{"type": "image"}, {"type": "text", "text": user_text}])

    def _inputs(self, request: StructuringRequest) -> dict[str, Any]:
        return prompt_inputs(self._qwen, request, self._gamma, self._system_prompt, self._max_image_pixels)

    def _generate(self, inputs: dict[str, Any], processor: EventLogitsProcessor) -> torch.Tensor:
        import torch
        from transformers import LogitsProcessorList

        # The grammar's processor already keeps only the top_k_valid allowed tokens when sampling: the
        # checkpoint's own sampling knobs (Qwen ships temperature/top_p/top_k) would only cut into that set.
        gen_config = self._qwen.generation_config(self._max_new_tokens, sample=self._sample)
        with torch.inference_mode():
            out: torch.Tensor = self._model.generate(
                **inputs, generation_config=gen_config, logits_processor=LogitsProcessorList([processor])
            )
        return out

    def structure(self, request: StructuringRequest) -> StructuredEvent:
        """Run the MLLM on the boxed image and priors; raise InvalidModelOutput if the event is unusable."""
        with self._lock:
            t0 = time.perf_counter()
            inputs = self._inputs(request)
            prompt_len = int(inputs["input_ids"].shape[1])
            # Greedy decoding takes the best allowed token anyway: the top-k cut only matters when sampling.
            processor = self._grammar.processor(self._top_k_valid if self._sample else None)
            out = self._generate(inputs, processor)
            generated = self._qwen.new_token_ids(out, prompt_len)
            # Read under the lock: an adapter swap right after this event must not rename it.
            producer = self._producer
            self.last_stats = GenerationStats(
                prompt_tokens=prompt_len,
                image_tokens=int(inputs["mm_token_type_ids"].sum()),
                new_tokens=len(generated),
                seconds=time.perf_counter() - t0,
            )
        text = self._tokenizer.decode(generated, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if text != self._grammar.text_of(generated):
            # The grammar matched each token's bytes; a tokenizer whose decode is not their concatenation
            # can still yield invalid JSON, which validation below catches.
            log.warning("decoded text differs from the text the grammar matched")
        if processor.stuck_rows:
            raise InvalidModelOutput(f"constrained decoding got stuck; partial output {text[:200]!r}", raw=text)
        log.debug("structured event in %.3f s (%d new tokens): %s", self.last_stats.seconds, len(generated), text)
        try:
            data = validate_event(text, self._gamma)
        except InvalidModelOutput as exc:
            raise InvalidModelOutput(str(exc), raw=text) from exc
        return StructuredEvent(data=data, producer=producer)
