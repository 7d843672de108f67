"""Build a tiny, randomly initialised CLIP checkpoint (CLIPModel + CLIPProcessor) on disk.

No CLIP or BGE-VL weights can be reached here, so the CLIP embedder's loading and
embedding code is tested against this stand-in: the real ``CLIPModel`` with a small
``CLIPConfig``, a real ``CLIPTokenizer`` over a byte-level vocabulary written here
(every byte as a word piece, no merges: any text tokenizes, character by character)
and a real ``CLIPImageProcessor`` config at 32x32. Its embeddings are meaningless;
the directory holds a ``VIGIL_RANDOM_INIT`` marker so every consumer can say so.

Usage: ``python scripts/make_tiny_clip.py OUT_DIR [--seed 0]``
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from services.models.random_init import RANDOM_INIT_MARKER

log = logging.getLogger(__name__)

IMAGE_SIZE = 32


def _byte_level_vocab() -> dict[str, int]:
    """CLIP's special tokens, then each byte symbol alone and as a word end (CLIP's `</w>` suffix)."""
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>", *alphabet, *(f"{c}</w>" for c in alphabet)]
    return {tok: i for i, tok in enumerate(tokens)}


def make_tiny_clip(out_dir: Path, seed: int = 0) -> Path:
    """Write a random-init tiny CLIP checkpoint (config, safetensors, tokenizer, image processor) to out_dir."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = _byte_level_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(out_dir)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out_dir)
    (out_dir / RANDOM_INIT_MARKER).write_text(f"seed={seed}\nrandomly initialised; embeddings are meaningless\n")
    log.info("tiny CLIP (%d parameters) written to %s", sum(p.numel() for p in model.parameters()), out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="checkpoint directory to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    make_tiny_clip(args.out_dir, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
