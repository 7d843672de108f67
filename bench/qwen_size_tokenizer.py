"""A tokenizer of Qwen2.5's size for benchmarks: byte-level BPE, Qwen2's pre-tokenizer and special tokens.

No Qwen2/Qwen2.5 tokenizer ships with any installed package and none can be
downloaded here, so one of the same shape is learnt locally: 151,643 regular
tokens (Qwen2.5's count) from the Python sources of this interpreter's
site-packages, Qwen2.5's 22 special tokens (151,665 in all, as ``len(tokenizer)``
of Qwen2.5-VL), with ``scripts/make_tiny_qwen_vl.py``'s training code. The merges
are learnt from code, not Qwen's corpus, so token boundaries differ from the real
tokenizer's; what a grammar benchmark needs, the vocabulary size and byte-level
token texts, is the same. Cached under ``.cache/`` (minutes to train on 2 cores).
"""

from __future__ import annotations

import logging
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.harness import ROOT

log = logging.getLogger(__name__)

CACHE = ROOT / ".cache" / "bench" / "qwen-size-tokenizer"
REGULAR_TOKENS = 151_643
# Qwen2.5's special tokens beyond the ones the tiny checkpoint has (SPECIAL_TOKENS there).
QWEN25_EXTRA_SPECIAL = (
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
# Qwen2.5-VL's embedding (and so its logits) is padded beyond len(tokenizer).
QWEN25_VL_MODEL_VOCAB = 151_936
CORPUS_BYTES = 160_000_000


def _corpus(limit_bytes: int = CORPUS_BYTES) -> Iterator[str]:
    """Python sources of site-packages, in a fixed order, up to `limit_bytes`."""
    total = 0
    for path in sorted(Path(sysconfig.get_paths()["purelib"]).rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        total += len(text)
        yield text
        if total >= limit_bytes:
            return


def qwen_size_tokenizer(cache: Path = CACHE) -> Any:
    """The cached tokenizer (a transformers Qwen2Tokenizer), learnt first if the cache is empty."""
    from transformers import AutoTokenizer

    from scripts.make_tiny_qwen_vl import SPECIAL_TOKENS, qwen_tokenizer, train_qwen_bpe, vocab_and_merges

    if not (cache / "tokenizer.json").is_file():
        log.info("learning a %d-token BPE into %s (minutes)", REGULAR_TOKENS, cache)
        tok = train_qwen_bpe(_corpus(), REGULAR_TOKENS + len(SPECIAL_TOKENS))
        qwen_tokenizer(*vocab_and_merges(tok), extra_special_tokens=QWEN25_EXTRA_SPECIAL).save_pretrained(cache)
    return AutoTokenizer.from_pretrained(cache)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(len(qwen_size_tokenizer()))
