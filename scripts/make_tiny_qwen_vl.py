"""Build a tiny, randomly initialised Qwen2.5-VL checkpoint (and optionally a LoRA adapter) on disk.

No VLM weights exist in any registry this project can reach, so the loading,
prompting, constrained decoding and LoRA code (DAT eq. 3-6) is tested against
this stand-in: the real architecture (``Qwen2_5_VLForConditionalGeneration``)
with a small config, a byte-level BPE tokenizer trained here with Qwen's own
pre-tokenizer, Qwen's special tokens and chat format, and the real
``Qwen2VLImageProcessor`` config. Its text is meaningless; the directory holds a
``VIGIL_RANDOM_INIT`` marker so every consumer can say so.

Usage: ``python scripts/make_tiny_qwen_vl.py OUT_DIR [--seed 0] [--lora OUT_LORA_DIR]``
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from services.models.random_init import RANDOM_INIT_MARKER

log = logging.getLogger(__name__)


SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2's pre-tokenizer split (transformers' Qwen2Tokenizer rebuilds its pipeline with it on load,
# so the merges must be learnt under the same split).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2-VL's chat format: system turn (default one if absent), images as
# <|vision_start|><|image_pad|><|vision_end|>, generation prompt "<|im_start|>assistant\n".
QWEN_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_EVENT_TYPES = ("fall", "accident", "person", "vehicle", "other")
_SEVERITIES = ("none", "minor", "severe")
_LABELS = ("person", "fallen_person", "vehicle", "other")
_WORDS = (
    "a person fell near the road",
    "two vehicles collided at the crossing",
    "someone is lying on the floor",
    "no incident in view",
    "detector priors label confidence bbox",
    "describe the incident in the boxed image as one JSON object",
    "You are the event structurer of a video surveillance edge node",
    "system user assistant",
)


def _corpus(rng: random.Random, n_docs: int = 1500) -> Iterator[str]:
    """Event JSON in the schema's key order, plus prompt-like text, so merges cover both."""
    for _ in range(n_docs):
        level = rng.randint(0, 1)
        doc = {
            "event_type": rng.choice(_EVENT_TYPES),
            "count": rng.randint(0, 20),
            "severity": "severe" if level else rng.choice(_SEVERITIES[:2]),
            "level": level,
            "score": round(rng.uniform(0.5, 1.0) if level else rng.uniform(0.0, 0.4999), rng.randint(1, 4)),
            "objects": [
                {"label": rng.choice(_LABELS), "bbox": sorted(rng.randint(0, 1000) for _ in range(4))}
                for _ in range(rng.randint(0, 3))
            ],
            "summary": rng.choice(_WORDS),
        }
        yield json.dumps(doc, separators=(",", ":"))
        yield rng.choice(_WORDS)


def train_qwen_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Any:
    """A byte-level BPE `tokenizers.Tokenizer` learnt from `texts` under Qwen2's pre-tokenizer, SPECIAL_TOKENS first."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE

    tok = Tokenizer(BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 byte symbols: every character (so every JSON character) has a token of its own.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def vocab_and_merges(tok: Any) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The BPE model's vocabulary and merges, as `Qwen2Tokenizer(vocab=..., merges=...)` takes them."""
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), [(a, b) for a, b in merges]


def qwen_tokenizer(
    vocab: dict[str, int], merges: list[tuple[str, str]], extra_special_tokens: Sequence[str] = ()
) -> Any:
    """A transformers `Qwen2Tokenizer` over a learnt vocabulary, with Qwen2.5-VL's special tokens and chat template."""
    from transformers import Qwen2Tokenizer

    tokenizer_kwargs: dict[str, Any] = {
        "vocab": vocab,
        "merges": merges,
        # As in Qwen2.5-VL-*-Instruct: chat turns end with <|im_end|>, padding is <|endoftext|>, no unk.
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "extra_special_tokens": [*SPECIAL_TOKENS[1:], *extra_special_tokens],
    }
    tokenizer = Qwen2Tokenizer(**tokenizer_kwargs)
    tokenizer.chat_template = QWEN_VL_CHAT_TEMPLATE
    return tokenizer


def tiny_qwen_tokenizer(seed: int = 0, vocab_size: int = 1024) -> Any:
    """The tiny checkpoint's tokenizer alone: BPE learnt from event JSON and prompt-like text (a second or so)."""
    return qwen_tokenizer(*vocab_and_merges(train_qwen_bpe(_corpus(random.Random(seed)), vocab_size)))


def make_tiny_qwen_vl(out_dir: Path, seed: int = 0, vocab_size: int = 1024) -> Path:
    """Write a random-init tiny Qwen2.5-VL checkpoint (config, safetensors, tokenizer, preprocessor) to out_dir."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessor,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_qwen_tokenizer(seed, vocab_size)
    ids: dict[str, int] = {}
    for token in SPECIAL_TOKENS:
        tid = tokenizer.convert_tokens_to_ids(token)
        if not isinstance(tid, int):
            raise TypeError(f"{token} has no single id")
        ids[token] = tid

    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            # head_dim 16 -> 8 rotary frequencies split over (temporal, height, width).
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": None,
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # Small images keep the vision tower cheap: at most 112x112 pixels -> <= 16 merged image tokens.
    Qwen2VLImageProcessor(
        min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14, temporal_patch_size=2, merge_size=2
    ).save_pretrained(out_dir)
    (out_dir / RANDOM_INIT_MARKER).write_text(f"seed={seed}\nrandomly initialised; outputs are meaningless\n")
    log.info("tiny Qwen2.5-VL (%d parameters) written to %s", sum(p.numel() for p in model.parameters()), out_dir)
    return out_dir


def make_tiny_lora(model_dir: Path, out_dir: Path, seed: int = 0, rank: int = 4, alpha: int = 8) -> Path:
    """Write a random LoRA adapter (DAT eq. 5-6: dW = (alpha/r) B A) on the language model's q_proj/v_proj."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2_5_VLForConditionalGeneration

    out_dir = Path(out_dir)
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(Path(model_dir))
    lora_config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        # Language model only: the vision tower's attention uses fused qkv, never q_proj/v_proj.
        target_modules=r".*language_model.*\.(q_proj|v_proj)",
        lora_dropout=0.0,
        bias="none",
    )
    with warnings.catch_warnings():
        # peft 0.21 still reads a transformers attribute deprecated in 5.x; nothing to act on.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(base, lora_config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            # PEFT initialises B = 0 (a no-op adapter); random B makes the adapter change the outputs.
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    peft_model.save_pretrained(str(out_dir))
    (out_dir / RANDOM_INIT_MARKER).write_text(f"seed={seed}\nrandom LoRA adapter; outputs are meaningless\n")
    log.info("tiny LoRA adapter (r=%d, alpha=%d) written to %s", rank, alpha, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="checkpoint directory to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lora", type=Path, default=None, help="also write a random LoRA adapter here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    make_tiny_qwen_vl(args.out_dir, seed=args.seed)
    if args.lora is not None:
        make_tiny_lora(args.out_dir, args.lora, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
