"""Qwen2.5-VL from a local checkpoint directory, written once for every service that prompts it.

What callers get from :func:`load_qwen_vl`: the model (an optional PEFT LoRA adapter
applied, merged by default), its tokenizer and image processor, the ids prompting
and generation need, and whether the weights are a random stand-in (the
``VIGIL_RANDOM_INIT`` marker that ``scripts/make_tiny_qwen_vl.py`` writes).

Prompts are encoded here rather than by ``Qwen2_5_VLProcessor``: that processor
insists on a video processor, which an image-only checkpoint directory need not
ship. :meth:`QwenVL.encode` does what it would do for images (one
``<|image_pad|>`` per merged patch, ``mm_token_type_ids`` for the 3D RoPE).

torch / transformers / peft are imported when a model is loaded, never when this
module is imported.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch
    from PIL import Image

from services.models.random_init import RANDOM_INIT_MARKER, is_random_init

log = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
IMAGE_PAD = "<|image_pad|>"


class QwenVLCheckpointConfig(BaseModel):
    """Qwen2.5-VL (optionally with a LoRA adapter) from a local checkpoint directory, as every backend loads it."""

    model_config = ConfigDict(extra="forbid")
    checkpoint: Path
    lora: Path | None = None
    device: str = "cpu"


# One chat content item in Hugging Face's message format: {"type": "text", "text": ...} or {"type": "image"}.
ContentItem = Mapping[str, str]


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


def qwen_chat_format(system: str, content: Sequence[ContentItem]) -> str:
    """Qwen2-VL's chat format for one user turn (used when a tokenizer has no chat template)."""
    user = "".join(IMAGE_PLACEHOLDER if item["type"] == "image" else item.get("text", "") for item in content)
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def patch_aligned_size(width: int, height: int, max_side: int, factor: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is <= max_side, each side a multiple of `factor` (>= factor)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"empty image {width}x{height}")
    if max_side < factor:
        raise ValueError(f"max_side {max_side} is below the patch factor {factor}")
    scale = min(1.0, max_side / max(width, height))
    limit = (max_side // factor) * factor

    def side(n: int) -> int:
        return min(limit, max(factor, round(n * scale / factor) * factor))

    return side(width), side(height)


@dataclass(frozen=True)
class QwenVL:
    """A loaded Qwen2.5-VL: model, tokenizer, image processor and the ids prompting and generation need."""

    checkpoint: Path
    lora: Path | None
    # Hugging Face objects are typed Any: their stubs do not cover how they are used here.
    model: Any
    tokenizer: Any
    image_processor: Any
    device: str
    image_token_id: int
    merge_size: int
    patch_size: int
    eos_ids: list[int]
    pad_id: int
    random_init: bool

    @property
    def patch_factor(self) -> int:
        """Image sides must be multiples of this (patch size x spatial merge size)."""
        return self.patch_size * self.merge_size

    def fit_image(self, image: Image.Image, max_side: int) -> Image.Image:
        """Downscale so the longer side is <= max_side, sides rounded to the patch factor."""
        from PIL import Image

        size = patch_aligned_size(image.width, image.height, max_side, self.patch_factor)
        return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)

    def chat_text(self, system: str, content: Sequence[ContentItem]) -> str:
        """The checkpoint's chat template over one system and one user turn, with a generation prompt."""
        n_images = sum(1 for item in content if item["type"] == "image")
        if getattr(self.tokenizer, "chat_template", None):
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": [{"type": "text", "text": system}]},
                {"role": "user", "content": [dict(item) for item in content]},
            ]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if isinstance(text, str) and text.count(IMAGE_PAD) == n_images:
                return text
            log.warning("the checkpoint's chat template did not place %d image(s); using Qwen's format", n_images)
        return qwen_chat_format(system, content)

    def encode(
        self, text: str, images: Sequence[Image.Image], image_kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, torch.Tensor]:
        """Model inputs for `text` holding one <|image_pad|> per image, in order; tensors on the model's device."""
        inputs: dict[str, Any] = {}
        counts: list[int] = []
        if images:
            vision = self.image_processor(images=list(images), return_tensors="pt", **dict(image_kwargs or {}))
            grid = vision["image_grid_thw"]
            counts = [int(g.prod()) // self.merge_size**2 for g in grid]
            inputs["pixel_values"] = vision["pixel_values"].to(self.model.dtype)
            inputs["image_grid_thw"] = grid
        enc = self.tokenizer(expand_image_tokens(text, counts), return_tensors="pt", add_special_tokens=False)
        input_ids = enc["input_ids"]
        inputs["input_ids"] = input_ids
        inputs["attention_mask"] = enc["attention_mask"]
        # Qwen2.5-VL's 3D RoPE needs to know which positions are image tokens (1) vs text (0).
        inputs["mm_token_type_ids"] = (input_ids == self.image_token_id).to(input_ids.dtype)
        return {k: v.to(self.device) for k, v in inputs.items()}

    def generation_config(self, max_new_tokens: int, *, sample: bool = False) -> Any:
        """The checkpoint's generation config, greedy unless `sample`, stopping at any end-of-turn token."""
        config = copy.deepcopy(self.model.generation_config)
        # Qwen ships temperature/top_p/top_k for sampling; greedy decoding warns about them unless cleared.
        config.do_sample = sample
        config.temperature = 1.0 if sample else None
        config.top_p = None
        config.top_k = None
        config.max_new_tokens = max_new_tokens
        config.eos_token_id = self.eos_ids
        config.pad_token_id = self.pad_id
        return config

    def new_token_ids(self, output: torch.Tensor, prompt_length: int) -> list[int]:
        """The first row's generated ids after the prompt, without end-of-turn and padding tokens."""
        return [t for t in output[0, prompt_length:].tolist() if t not in self.eos_ids and t != self.pad_id]


def _eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    gen_eos = model.generation_config.eos_token_id
    for value in gen_eos if isinstance(gen_eos, list) else [gen_eos]:
        if value is not None:
            ids.add(int(value))
    for token in ("<|im_end|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id:
            ids.add(tid)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    if not ids:
        raise ValueError("the checkpoint defines no end-of-turn token")
    return sorted(ids)


def load_qwen_vl(
    checkpoint: Path,
    lora: Path | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    *,
    merge_lora: bool = True,
) -> QwenVL:
    """Load a Qwen2.5-VL checkpoint directory (and PEFT adapter) from local files only; fail fast on bad paths."""
    import torch
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"no Qwen2.5-VL checkpoint (config.json) in {checkpoint}")
    model_type = json.loads((checkpoint / "config.json").read_text()).get("model_type")
    if model_type != "qwen2_5_vl":
        raise ValueError(f"{checkpoint} holds a {model_type!r} model, not Qwen2.5-VL (model_type qwen2_5_vl)")
    lora = Path(lora) if lora is not None else None
    if lora is not None:
        if not (lora / "adapter_config.json").is_file():
            raise FileNotFoundError(f"no PEFT adapter (adapter_config.json) in {lora}")
        base = Path(json.loads((lora / "adapter_config.json").read_text()).get("base_model_name_or_path") or "").name
        # Paths move between machines; the checkpoint's directory name (e.g. Qwen2.5-VL-7B-Instruct) does not.
        if base and base != checkpoint.name:
            raise ValueError(f"adapter {lora} was trained on {base!r}, not on {checkpoint.name!r}")
    # fp32 on CPU: bf16/fp16 matmuls there are slow or unsupported.
    torch_dtype = getattr(torch, dtype, None) if dtype else (torch.float32 if device == "cpu" else torch.bfloat16)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"unknown torch dtype {dtype!r}")
    # Local files only: a deployment points at a directory, and nothing may be downloaded.
    tokenizer: Any = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
    image_processor: Any = AutoImageProcessor.from_pretrained(checkpoint, local_files_only=True)
    model: Any = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        checkpoint, dtype=torch_dtype, local_files_only=True
    )
    if lora is not None:
        from peft import PeftModel

        with warnings.catch_warnings():
            # peft 0.21 still reads a transformers attribute deprecated in 5.x; nothing to act on.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = PeftModel.from_pretrained(model, lora)
        if merge_lora:
            # W' = W + (alpha/r) B A folded in once: no adapter overhead per token.
            model = model.merge_and_unload()
    model = model.to(device).eval()

    config = model.config
    image_token_id = int(config.image_token_id)
    if tokenizer.convert_tokens_to_ids(IMAGE_PAD) != image_token_id:
        raise ValueError(f"tokenizer's {IMAGE_PAD} id does not match config.image_token_id in {checkpoint}")
    vision_config = config.vision_config
    eos_ids = _eos_token_ids(model, tokenizer)
    random_init = is_random_init(checkpoint, lora)
    if random_init:
        log.warning("%s is randomly initialised (%s): its outputs are meaningless", checkpoint, RANDOM_INIT_MARKER)
    log.info("Qwen2.5-VL loaded from %s (lora=%s, device=%s, dtype=%s)", checkpoint, lora, device, torch_dtype)
    return QwenVL(
        checkpoint=checkpoint,
        lora=lora,
        model=model,
        tokenizer=tokenizer,
        image_processor=image_processor,
        device=device,
        image_token_id=image_token_id,
        merge_size=int(getattr(image_processor, "merge_size", vision_config.spatial_merge_size)),
        patch_size=int(getattr(image_processor, "patch_size", vision_config.patch_size)),
        eos_ids=eos_ids,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0],
        random_init=random_init,
    )
