"""Qwen2.5-VL event structurer (DAT eq. 3): boxed image + detector-prior prompt -> constrained event JSON.

The model, its tokenizer and image processor load from a local checkpoint
directory (no hub access); an optional PEFT LoRA adapter (DAT eq. 5-6) is
applied on top. Decoding is constrained by :mod:`services.gating.constrained`,
so the output is schema-valid JSON unless the token budget or vocabulary makes
that impossible; whatever comes out is still checked by ``validate_event``.

torch / transformers / peft are imported inside the class: this module is only
imported when the ``qwen2.5-vl`` structurer is configured, and importing it does
no I/O.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.gating.constrained import JsonSchemaLogitsProcessor, TokenTable, event_grammar, grammar_alphabet
from services.gating.structuring import (
    EventStructurer,
    InvalidModelOutput,
    ProducerInfo,
    StructuredEvent,
    StructuringRequest,
    event_schema,
    validate_event,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

RANDOM_INIT_MARKER = "VIGIL_RANDOM_INIT"
RANDOM_INIT_NOTE = "randomly initialised test model: the text is meaningless"
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
IMAGE_PAD = "<|image_pad|>"

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
        "objects: up to 8 of {label, bbox}; label: person, fallen_person, vehicle or other; "
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
    return "\n".join(lines)


def qwen_chat_text(system: str, user_text: str) -> str:
    """Qwen2-VL's chat format with one image before the user text (used when a tokenizer has no template)."""
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{IMAGE_PLACEHOLDER}{user_text}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def expand_image_tokens(text: str, image_token_counts: Sequence[int]) -> str:
    """Replace the i-th <|image_pad|> with image_token_counts[i] copies (what Qwen2_5_VLProcessor would do)."""
    parts = text.split(IMAGE_PAD)
    if len(parts) - 1 != len(image_token_counts):
        raise ValueError(f"{len(parts) - 1} image placeholders for {len(image_token_counts)} images")
    out = [parts[0]]
    for count, rest in zip(image_token_counts, parts[1:], strict=True):
        out.append(IMAGE_PAD * count)
        out.append(rest)
    return "".join(out)


class QwenVLStructurer(EventStructurer):
    """Qwen2.5-VL (optionally + LoRA) with schema-constrained decoding (greedy unless `sample`)."""

    def __init__(
        self,
        checkpoint: Path,
        lora: Path | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        max_new_tokens: int = 256,
        gamma: float = 0.5,
        *,
        merge_lora: bool = True,
        sample: bool = False,
        top_k_valid: int = 1,
        max_image_pixels: int | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    ) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

        if not 0.0 < gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1), got {gamma}")
        checkpoint = Path(checkpoint)
        if not (checkpoint / "config.json").is_file():
            raise FileNotFoundError(f"no Qwen2.5-VL checkpoint (config.json) in {checkpoint}")
        self._gamma = gamma
        self._device = device
        self._max_new_tokens = max_new_tokens
        self._sample = sample
        self._top_k_valid = top_k_valid
        self._max_image_pixels = max_image_pixels
        self._system_prompt = system_prompt
        self._lock = threading.Lock()
        self.last_stats: GenerationStats | None = None

        if lora is not None and not (Path(lora) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"no PEFT adapter (adapter_config.json) in {lora}")
        # fp32 on CPU: bf16/fp16 matmuls there are slow or unsupported.
        torch_dtype = getattr(torch, dtype, None) if dtype else (torch.float32 if device == "cpu" else torch.bfloat16)
        if not isinstance(torch_dtype, torch.dtype):
            raise ValueError(f"unknown torch dtype {dtype!r}")
        # Local files only: a deployment points at a directory, and nothing may be downloaded.
        # Hugging Face objects are typed Any: their stubs do not cover how they are used here.
        self._tokenizer: Any = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
        self._image_processor: Any = AutoImageProcessor.from_pretrained(checkpoint, local_files_only=True)
        model: Any = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            checkpoint, dtype=torch_dtype, local_files_only=True
        )
        if lora is not None:
            from peft import PeftModel

            with warnings.catch_warnings():
                # peft 0.21 still reads a transformers attribute deprecated in 5.x; nothing to act on.
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                model = PeftModel.from_pretrained(model, Path(lora))
            if merge_lora:
                # W' = W + (alpha/r) B A folded in once: no adapter overhead per token.
                model = model.merge_and_unload()
        self._model: Any = model.to(device).eval()

        config = self._model.config
        self._image_token_id = int(config.image_token_id)
        if self._tokenizer.convert_tokens_to_ids(IMAGE_PAD) != self._image_token_id:
            raise ValueError(f"tokenizer's {IMAGE_PAD} id does not match config.image_token_id in {checkpoint}")
        self._merge_size = int(getattr(self._image_processor, "merge_size", config.vision_config.spatial_merge_size))
        self._eos_ids = self._eos_token_ids()
        self._pad_id = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else self._eos_ids[0]

        self._grammar = event_grammar(event_schema(), gamma)
        self._table = TokenTable.from_tokenizer(self._tokenizer, grammar_alphabet(self._grammar))

        random_init = (checkpoint / RANDOM_INIT_MARKER).exists() or (
            lora is not None and (Path(lora) / RANDOM_INIT_MARKER).exists()
        )
        note = RANDOM_INIT_NOTE if random_init else (f"LoRA adapter {Path(lora).name}" if lora else "")
        self._producer = ProducerInfo(kind="qwen2.5-vl", name=checkpoint.name, random_init=random_init, note=note)
        if random_init:
            log.warning("%s is randomly initialised: its events are meaningless", checkpoint)
        log.info(
            "Qwen2.5-VL structurer loaded from %s (lora=%s, device=%s, dtype=%s, %d usable tokens)",
            checkpoint,
            lora,
            device,
            torch_dtype,
            len(self._table.texts),
        )

    def _eos_token_ids(self) -> list[int]:
        ids: set[int] = set()
        gen_eos = self._model.generation_config.eos_token_id
        for value in gen_eos if isinstance(gen_eos, list) else [gen_eos]:
            if value is not None:
                ids.add(int(value))
        for token in ("<|im_end|>", "<|endoftext|>"):
            tid = self._tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid >= 0 and tid != self._tokenizer.unk_token_id:
                ids.add(tid)
        if self._tokenizer.eos_token_id is not None:
            ids.add(int(self._tokenizer.eos_token_id))
        if not ids:
            raise ValueError("the checkpoint defines no end-of-turn token")
        return sorted(ids)

    @property
    def producer(self) -> ProducerInfo:
        """Which checkpoint writes the events, and whether it is a random stand-in."""
        return self._producer

    def _chat_text(self, user_text: str) -> str:
        if getattr(self._tokenizer, "chat_template", None):
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": [{"type": "text", "text": self._system_prompt}]},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": user_text}]},
            ]
            text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if isinstance(text, str) and text.count(IMAGE_PAD) == 1:
                return text
            log.warning("the checkpoint's chat template did not place one image; using Qwen's format")
        return qwen_chat_text(self._system_prompt, user_text)

    def _inputs(self, request: StructuringRequest) -> dict[str, Any]:
        import numpy as np
        from PIL import Image

        rgb = np.ascontiguousarray(request.boxed_image[..., ::-1])  # BGR (OpenCV) -> RGB
        kwargs: dict[str, Any] = {}
        if self._max_image_pixels is not None:
            size = dict(self._image_processor.size)
            size["longest_edge"] = self._max_image_pixels
            kwargs["size"] = size
        vision = self._image_processor(images=[Image.fromarray(rgb)], return_tensors="pt", **kwargs)
        grid = vision["image_grid_thw"]
        counts = [int(g.prod()) // self._merge_size**2 for g in grid]
        text = expand_image_tokens(self._chat_text(build_task_prompt(request, self._gamma)), counts)
        enc = self._tokenizer(text, return_tensors="pt", add_special_tokens=False)
        input_ids = enc["input_ids"]
        # Qwen2.5-VL's 3D RoPE needs to know which positions are image tokens (1) vs text (0).
        mm_token_type_ids = (input_ids == self._image_token_id).to(input_ids.dtype)
        inputs = {
            "input_ids": input_ids,
            "attention_mask": enc["attention_mask"],
            "mm_token_type_ids": mm_token_type_ids,
            "pixel_values": vision["pixel_values"].to(self._model.dtype),
            "image_grid_thw": grid,
        }
        return {k: v.to(self._device) for k, v in inputs.items()}

    def _generate(self, inputs: dict[str, Any], processor: JsonSchemaLogitsProcessor) -> torch.Tensor:
        import copy

        import torch
        from transformers import LogitsProcessorList

        gen_config = copy.deepcopy(self._model.generation_config)
        # The constrained processor already keeps only the top_k_valid valid tokens: the checkpoint's own
        # sampling knobs (Qwen ships temperature/top_p/top_k) would only cut into that set.
        gen_config.do_sample = self._sample
        gen_config.temperature = 1.0 if self._sample else None
        gen_config.top_p = None
        gen_config.top_k = None
        gen_config.max_new_tokens = self._max_new_tokens
        gen_config.eos_token_id = self._eos_ids
        gen_config.pad_token_id = self._pad_id
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
            processor = JsonSchemaLogitsProcessor(
                self._grammar,
                self._table,
                self._eos_ids,
                top_k_valid=self._top_k_valid,
                max_new_tokens=self._max_new_tokens,
                prompt_length=prompt_len,
            )
            out = self._generate(inputs, processor)
            generated = [t for t in out[0, prompt_len:].tolist() if t not in self._eos_ids and t != self._pad_id]
            self.last_stats = GenerationStats(
                prompt_tokens=prompt_len,
                image_tokens=int(inputs["mm_token_type_ids"].sum()),
                new_tokens=len(generated),
                seconds=time.perf_counter() - t0,
            )
        text = self._tokenizer.decode(generated, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if text != processor.text_of(generated):
            # The constraint tracked per-token strings; a tokenizer whose decode is not their concatenation
            # can still yield invalid JSON, which validation below catches.
            log.warning("decoded text differs from the constrained token texts")
        if processor.stuck_rows:
            raise InvalidModelOutput(f"constrained decoding got stuck; partial output {text[:200]!r}")
        log.debug("structured event in %.3f s (%d new tokens): %s", self.last_stats.seconds, len(generated), text)
        data = validate_event(text, self._gamma)
        return StructuredEvent(data=data, producer=self._producer)
