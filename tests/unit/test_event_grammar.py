"""Constrained decoding with xgrammar: the compiled event grammar, its token budget, and the logits processor."""

from __future__ import annotations

import json
import random
from decimal import ROUND_CEILING, Decimal
from typing import Any

import jsonschema
import pytest

from services.models.structurers.base import check_eq4, event_schema, validate_event
from services.models.structurers.event_grammar import (
    DECIMALS,
    EventGrammar,
    decoding_schema,
    event_token_budget,
    longest_event,
)

pytestmark = pytest.mark.torch

xgr = pytest.importorskip("xgrammar")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from scripts.make_tiny_qwen_vl import tiny_qwen_tokenizer  # noqa: E402

GAMMAS = [0.5, 0.3, 0.12345, 0.9, 0.7]


def compact(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


def event(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_type": "fall",
        "count": 2,
        "severity": "severe",
        "level": 1,
        "score": 0.75,
        "objects": [{"label": "fallen_person", "bbox": [10, 20, 300, 400]}, {"label": "person", "bbox": [0, 0, 0, 0]}],
        "summary": "a person fell near the road",
    }
    doc.update(overrides)
    return doc


VALID_EVENTS = [
    event(),
    event(event_type="person", count=0, severity="none", level=0, score=0, objects=[], summary=""),
    event(severity="minor", level=0, score=0.4999),
    event(score=1),
    event(score=0.5),
    event(score=1.0),
    event(count=20, score=0.5001),
    event(objects=[{"label": "vehicle", "bbox": [1000, 1000, 1000, 1000]}] * 8),
    event(objects=[{"label": "other", "bbox": [900, 800, 100, 5]}]),  # corners either way: sorted by validation
    event(summary="x" * 160),
    event(event_type="other", severity="none", level=0, score=0.0001, summary="Crash! (2 cars) at 5:30 - ok?"),
    event(summary="<|im_start|> is only text here; so are [brackets], {braces}, ' and ~`^|"),
]


# ---------------------------------------------------------------- the schema and the budget


def test_decoding_schema_is_the_event_schema_as_two_whole_objects() -> None:
    schema = decoding_schema(0.3)
    low, high = schema["anyOf"]
    for branch in (low, high):
        assert list(branch["properties"]) == list(event_schema()["required"]) == branch["required"]
        assert branch["additionalProperties"] is False
    assert low["properties"]["level"]["enum"] == [0] and high["properties"]["level"]["enum"] == [1]
    assert low["properties"]["score"]["exclusiveMaximum"] == 0.3 and high["properties"]["score"]["minimum"] == 0.3
    assert high["properties"]["severity"]["enum"] == ["severe"]
    # The same events as the repository schema at that gamma (the summary's ASCII-only edit is the EBNF's).
    for gamma in (0.3, 0.5):
        decoding = jsonschema.Draft202012Validator(decoding_schema(gamma))
        full = jsonschema.Draft202012Validator(event_schema(gamma))
        for doc in VALID_EVENTS:
            assert decoding.is_valid(doc) == full.is_valid(doc), (gamma, doc)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_the_longest_event_is_valid_and_sets_the_budget(gamma: float) -> None:
    text = longest_event(gamma)
    validate_event(text, gamma)
    assert text.isascii()
    # One byte per character (ASCII), at least one byte per token, plus EOS.
    assert event_token_budget(gamma) == len(text) + 1
    doc = json.loads(text)
    assert len(doc["objects"]) == 8 and len(doc["summary"]) == 160
    assert len(text.split('"score":')[1].split(",")[0]) == 2 + DECIMALS


def test_structurer_config_takes_its_budget_from_the_grammar() -> None:
    from services.models.structurers.config import EVENT_TOKEN_BUDGET, QwenVLConfig

    assert event_token_budget() == EVENT_TOKEN_BUDGET
    field = QwenVLConfig.model_fields["max_new_tokens"]
    assert field.default == EVENT_TOKEN_BUDGET


# ---------------------------------------------------------------- the compiled grammar


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return tiny_qwen_tokenizer(seed=0)


@pytest.fixture(scope="module")
def eos(tokenizer: Any) -> list[int]:
    return sorted(tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>"))


@pytest.fixture(scope="module")
def vocab_size(tokenizer: Any) -> int:
    return len(tokenizer) + 7  # the model's logits may be padded beyond the tokenizer


_GRAMMARS: dict[float, EventGrammar] = {}


@pytest.fixture(scope="module")
def grammar_at(tokenizer: Any, eos: list[int], vocab_size: int) -> Any:
    def get(gamma: float) -> EventGrammar:
        if gamma not in _GRAMMARS:
            _GRAMMARS[gamma] = EventGrammar.build(tokenizer, vocab_size, eos, gamma)
        return _GRAMMARS[gamma]

    return get


@pytest.fixture(scope="module")
def grammar(grammar_at: Any) -> EventGrammar:
    return grammar_at(0.5)


def accepts(grammar: EventGrammar, text: str, *, complete: bool = True) -> bool:
    """Whether the grammar takes `text` (as a whole document, or as a prefix with complete=False)."""
    matcher = grammar.matcher()
    return matcher.accept_string(text) and (matcher.is_completed() or not complete)


@pytest.mark.parametrize("doc", VALID_EVENTS, ids=range(len(VALID_EVENTS)))
def test_every_valid_event_is_accepted_and_complete_only_at_its_end(grammar: EventGrammar, doc: dict) -> None:
    validate_event(doc, 0.5)  # the fixture itself must be valid
    text = compact(doc)
    matcher = grammar.matcher()
    for i, ch in enumerate(text):
        assert not matcher.is_completed(), f"complete too early at {text[:i]!r}"
        assert matcher.accept_string(ch), f"rejected {text[: i + 1]!r}"
    assert matcher.is_completed()


def test_keys_must_follow_the_schema_order(grammar: EventGrammar) -> None:
    doc = event()
    reordered = {"count": doc["count"], **{k: v for k, v in doc.items() if k != "count"}}
    assert not accepts(grammar, compact(reordered))


_SEVERE = '{"event_type":"fall","count":2,"severity":"severe","level":1,'
_MINOR = '{"event_type":"fall","count":2,"severity":"minor","level":0,'
_OBJ = _SEVERE + '"score":1,"objects":[{'
_BOX = _OBJ + '"label":"person","bbox":['
_SUMMARY = _SEVERE + '"score":1,"objects":[],"summary":"a'


@pytest.mark.parametrize(
    ("prefix", "bad"),
    [
        ("{", ' "'),  # no whitespace
        ('{"event_type":', ' "'),
        ('{"event_type":"fall', "s"),  # not in the enum
        ('{"event_type":"fall","count":2', "1"),  # 21 > maximum
        ('{"event_type":"fall","count":0', "1"),  # leading zero
        ('{"event_type":"fall","count":', "-"),  # below minimum
        ('{"event_type":"fall","count":1', "."),  # integer
        ('{"event_type":"fall","count":2,"severity":"', "b"),
        ('{"event_type":"fall","count":2,"severity":"severe","level":', "0"),  # severe <=> level 1
        ('{"event_type":"fall","count":2,"severity":"minor","level":', "1"),
        (_SEVERE + '"score":0.', "4"),  # eq. 4, level 1: score >= gamma
        (_SEVERE + '"score":0', ","),
        (_MINOR + '"score":0.', "5"),  # eq. 4, level 0: score < gamma
        (_MINOR + '"score":', "1"),
        (_SEVERE + '"score":1.000', "1"),  # > maximum
        (_SEVERE + '"score":0.567891', "2"),  # at most DECIMALS fraction digits
        (_SEVERE + '"score":1', "e"),  # no exponents
        (_SEVERE + '"score":', "."),
        (_OBJ, '"b'),  # keys in order: label first
        (_OBJ + '"label":"', "c"),
        (_BOX + "1,2,3", "]"),  # minItems 4
        (_BOX + "1,2,3,4", ","),  # maxItems 4
        (_BOX + "5,2,6,100", "1"),  # <= 1000
        (_SUMMARY, "\\"),  # no escapes
        (_SUMMARY, "\n"),  # no control characters
        (_SUMMARY, "\t"),
        (_SUMMARY, "é"),  # ASCII only: one byte per character
        (_SUMMARY, "\x7f"),
        (_SUMMARY + '"}', "x"),  # nothing after the document
        (_SUMMARY + '"', ","),  # no extra keys
        ("", "["),
    ],
)
def test_invalid_continuations_are_rejected(grammar: EventGrammar, prefix: str, bad: str) -> None:
    assert accepts(grammar, prefix, complete=False)
    assert not accepts(grammar, prefix + bad, complete=False)


def test_nothing_longer_than_the_longest_event_is_accepted(grammar: EventGrammar) -> None:
    obj = {"label": "person", "bbox": [0, 0, 1, 1]}
    nine = compact(event(objects=[obj] * 8)).replace("}]", "}," + compact(obj) + "]", 1)
    for too_long in (
        nine,
        compact(event(summary="y" * 161)),
        compact(event(count=21)),
        compact(event(objects=[{"label": "person", "bbox": [0, 0, 1, 10000]}])),
        compact(event()).replace('"score":0.75', '"score":0.7500001'),
    ):
        assert not accepts(grammar, too_long)
    assert accepts(grammar, longest_event(0.5))


@pytest.mark.parametrize("gamma", GAMMAS)
def test_score_bounds_agree_with_check_eq4_at_the_boundary(grammar_at: Any, gamma: float) -> None:
    grammar = grammar_at(gamma)
    step = Decimal(1).scaleb(-DECIMALS)
    lowest_1 = Decimal(repr(gamma)).quantize(step, rounding=ROUND_CEILING)  # the least level-1 score
    highest_0 = lowest_1 - step

    def doc(level: int, score: Decimal) -> str:
        severity = "severe" if level else "minor"
        return f'{{"event_type":"fall","count":1,"severity":"{severity}","level":{level},"score":{score}'

    tail = ',"objects":[],"summary":""}'
    for level, score in ((1, lowest_1), (0, highest_0), (1, Decimal(1)), (0, Decimal(0))):
        assert accepts(grammar, doc(level, score) + tail), (level, score)
        check_eq4(level, float(score), gamma)
        validate_event(doc(level, score) + tail, gamma)
    assert not accepts(grammar, doc(1, highest_0), complete=False)
    assert not accepts(grammar, doc(0, lowest_1), complete=False)


def test_special_tokens_never_stand_for_their_text(grammar: EventGrammar, tokenizer: Any, eos: list[int]) -> None:
    # xgrammar's from_huggingface would let <|im_start|> spell "<|im_start|>" inside the summary.
    processor = grammar.processor()
    ids = [7]  # a prompt, then the summary's prefix token by token
    scores = processor(torch.tensor([ids]), torch.zeros(1, len(grammar.token_bytes)))
    for tid in tokenizer.encode(_SUMMARY, add_special_tokens=False):
        ids.append(tid)
        scores = processor(torch.tensor([ids]), torch.zeros(1, len(grammar.token_bytes)))
    assert processor.stuck_rows == 0
    allowed = set(torch.nonzero(torch.isfinite(scores[0])).squeeze(1).tolist())
    assert tokenizer.convert_tokens_to_ids("x") in allowed
    assert not allowed & (set(tokenizer.all_special_ids) | set(range(len(tokenizer), len(grammar.token_bytes))))


# ---------------------------------------------------------------- the logits processor


def _decode(
    grammar: EventGrammar, vocab_size: int, seed: int, *, sample: bool = False, top_k_valid: int | None = None
) -> tuple[list[int], int]:
    """A generate()-like loop over random logits; returns the new ids (no EOS) and the steps it took."""
    gen = torch.Generator().manual_seed(seed)
    processor = grammar.processor(top_k_valid)
    ids = [7, 7]  # a prompt
    stop = set(grammar.stop_ids)
    for step in range(event_token_budget(0.5) + 5):
        scores = processor(torch.tensor([ids]), torch.randn(1, vocab_size, generator=gen))
        allowed = torch.isfinite(scores[0])
        if top_k_valid is not None:
            assert int(allowed.sum()) <= top_k_valid
        if sample:
            nxt = int(torch.multinomial(torch.softmax(scores[0], dim=-1), 1, generator=gen))
        else:
            nxt = int(scores[0].argmax())
        if nxt in stop:
            assert processor.stuck_rows == 0
            return ids[2:], step + 1
        ids.append(nxt)
    raise AssertionError("the grammar never ended the document")


@pytest.mark.parametrize("gamma", GAMMAS)
def test_decoding_random_logits_yields_valid_events_within_the_budget(
    grammar_at: Any, vocab_size: int, tokenizer: Any, gamma: float
) -> None:
    grammar = grammar_at(gamma)
    levels = set()
    for seed in range(8):
        generated, steps = _decode(grammar, vocab_size, seed, sample=seed % 2 == 1, top_k_valid=5)
        text = tokenizer.decode(generated, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        assert text == grammar.text_of(generated)
        data = validate_event(text, gamma)
        assert list(data) == list(event_schema()["required"])
        assert steps <= event_token_budget(gamma)
        levels.add(data["level"])
    assert levels == {0, 1}


def test_the_longest_event_fits_the_budget_one_byte_per_token(grammar: EventGrammar, vocab_size: int) -> None:
    # The worst tokenisation: one token per byte. The budget still holds the whole document and its EOS.
    byte_token = {b: tid for tid, b in enumerate(grammar.token_bytes) if len(b) == 1}
    text = longest_event(0.5).encode()
    processor = grammar.processor()
    ids = [7]
    for i, byte in enumerate(text):
        scores = processor(torch.tensor([ids]), torch.zeros(1, vocab_size))
        assert bool(torch.isfinite(scores[0, byte_token[bytes([byte])]])), f"byte {i} of the longest event refused"
        assert not bool(torch.isfinite(scores[0, list(grammar.stop_ids)]).any())  # EOS only at completion
        ids.append(byte_token[bytes([byte])])
    scores = processor(torch.tensor([ids]), torch.zeros(1, vocab_size))
    # Complete: EOS and nothing else, the last of event_token_budget() tokens.
    assert sorted(torch.nonzero(torch.isfinite(scores[0])).squeeze(1).tolist()) == sorted(grammar.stop_ids)
    assert len(ids) - 1 + 1 == event_token_budget(0.5)


def test_eos_only_when_complete(grammar: EventGrammar, tokenizer: Any, vocab_size: int) -> None:
    processor = grammar.processor()
    scores = torch.zeros(1, vocab_size)
    scores[0, list(grammar.stop_ids)] = 100.0  # EOS is the model's favourite, but nothing is written yet
    out = processor(torch.tensor([[7]]), scores)
    assert torch.isinf(out[0, list(grammar.stop_ids)]).all()
    assert int(torch.isfinite(out[0]).sum()) > 0


def test_a_forced_invalid_token_only_allows_eos(grammar: EventGrammar, tokenizer: Any, vocab_size: int) -> None:
    processor = grammar.processor()
    processor(torch.tensor([[7]]), torch.zeros(1, vocab_size))
    out = processor(torch.tensor([[7, tokenizer.convert_tokens_to_ids("]")]]), torch.zeros(1, vocab_size))
    assert sorted(torch.nonzero(torch.isfinite(out[0])).squeeze(1).tolist()) == sorted(grammar.stop_ids)
    assert processor.stuck_rows == 1


def test_batch_rows_are_masked_apart(grammar: EventGrammar, tokenizer: Any, vocab_size: int) -> None:
    processor = grammar.processor()
    brace = tokenizer.convert_tokens_to_ids("{")
    processor(torch.tensor([[7], [7]]), torch.zeros(2, vocab_size))
    out = processor(torch.tensor([[7, brace], [7, tokenizer.convert_tokens_to_ids("x")]]), torch.zeros(2, vocab_size))
    assert processor.stuck_rows == 1  # row 1 left the grammar; row 0 goes on
    assert bool(torch.isfinite(out[0, tokenizer.convert_tokens_to_ids('"')]))
    assert sorted(torch.nonzero(torch.isfinite(out[1])).squeeze(1).tolist()) == sorted(grammar.stop_ids)


def test_processor_rejects_bad_arguments(grammar: EventGrammar) -> None:
    with pytest.raises(ValueError):
        grammar.processor(top_k_valid=0)


def test_random_walks_cover_both_levels_and_objects(grammar: EventGrammar, vocab_size: int) -> None:
    rng = random.Random(0)
    seen_objects = 0
    for _ in range(6):
        generated, _ = _decode(grammar, vocab_size, rng.randrange(10**6), sample=True, top_k_valid=16)
        seen_objects += len(json.loads(grammar.text_of(generated))["objects"])
    assert seen_objects > 0
