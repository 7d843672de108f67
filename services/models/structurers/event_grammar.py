"""Constrained decoding of the event JSON with xgrammar (DAT eq. 3-4), and the token budget it needs.

The grammar (:func:`event_ebnf`) is xgrammar's own conversion of :func:`decoding_schema`,
which is ``event_schema(gamma)`` in the form that conversion takes, with one edit:

* eq. 4 and level 1 <=> severity 'severe' are the schema's anyOf. xgrammar does not
  intersect a branch with the properties beside it, so each branch becomes a whole
  event object (the shape, with the branch's tighter enums and score bound).
* compact JSON with the keys in the schema's order (xgrammar follows the declared order).
* every part is bounded: enums, integer ranges, ``maxItems``, ``maxLength``. A number with
  both bounds is written with at most :data:`DECIMALS` fraction digits and no exponent:
  xgrammar's float-range conversion (mlc-ai/xgrammar#289).
* the edit: xgrammar writes a bounded string's characters as "anything but quote,
  backslash, CR and LF", which lets raw control characters through (invalid JSON) and
  non-ASCII ones (several bytes each, so characters would not bound tokens). The
  summary's characters become printable ASCII less quote and backslash: no escapes,
  one byte each.

tests/unit/test_event_grammar.py holds xgrammar to all of this.

So the grammar has a longest document (:func:`longest_event`). Every token the
matcher allows is at least one byte, so that many tokens plus EOS always suffice:
:func:`event_token_budget` is the least ``max_new_tokens`` that can never cut an event.

xgrammar and torch are imported only when a grammar is built or used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from services.models.structurers.base import DEFAULT_GAMMA, event_schema

# Fraction digits xgrammar writes for a number with a minimum and a maximum.
DECIMALS = 6
# How xgrammar's conversion spells the characters of a string with maxLength, and what the summary's become:
# printable ASCII less '"' and '\\'. Written as a negated class on purpose: under {0,160} xgrammar handles one in
# ~0.1 ms per token on a 151k vocabulary, the same set as a positive class in ~1 ms after a 4 s compile (measured).
XGRAMMAR_STRING_CHARS = r"[^\"\\\r\n]"
SUMMARY_CHARS = r"[^\0-\x1f\"\\\x7f-\U0010FFFF]"


def decoding_schema(gamma: float) -> dict[str, Any]:
    """The event schema at `gamma` as xgrammar converts it: the anyOf as two whole-object branches."""
    schema = event_schema(gamma)
    shape = {key: schema[key] for key in ("type", "additionalProperties", "required")}
    properties = schema["properties"]
    branches = []
    for rule in schema["anyOf"]:
        # A branch only narrows (a smaller enum, one more score bound): merged keywords are the intersection.
        merged = {key: {**sub, **rule["properties"].get(key, {})} for key, sub in properties.items()}
        branches.append({**shape, "properties": merged})
    return {"anyOf": branches}


def event_ebnf(gamma: float) -> str:
    """The event grammar at `gamma` (xgrammar EBNF): decoding_schema's conversion, its summary ASCII only."""
    import xgrammar as xgr

    converted = str(
        xgr.Grammar.from_json_schema(
            decoding_schema(gamma), any_whitespace=False, separators=(",", ":"), strict_mode=True
        )
    )
    # The summary is the schema's one string with maxLength: one character rule per branch.
    found = converted.count(XGRAMMAR_STRING_CHARS)
    if found != 2:
        raise RuntimeError(f"xgrammar's conversion has {found} bounded-string character rules, expected 2")
    return converted.replace(XGRAMMAR_STRING_CHARS, SUMMARY_CHARS)


def _longest(schema: dict[str, Any]) -> str:
    """The longest JSON text the grammar of `schema` accepts (every property written: all are required)."""
    if "anyOf" in schema:
        return max((_longest(branch) for branch in schema["anyOf"]), key=len)
    if "enum" in schema:
        return max((json.dumps(v) for v in schema["enum"]), key=len)
    kind = schema["type"]
    if kind == "object":
        return "{" + ",".join(f"{json.dumps(k)}:{_longest(v)}" for k, v in schema["properties"].items()) + "}"
    if kind == "array":
        return "[" + ",".join([_longest(schema["items"])] * schema["maxItems"]) + "]"
    if kind == "string":
        return json.dumps("x" * schema["maxLength"])
    if kind == "integer":
        return max(str(schema["minimum"]), str(schema["maximum"]), key=len)
    if kind == "number":
        if schema["minimum"] < 0:
            raise ValueError("negative number ranges are not needed by the event schema")
        # Non-negative: the top of the range has the longest integer part; then DECIMALS digits.
        top = schema["exclusiveMaximum"] - 10**-DECIMALS if "exclusiveMaximum" in schema else schema["maximum"]
        return f"{top:.{DECIMALS}f}"
    raise ValueError(f"no length bound for {schema!r}")


@cache
def longest_event(gamma: float = DEFAULT_GAMMA) -> str:
    """The longest event document the grammar at `gamma` accepts (a witness: it is a valid event)."""
    return _longest(decoding_schema(gamma))


def event_token_budget(gamma: float = DEFAULT_GAMMA) -> int:
    """max_new_tokens that always fits an event: its longest document's bytes (>= 1 per token), plus EOS."""
    return len(longest_event(gamma).encode()) + 1


def tokenizer_info(tokenizer: Any, vocab_size: int, stop_ids: Sequence[int]) -> Any:
    """xgrammar's view of a Hugging Face tokenizer for a model with `vocab_size` logits; special tokens never match."""
    import xgrammar as xgr

    detected = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_ids))
    # from_huggingface reads special tokens (<|im_start|>, <|image_pad|>, ...) as their literal text, so one
    # could stand for "<|im_start|>" inside the summary, and decode(skip_special_tokens) would drop it.
    # xgrammar never allows a token whose text is empty (other than the stop tokens).
    special = set(tokenizer.all_special_ids) - set(stop_ids)
    vocab = [""] * vocab_size
    for text, tid in tokenizer.get_vocab().items():
        if tid < vocab_size and tid not in special:
            vocab[tid] = text
    return xgr.TokenizerInfo(
        vocab,
        detected.vocab_type,
        vocab_size=vocab_size,
        stop_token_ids=list(stop_ids),
        add_prefix_space=detected.add_prefix_space,
    )


@dataclass(frozen=True)
class EventGrammar:
    """The event grammar compiled for one tokenizer and gamma."""

    compiled: Any  # xgrammar.CompiledGrammar
    stop_ids: tuple[int, ...]
    token_bytes: Sequence[bytes]  # what the matcher takes each token id to spell

    @classmethod
    def build(cls, tokenizer: Any, vocab_size: int, stop_ids: Sequence[int], gamma: float) -> EventGrammar:
        """Compile event_ebnf(gamma) for a tokenizer whose model has `vocab_size` logits."""
        import xgrammar as xgr

        info = tokenizer_info(tokenizer, vocab_size, stop_ids)
        compiled = xgr.GrammarCompiler(info).compile_grammar(event_ebnf(gamma))
        return cls(compiled=compiled, stop_ids=tuple(stop_ids), token_bytes=info.decoded_vocab)

    def matcher(self) -> Any:
        """A fresh xgrammar.GrammarMatcher at the start of a document."""
        import xgrammar as xgr

        return xgr.GrammarMatcher(self.compiled, override_stop_tokens=list(self.stop_ids))

    def text_of(self, token_ids: Sequence[int]) -> str:
        """The text the grammar took these (non-stop) token ids to spell."""
        return b"".join(self.token_bytes[t] for t in token_ids).decode("utf-8", errors="replace")

    def processor(self, top_k_valid: int | None = None) -> EventLogitsProcessor:
        """A logits processor for one generate() call."""
        return EventLogitsProcessor(self, top_k_valid=top_k_valid)


class EventLogitsProcessor:
    """transformers logits processor: only the tokens the grammar allows next; EOS only once the event is complete.

    One matcher per batch row, fed the token generate() chose at the previous step. With
    `top_k_valid`, only that many of the best allowed tokens are kept (for sampling). A row
    whose output left the grammar (a token this processor did not allow was forced in, or
    nothing is allowed) is ended with EOS and counted in `stuck_rows`; validation refuses it.
    """

    def __init__(self, grammar: EventGrammar, *, top_k_valid: int | None = None) -> None:
        if top_k_valid is not None and top_k_valid < 1:
            raise ValueError("top_k_valid must be >= 1")
        self._grammar = grammar
        self._top_k = top_k_valid
        self._matchers: list[Any] = []
        self._bitmask: Any = None
        self._stuck: set[int] = set()

    @property
    def stuck_rows(self) -> int:
        """Rows ended because their output left the grammar."""
        return len(self._stuck)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """(batch, seq) ids and (batch, vocab) float scores -> the scores, disallowed tokens at -inf."""
        import torch
        import xgrammar as xgr

        if not self._matchers:
            self._matchers = [self._grammar.matcher() for _ in range(input_ids.shape[0])]
            self._bitmask = xgr.allocate_token_bitmask(len(self._matchers), scores.shape[-1])
        else:
            # The token generate() chose last step; one this processor did not allow leaves the grammar.
            for row, matcher in enumerate(self._matchers):
                live = row not in self._stuck and not matcher.is_terminated()
                if live and not matcher.accept_token(int(input_ids[row, -1])):
                    self._stuck.add(row)
        # A finished row (batch > 1) is left unmasked: generate pads it, its scores do not matter.
        xgr.reset_token_bitmask(self._bitmask)
        active = [row for row, m in enumerate(self._matchers) if row not in self._stuck and not m.is_terminated()]
        for row in active:
            self._matchers[row].fill_next_token_bitmask(self._bitmask, row)
            if not bool(self._bitmask[row].any()):  # nothing the vocabulary can spell continues the event
                self._stuck.add(row)
        xgr.apply_token_bitmask_inplace(scores, self._bitmask.to(scores.device))
        for row in self._stuck:
            scores[row] = float("-inf")
            scores[row, list(self._grammar.stop_ids)] = 0.0
        if self._top_k is not None and self._top_k < scores.shape[-1]:
            kth = torch.topk(scores, self._top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        return scores
