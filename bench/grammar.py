"""make bench-grammar: constrained decoding with xgrammar vs the hand-written decoder it replaced, side by side.

Prints JSON lines: one record per decoder and logits regime, then the reference's time over xgrammar's.

- **Tokenizer**: a byte-level BPE of Qwen2.5's size (``bench.qwen_size_tokenizer``: 151,665 tokens, logits
  padded to 151,936 as Qwen2.5-VL's are), learnt locally and cached.
- **Compile**: what each decoder does once per structurer, best of --repeats: xgrammar builds its
  TokenizerInfo and compiles ``decoding_schema(gamma)``; the reference builds its grammar and decodes every
  token once (its TokenTable).
- **Per-token mask**: both decoders are driven through the same valid events (hand-written shapes, seeded
  random ones, and the longest event), tokenised with that tokenizer; at every step one logits-processor
  call is timed (logits in, masked logits out, the previous token taken in), what generate() pays per
  token. xgrammar computes the whole allowed set; the reference walks tokens in logit order until one is
  valid (top_k_valid=1, as the structurer ran it), so its cost depends on the logits: "peaked" gives the
  document's next token the highest logit (a model that agrees with the grammar, its best case),
  "random" draws them from N(0, 1).
- **Reference**: ``services/models/structurers/constrained.py`` as of commit REFERENCE_COMMIT, read from
  git history into a temporary module (the file is gone from the tree); without git or that commit a
  skip record says so.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from bench.harness import ROOT, compare, emit, machine_info, percentiles
from bench.qwen_size_tokenizer import QWEN25_VL_MODEL_VOCAB, qwen_size_tokenizer
from services.models.structurers.base import event_schema, validate_event
from services.models.structurers.event_grammar import (
    EventGrammar,
    event_ebnf,
    event_token_budget,
    longest_event,
    tokenizer_info,
)

# The last commit with the hand-written decoder (services/models/structurers/constrained.py).
REFERENCE_COMMIT = "39dc01bffd41a483f55c12d3fa98ca7a9dc6e199"
REFERENCE_PATH = "services/models/structurers/constrained.py"
REGIMES = ("peaked", "random")
_WORDS = ("a person fell near the road", "two vehicles collided at the crossing", "someone is lying on the floor")


def load_reference(commit: str = REFERENCE_COMMIT) -> tuple[ModuleType | None, str]:
    """The old decoder module from git history, or (None, why not)."""
    try:
        source = subprocess.run(
            ["git", "show", f"{commit}:{REFERENCE_PATH}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"git show {commit[:12]}:{REFERENCE_PATH} failed: {exc}"
    with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="constrained_ref_", delete=False) as f:
        f.write(source)
    name = "bench_constrained_reference"
    spec = importlib.util.spec_from_file_location(name, f.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module, f"{REFERENCE_PATH} at {commit[:12]} (git history)"


def documents(n_random: int, gamma: float, seed: int = 0) -> list[str]:
    """Valid events both decoders accept: fixed shapes, seeded random ones, and the longest event."""
    rng = random.Random(seed)
    docs = [
        {"event_type": "other", "count": 0, "severity": "none", "level": 0, "score": 0, "objects": [], "summary": ""},
        {
            "event_type": "accident",
            "count": 1,
            "severity": "severe",
            "level": 1,
            "score": 0.8123,
            "objects": [{"label": "accident", "bbox": [120, 340, 610, 790]}],
            "summary": "1 x accident detected (max confidence 0.62); involved: 2 car; in view: 5 car, 1 person",
        },
    ]
    for _ in range(n_random):
        level = rng.randint(0, 1)
        boxes = [
            sorted(rng.sample(range(1001), 2)) + sorted(rng.sample(range(1001), 2)) for _ in range(rng.randint(0, 8))
        ]
        docs.append(
            {
                "event_type": rng.choice(["fall", "accident", "person", "vehicle", "other"]),
                "count": rng.randint(0, 20),
                "severity": "severe" if level else rng.choice(["none", "minor"]),
                "level": level,
                "score": round(
                    rng.uniform(gamma, 1.0) if level else rng.uniform(0.0, gamma * 0.999), rng.randint(1, 4)
                ),
                # [x1, x2, y1, y2] sorted pairwise -> [x1, y1, x2, y2] with x1 <= x2, y1 <= y2 (the old grammar's rule).
                "objects": [
                    {
                        "label": rng.choice(["accident", "person", "fallen_person", "vehicle", "other"]),
                        "bbox": [b[0], b[2], b[1], b[3]],
                    }
                    for b in boxes
                ],
                "summary": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 6)))[:160],
            }
        )
    # The longest event but for its score: the reference wrote at most 4 decimals, xgrammar 6.
    longest = json.loads(longest_event(gamma))
    docs.append({**longest, "score": 0.9999})
    texts = [json.dumps(d, separators=(",", ":")) for d in docs]
    for text in texts:
        validate_event(text, gamma)
    return texts


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _logits(ids: Sequence[int], vocab: int, regime: str, seed: int) -> list[Any]:
    """The logits of each step of one document (generated before timing)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    steps = []
    for target in [*ids, None]:  # the last step is the one that must allow EOS
        scores = torch.randn(1, vocab, generator=gen)
        if regime == "peaked" and target is not None:
            scores[0, target] = scores.max() + 1.0
        steps.append(scores)
    return steps


def time_masks(
    make_processor: Callable[[], Any], docs_ids: Sequence[Sequence[int]], vocab: int, regime: str
) -> list[float]:
    """Milliseconds of each processor call over every document (prompt of one token, then the document)."""
    import torch

    times: list[float] = []
    for n, ids in enumerate(docs_ids):
        processor = make_processor()
        prefix = [7]
        for step, scores in enumerate(_logits(ids, vocab, regime, seed=n)):
            x = torch.tensor([prefix])
            t0 = time.perf_counter()
            processor(x, scores)
            times.append((time.perf_counter() - t0) * 1e3)
            if step < len(ids):
                prefix.append(ids[step])
        if getattr(processor, "stuck_rows", 0):
            raise RuntimeError(f"document {n} left the grammar")
    return times


def time_fills(grammar: EventGrammar, docs_ids: Sequence[Sequence[int]], vocab: int) -> list[float]:
    """Milliseconds of xgrammar's mask alone (fill_next_token_bitmask) at each step, without applying it."""
    import xgrammar as xgr

    bitmask = xgr.allocate_token_bitmask(1, vocab)
    times: list[float] = []
    for ids in docs_ids:
        matcher = grammar.matcher()
        for tid in [*ids, None]:
            t0 = time.perf_counter()
            matcher.fill_next_token_bitmask(bitmask)
            times.append((time.perf_counter() - t0) * 1e3)
            if tid is not None and not matcher.accept_token(tid):
                raise RuntimeError("a document left the grammar")
    return times


def mask_record(decoder: str, regime: str, times: Sequence[float], **fields: Any) -> dict[str, Any]:
    """One decoder's per-token mask times."""
    p50, p95 = percentiles(times)
    record = {
        "bench": "grammar-mask",
        "decoder": decoder,
        "logits": regime,
        "steps": len(times),
        "mask_ms_p50": round(p50, 4),
        "mask_ms_p95": round(p95, 4),
        "mask_ms_mean": round(float(np.mean(times)), 4),
        **fields,
    }
    emit(record)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """Compile and per-token mask times of both decoders on the same documents; JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--gamma", type=float, default=0.5)
    ap.add_argument("--random-docs", type=int, default=20, help="seeded random events besides the fixed ones")
    ap.add_argument("--repeats", type=int, default=3, help="compiles timed, the best kept")
    args = ap.parse_args(argv)

    import xgrammar as xgr

    tokenizer = qwen_size_tokenizer()
    vocab = QWEN25_VL_MODEL_VOCAB
    eos = sorted({tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")})
    texts = documents(args.random_docs, args.gamma)
    docs_ids = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    emit(
        {
            "bench": "grammar-setup",
            "tokenizer_tokens": len(tokenizer),
            "model_vocab": vocab,
            "documents": len(texts),
            "document_tokens": sum(len(d) for d in docs_ids),
            "longest_event_chars": len(longest_event(args.gamma)),
            "event_token_budget": event_token_budget(args.gamma),
            "xgrammar": md.version("xgrammar"),
            **machine_info(),
        }
    )

    info_s, info = _best(lambda: tokenizer_info(tokenizer, vocab, eos), args.repeats)

    def compile_xgr() -> Any:
        # From the schema each time, with a fresh compiler: its cache would make the second compile free.
        return xgr.GrammarCompiler(info, cache_enabled=False).compile_grammar(event_ebnf(args.gamma))

    grammar_s, compiled = _best(compile_xgr, args.repeats)
    grammar = EventGrammar(compiled=compiled, stop_ids=tuple(eos), token_bytes=info.decoded_vocab)
    ours = {"compile_s": info_s + grammar_s, "tokenizer_s": info_s, "grammar_s": grammar_s}
    emit({"bench": "grammar-compile", "decoder": "xgrammar", **{k: round(v, 4) for k, v in ours.items()}})
    ours_masks = {r: time_masks(grammar.processor, docs_ids, vocab, r) for r in REGIMES}
    ours_records = {r: mask_record("xgrammar", r, ours_masks[r]) for r in REGIMES}
    mask_record("xgrammar", "any", time_fills(grammar, docs_ids, vocab), part="fill_next_token_bitmask alone")

    ref, source = load_reference()
    if ref is None:
        emit({"bench": "grammar-reference", "skipped": True, "reason": source})
        print(f"bench-grammar: reference skipped: {source}", file=sys.stderr)
        return 0
    label = f"constrained.py@{REFERENCE_COMMIT[:7]}"
    ref_grammar_s, ref_grammar = _best(lambda: ref.event_grammar(event_schema(), args.gamma), args.repeats)
    ref_table_s, table = _best(
        lambda: ref.TokenTable.from_tokenizer(tokenizer, ref.grammar_alphabet(ref_grammar)), args.repeats
    )
    reference = {"compile_s": ref_grammar_s + ref_table_s, "tokenizer_s": ref_table_s, "grammar_s": ref_grammar_s}
    emit(
        {
            "bench": "grammar-compile",
            "decoder": label,
            "source": source,
            **{k: round(v, 4) for k, v in reference.items()},
        }
    )
    budget = event_token_budget(args.gamma)
    for text in texts:
        if not ref.is_complete_document(ref_grammar, text):
            raise RuntimeError(f"the reference grammar refuses {text[:80]!r}")

    def make_ref() -> Any:
        return ref.JsonSchemaLogitsProcessor(
            ref_grammar, table, eos, top_k_valid=1, max_new_tokens=budget, prompt_length=1
        )

    compare(
        "grammar-compile-ratio",
        {k: ours[k] for k in ("compile_s", "tokenizer_s", "grammar_s")},
        reference,
        inverse=True,
        places=3,
        reference=label,
        reads="reference seconds / xgrammar seconds",
    )
    for regime in REGIMES:
        times = time_masks(make_ref, docs_ids, vocab, regime)
        rec = mask_record(label, regime, times, source=source)
        compare(
            "grammar-mask-ratio",
            {k: ours_records[regime][k] for k in ("mask_ms_p50", "mask_ms_p95", "mask_ms_mean")},
            rec,
            inverse=True,
            places=2,
            logits=regime,
            reference=label,
            reads="reference ms per token / xgrammar ms per token",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
