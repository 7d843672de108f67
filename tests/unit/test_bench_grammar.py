"""bench/grammar.py's reference loading and documents (the timings themselves run in make bench-grammar)."""

from __future__ import annotations

import pytest

from bench.grammar import REFERENCE_COMMIT, documents, load_reference
from services.models.structurers.base import event_schema, validate_event


def test_the_reference_decoder_loads_from_git_history_and_accepts_every_document() -> None:
    ref, source = load_reference()
    if ref is None:
        pytest.skip(source)  # a checkout without history: the bench prints the same skip
    assert REFERENCE_COMMIT[:12] in source
    grammar = ref.event_grammar(event_schema(), 0.5)
    texts = documents(6, 0.5)
    for text in texts:
        validate_event(text, 0.5)
        assert ref.is_complete_document(grammar, text), text


def test_a_missing_reference_is_a_reason_not_an_error() -> None:
    ref, reason = load_reference("0" * 40)
    assert ref is None and "git show" in reason
