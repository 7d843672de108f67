"""Schema-constrained decoding: the prefix validator, eq. 4 in decoding, and the logits processor."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from services.models.structurers.base import InvalidModelOutput, check_eq4, event_schema, validate_event
from services.models.structurers.constrained import (
    ArrayNode,
    JsonSchemaLogitsProcessor,
    LiteralNode,
    NumberNode,
    ObjectNode,
    ParseState,
    StringNode,
    TokenTable,
    UnsupportedSchema,
    compile_schema,
    event_grammar,
    grammar_alphabet,
    integer_node,
    is_complete_document,
    is_valid_prefix,
    number_node,
)

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
    event(summary="x" * 160),
    event(event_type="other", severity="none", level=0, score=0.0001, summary="Crash! (2 cars) at 5:30 - ok?"),
]


@pytest.fixture(scope="module")
def grammar() -> ObjectNode:
    return event_grammar(event_schema(), 0.5)


@pytest.mark.parametrize("doc", VALID_EVENTS, ids=range(len(VALID_EVENTS)))
def test_every_prefix_of_a_valid_event_is_accepted(grammar: ObjectNode, doc: dict[str, Any]) -> None:
    validate_event(doc, 0.5)  # the fixture itself must be valid
    text = compact(doc)
    state: ParseState | None = ParseState.start(grammar)
    for i, ch in enumerate(text):
        assert state is not None
        assert not state.complete, f"complete too early at {text[:i]!r}"
        state = state.feed(ch)
        assert state is not None, f"rejected {text[: i + 1]!r}"
    assert state is not None and state.complete
    assert state.chars_to_complete() == 0
    assert is_complete_document(grammar, text)


def test_keys_must_follow_the_required_order(grammar: ObjectNode) -> None:
    doc = event()
    reordered = {"count": doc["count"], **{k: v for k, v in doc.items() if k != "count"}}
    assert not is_valid_prefix(grammar, compact(reordered))
    assert list(event_schema()["required"]) == list(doc)


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
        (_SEVERE + '"score":0.5678', "9"),  # at most 4 decimals
        (_SEVERE + '"score":1', "e"),  # no exponents
        (_SEVERE + '"score":', "."),
        (_OBJ, '"b'),  # keys in order: label first
        (_OBJ + '"label":"', "c"),
        (_BOX + "1,2,3", "]"),  # minItems 4
        (_BOX + "1,2,3,4", ","),  # maxItems 4
        (_BOX + "500,2,", "4"),  # x2 >= x1
        (_BOX + "5,200,6,1", "9"),  # y2 >= y1
        (_BOX + "5,2,6,100", "1"),  # <= 1000
        (_SUMMARY, "\\"),  # no escapes
        (_SUMMARY, "\n"),
        (_SUMMARY + '"}', "x"),  # nothing after the document
        (_SUMMARY + '"', ","),  # no extra keys
        ("", "["),
    ],
)
def test_invalid_continuations_are_rejected(grammar: ObjectNode, prefix: str, bad: str) -> None:
    assert is_valid_prefix(grammar, prefix)
    assert not is_valid_prefix(grammar, prefix + bad)


def test_too_many_objects_and_too_long_summary_are_rejected(grammar: ObjectNode) -> None:
    obj = {"label": "person", "bbox": [0, 0, 1, 1]}
    head = compact(event(objects=[obj] * 8))
    nine = head.replace("}]", "}," + compact(obj) + "]", 1)
    assert not is_valid_prefix(grammar, nine)
    assert not is_valid_prefix(grammar, compact(event(summary="y" * 161)))
    assert is_complete_document(grammar, compact(event(summary="y" * 160)))


def test_level_is_forced_by_severity_and_score_range_by_level(grammar: ObjectNode) -> None:
    base = '{"event_type":"fall","count":1,"severity":'
    severe = ParseState.start(grammar).feed(base + '"severe","level":')
    minor = ParseState.start(grammar).feed(base + '"minor","level":')
    assert severe is not None and minor is not None
    assert severe.accepts("1") and not severe.accepts("0")
    assert minor.accepts("0") and not minor.accepts("1")
    s1 = severe.feed('1,"score":0')
    assert s1 is not None and not s1.complete
    assert s1.feed(".4") is None and s1.feed(".5") is not None and s1.feed(",") is None
    s0 = minor.feed('0,"score":')
    assert s0 is not None and s0.feed("1") is None and s0.feed("0.4999") is not None


@pytest.mark.parametrize("gamma", GAMMAS)
def test_score_bounds_agree_with_check_eq4_at_the_boundary(gamma: float) -> None:
    low = number_node(0.0, gamma, exclusive_max=True, decimals=4)
    high = number_node(gamma, 1.0, decimals=4)
    assert low.hi + 1 == high.lo  # the two ranges tile [0, 1] at 4 decimals
    for scaled, level in ((low.lo, 0), (low.hi, 0), (high.lo, 1), (high.hi, 1)):
        check_eq4(level, float(f"{scaled / 10**4:.4f}"), gamma)
    with pytest.raises(InvalidModelOutput):
        check_eq4(0, float(f"{high.lo / 10**4:.4f}"), gamma)


def _random_walk(grammar: ObjectNode, rng: random.Random, budget: int | None = None) -> str:
    """Random characters among the accepted ones; with a budget, only those that can still finish in it."""
    alphabet = sorted(grammar_alphabet(grammar))
    state = ParseState.start(grammar)
    out: list[str] = []
    while not state.complete:
        need = state.chars_to_complete()
        options = [(ch, nxt) for ch in alphabet if (nxt := state.feed(ch)) is not None]
        if budget is not None:
            options = [(ch, nxt) for ch, nxt in options if nxt.chars_to_complete() <= budget - len(out) - 1]
        assert options, f"stuck after {''.join(out)!r}"
        ch, state = rng.choice(options)
        # What the token budget relies on: one character shortens the shortest completion by at most one.
        assert state.chars_to_complete() >= need - 1
        out.append(ch)
        assert len(out) < 2000
    return "".join(out)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_random_walks_always_end_in_valid_events(gamma: float) -> None:
    grammar = event_grammar(event_schema(), gamma)
    rng = random.Random(int(gamma * 1e5))
    levels = set()
    for _ in range(12):
        text = _random_walk(grammar, rng)
        data = validate_event(text, gamma)
        assert list(data) == list(event_schema()["required"])
        assert text == compact(data) or json.loads(text) == data
        levels.add(data["level"])
    assert levels == {0, 1}


@pytest.mark.parametrize("budget", [95, 100, 140, 220])
def test_budgeted_random_walks_finish_within_the_budget(grammar: ObjectNode, budget: int) -> None:
    rng = random.Random(budget)
    for _ in range(6):
        text = _random_walk(grammar, rng, budget=budget)
        assert len(text) <= budget
        validate_event(text, 0.5)


def test_shortest_completion_is_consistent(grammar: ObjectNode) -> None:
    alphabet = grammar_alphabet(grammar)
    start = ParseState.start(grammar)
    shortest = start.shortest_completion(alphabet)
    assert len(shortest) == start.chars_to_complete()
    validate_event(shortest, 0.5)
    for prefix in ('{"event_type":"acc', '{"event_type":"fall","count":1', compact(event())[:150]):
        state = start.feed(prefix)
        assert state is not None
        rest = state.shortest_completion(alphabet)
        assert len(rest) == state.chars_to_complete()
        validate_event(prefix + rest, 0.5)


def test_bbox_lower_bound_drives_the_shortest_completion(grammar: ObjectNode) -> None:
    prefix = compact(event())[: compact(event()).index("[10,") + 1] + "987,5,"
    state = ParseState.start(grammar).feed(prefix)
    assert state is not None
    assert not state.accepts("9") or state.feed("9,") is None  # x2 must be >= 987
    rest = state.shortest_completion(grammar_alphabet(grammar))
    assert rest.startswith("987,5]")
    validate_event(prefix + rest, 0.5)


def test_compile_schema_subset_and_unsupported_features() -> None:
    node = compile_schema(
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["a", "b", "c"],
            "properties": {
                "a": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
                "b": {"type": "array", "items": {"type": "string", "maxLength": 2}, "maxItems": 2},
                "c": {"const": "k"},
                "d": {"type": "string"},  # optional: never written
            },
        }
    )
    assert isinstance(node, ObjectNode) and [k for k, _ in node.keys] == ["a", "b", "c"]
    a = node.child("a")
    assert isinstance(a, NumberNode) and (a.lo, a.hi) == (1, 9)
    assert isinstance(node.child("b"), ArrayNode) and isinstance(node.child("c"), LiteralNode)
    assert is_complete_document(node, '{"a":9,"b":["ab",""],"c":"k"}')
    assert not is_valid_prefix(node, '{"a":10')
    assert not is_valid_prefix(node, '{"a":1,"b":["abc"')
    for bad in (
        {"type": "object", "properties": {}},  # additionalProperties not false
        {"type": "string", "pattern": "x"},
        {"anyOf": [{"type": "string"}]},
        {"type": "array", "items": [{"type": "string"}]},
        {"type": "integer", "minimum": 3, "maximum": 2},
    ):
        with pytest.raises(UnsupportedSchema):
            compile_schema(bad)
    assert isinstance(compile_schema({"type": "string"}), StringNode)
    assert integer_node(-5, 5).lo == -5 and is_complete_document(integer_node(-5, 5), "-5")
    assert not is_valid_prefix(integer_node(-5, 5), "-6")


# ---------------------------------------------------------------- logits processor

try:
    import torch
except ImportError:  # the grammar tests above need no torch
    torch = None  # type: ignore[assignment]

requires_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


class FakeTokenizer:
    """A vocabulary of single characters, JSON chunks and junk, like a real BPE vocabulary has."""

    def __init__(self, grammar: ObjectNode) -> None:
        chunks = [
            '{"',
            'event_type":"',
            '":"',
            '","',
            '":',
            ',"',
            "fall",
            "person",
            "severe",
            "severity",
            "level",
            "score",
            '":0.',
            "0.",
            "00",
            "99",
            "objects",
            '":[{"',
            'label":"',
            '","bbox":[',
            "],",
            "]}",
            "}]",
            '"}',
            "summary",
            " the",
            " person",
            "\n",
            " ",
            "Ġ",
            "é",
            "<junk>",
            "",
        ]
        self.vocab = ["<|endoftext|>", "<|im_end|>", *sorted(grammar_alphabet(grammar)), *chunks]
        self.all_special_ids = [0, 1]

    def __len__(self) -> int:
        return len(self.vocab)

    def batch_decode(self, sequences: list[list[int]], **kwargs: Any) -> list[str]:
        return ["".join(self.vocab[i] for i in seq) for seq in sequences]


EOS = [0, 1]


@pytest.fixture(scope="module")
def table(grammar: ObjectNode) -> TokenTable:
    return TokenTable.from_tokenizer(FakeTokenizer(grammar), grammar_alphabet(grammar))


@pytest.mark.torch
@requires_torch
def test_token_table_keeps_only_spellable_tokens(table: TokenTable, grammar: ObjectNode) -> None:
    assert not table.missing_single_chars
    assert all(t and set(t) <= grammar_alphabet(grammar) for t in table.texts)
    assert "\n" not in table.texts and "é" not in table.texts and "<junk>" not in table.texts
    assert 0 not in table.by_id and 1 not in table.by_id


def _decode_loop(
    grammar: ObjectNode,
    table: TokenTable,
    vocab_size: int,
    seed: int,
    *,
    batch: int = 1,
    max_new_tokens: int | None = None,
    sample: bool = False,
    top_k_valid: int = 1,
) -> list[str]:
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.full((batch, 5), 7, dtype=torch.long)
    proc = JsonSchemaLogitsProcessor(grammar, table, EOS, top_k_valid=top_k_valid, max_new_tokens=max_new_tokens)
    ids = prompt
    finished = torch.zeros(batch, dtype=torch.bool)
    steps = max_new_tokens or 2000
    for _ in range(steps):
        scores = torch.randn(batch, vocab_size + 3, generator=gen)  # the model's vocab may exceed the tokenizer's
        masked = proc(ids, scores.clone())
        for row in range(batch):
            if finished[row]:
                continue
            assert int(torch.isfinite(masked[row]).sum()) <= max(top_k_valid, len(EOS))
        if sample:
            probs = torch.softmax(masked, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=gen).squeeze(1)
        else:
            nxt = masked.argmax(dim=-1)
        nxt = torch.where(finished, torch.zeros_like(nxt), nxt)
        finished |= torch.isin(nxt, torch.tensor(EOS))
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        if bool(finished.all()):
            break
    texts = []
    for row in range(batch):
        toks = [t for t in ids[row, 5:].tolist() if t not in EOS]
        texts.append(proc.text_of(toks))
    assert proc.stuck_rows == 0
    return texts


@pytest.mark.torch
@requires_torch
@pytest.mark.parametrize("seed", range(6))
def test_greedy_decoding_with_random_logits_yields_valid_events(
    grammar: ObjectNode, table: TokenTable, seed: int
) -> None:
    vocab = len(FakeTokenizer(grammar))
    for text in _decode_loop(grammar, table, vocab, seed, batch=2):
        validate_event(text, 0.5)


@pytest.mark.torch
@requires_torch
@pytest.mark.parametrize("max_new_tokens", [95, 110, 160])
def test_token_budget_is_never_exceeded(grammar: ObjectNode, table: TokenTable, max_new_tokens: int) -> None:
    vocab = len(FakeTokenizer(grammar))
    for seed in range(4):
        for text in _decode_loop(
            grammar, table, vocab, seed, max_new_tokens=max_new_tokens, sample=True, top_k_valid=5
        ):
            validate_event(text, 0.5)


@pytest.mark.torch
@requires_torch
def test_eos_only_when_complete_and_then_only_eos(grammar: ObjectNode, table: TokenTable) -> None:
    vocab = len(FakeTokenizer(grammar)) + 3
    proc = JsonSchemaLogitsProcessor(grammar, table, EOS, top_k_valid=vocab)
    prompt = [9, 9]
    # EOS has the highest logit but the document has not started.
    scores = torch.zeros(1, vocab)
    scores[0, EOS] = 100.0
    out = proc(torch.tensor([prompt]), scores)
    assert torch.isinf(out[0, EOS]).all()
    assert int(torch.isfinite(out[0]).sum()) > 0
    # Feed a complete document character by character, then only EOS may follow.
    ids = list(prompt)
    char_id = {t: table.id_list[i] for i, t in enumerate(table.texts) if len(t) == 1}
    for ch in compact(event()):
        ids.append(char_id[ch])
    out = proc(torch.tensor([ids]), torch.zeros(1, vocab))
    assert sorted(torch.nonzero(torch.isfinite(out[0])).squeeze(1).tolist()) == EOS


@pytest.mark.torch
@requires_torch
def test_a_forced_invalid_token_only_allows_eos(grammar: ObjectNode, table: TokenTable) -> None:
    vocab = len(FakeTokenizer(grammar)) + 3
    char_id = {t: table.id_list[i] for i, t in enumerate(table.texts) if len(t) == 1}
    proc = JsonSchemaLogitsProcessor(grammar, table, EOS, prompt_length=1)
    out = proc(torch.tensor([[9, char_id["]"]]]), torch.zeros(1, vocab))
    assert sorted(torch.nonzero(torch.isfinite(out[0])).squeeze(1).tolist()) == EOS


@pytest.mark.torch
@requires_torch
def test_processor_rejects_bad_arguments(grammar: ObjectNode, table: TokenTable) -> None:
    with pytest.raises(ValueError):
        JsonSchemaLogitsProcessor(grammar, table, [])
    with pytest.raises(ValueError):
        JsonSchemaLogitsProcessor(grammar, table, EOS, top_k_valid=0)
    # A budget below the shortest document cannot be enforced one character per token: it is dropped.
    assert JsonSchemaLogitsProcessor(grammar, table, EOS, max_new_tokens=20).max_new_tokens is None
