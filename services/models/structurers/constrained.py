"""Schema-constrained decoding: the MLLM can only write event JSON that the schema accepts (DAT eq. 3-4).

Two parts:

* a character-level incremental prefix validator for the JSON-Schema subset the
  event schema uses (objects with fixed, ordered keys; string and integer enums;
  bounded integers and numbers with a bounded number of decimals; arrays with
  min/max items; strings with a max length over a safe character set). Output is
  compact JSON: no whitespace, keys in the schema's ``required`` order. Parser
  states are immutable tuples of frames, so trying a token never disturbs the
  state it started from.
* :class:`JsonSchemaLogitsProcessor`, a transformers-compatible logits processor
  that keeps only tokens whose text leaves the output a valid prefix, allows EOS
  only once the document is complete, and never lets the document become longer
  than the remaining token budget can finish.

Cross-field rules are "refiners": the node for a key (or array item) may depend on
the values already written. :func:`event_grammar` uses them for eq. 4 (score range
follows level), level 1 <=> severity "severe", and bbox x2 >= x1, y2 >= y1.
"""

from __future__ import annotations

import json
import logging
import math
import string
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# No quote, backslash or control characters: strings never need escapes.
SAFE_STRING_CHARS: frozenset[str] = frozenset(string.ascii_letters + string.digits + " .,;:!?'()-_/%+&#@")
DEFAULT_MAX_DECIMALS = 4


class UnsupportedSchema(ValueError):
    """The schema uses a JSON-Schema feature the constrained decoder does not implement."""


# ---------------------------------------------------------------- grammar nodes


class Node:
    """A value the grammar can produce."""

    __slots__ = ()


@dataclass(frozen=True)
class LiteralNode(Node):
    """One of a fixed set of JSON texts (string or integer enums)."""

    literals: tuple[str, ...]


@dataclass(frozen=True)
class NumberNode(Node):
    """A decimal in [lo, hi] * 10**-decimals, written with at most `decimals` fraction digits, no exponent."""

    lo: int
    hi: int
    decimals: int
    integer: bool

    @property
    def scale(self) -> int:
        """Units per 1.0."""
        return 10**self.decimals


@dataclass(frozen=True)
class StringNode(Node):
    """A string of min_length..max_length characters from charset (so no escapes are ever needed)."""

    max_length: int
    charset: frozenset[str]
    min_length: int = 0


# Refiners return the node to use for a key / item given the values already written.
ObjectRefiner = Callable[[str, Node, Mapping[str, Any]], Node]
ArrayRefiner = Callable[[int, Node, Sequence[Any]], Node]


@dataclass(frozen=True)
class ArrayNode(Node):
    """An array of min_items..max_items items."""

    item: Node
    min_items: int = 0
    max_items: int | None = None
    refine: ArrayRefiner | None = None

    def item_node(self, index: int, items: Sequence[Any]) -> Node:
        """The node for item `index`, refined by the items before it."""
        return self.refine(index, self.item, items) if self.refine else self.item


@dataclass(frozen=True)
class ObjectNode(Node):
    """An object whose keys are written in this fixed order, all of them, nothing else."""

    keys: tuple[tuple[str, Node], ...]
    refine: ObjectRefiner | None = None

    def value_node(self, index: int, values: Mapping[str, Any]) -> Node:
        """The node for key number `index`, refined by the values before it."""
        key, node = self.keys[index]
        return self.refine(key, node, values) if self.refine else node

    def child(self, key: str) -> Node:
        """The (unrefined) node of `key`."""
        for k, n in self.keys:
            if k == key:
                return n
        raise KeyError(key)

    def with_child(self, key: str, node: Node) -> ObjectNode:
        """A copy with `key`'s node replaced."""
        if key not in dict(self.keys):
            raise KeyError(key)
        return replace(self, keys=tuple((k, node if k == key else n) for k, n in self.keys))


def integer_node(lo: int, hi: int) -> NumberNode:
    """Integers in [lo, hi]."""
    if lo > hi:
        raise UnsupportedSchema(f"empty integer range [{lo}, {hi}]")
    return NumberNode(lo=lo, hi=hi, decimals=0, integer=True)


def number_node(
    minimum: float,
    maximum: float,
    *,
    exclusive_min: bool = False,
    exclusive_max: bool = False,
    decimals: int = DEFAULT_MAX_DECIMALS,
) -> NumberNode:
    """Decimals in the given range whose float value also passes float comparisons against the bounds."""
    s = 10**decimals
    lo = math.ceil(Fraction(minimum) * s)
    hi = math.floor(Fraction(maximum) * s)
    # Validators compare float(text) with float bounds; rounding is monotone, so getting both ends
    # right makes every value in between right too.

    def above_min(v: int) -> bool:
        f = float(Fraction(v, s))
        return f > minimum if exclusive_min else f >= minimum

    def below_max(v: int) -> bool:
        f = float(Fraction(v, s))
        return f < maximum if exclusive_max else f <= maximum

    # Move each bound to exactly where the float comparison flips (a step or two at most).
    while not above_min(lo):
        lo += 1
    while above_min(lo - 1):
        lo -= 1
    while not below_max(hi):
        hi -= 1
    while below_max(hi + 1):
        hi += 1
    if lo > hi:
        raise UnsupportedSchema(f"no {decimals}-decimal number in the range {minimum}..{maximum}")
    return NumberNode(lo=lo, hi=hi, decimals=decimals, integer=False)


def compile_schema(
    schema: Mapping[str, Any],
    *,
    max_decimals: int = DEFAULT_MAX_DECIMALS,
    string_charset: frozenset[str] = SAFE_STRING_CHARS,
    default_max_length: int = 256,
    default_number_bound: float = 1e6,
) -> Node:
    """Compile the supported JSON-Schema subset into grammar nodes (keys not in `required` are never written)."""

    def compile_node(sub: Mapping[str, Any]) -> Node:
        if "enum" in sub:
            return LiteralNode(tuple(json.dumps(v, separators=(",", ":")) for v in sub["enum"]))
        if "const" in sub:
            return LiteralNode((json.dumps(sub["const"], separators=(",", ":")),))
        kind = sub.get("type")
        if kind == "object":
            if sub.get("additionalProperties", True) is not False:
                raise UnsupportedSchema("objects need additionalProperties: false")
            props: Mapping[str, Any] = sub.get("properties", {})
            required: Sequence[str] = sub.get("required", [])
            missing = [k for k in required if k not in props]
            if missing:
                raise UnsupportedSchema(f"required keys without properties: {missing}")
            return ObjectNode(tuple((k, compile_node(props[k])) for k in required))
        if kind == "array":
            items = sub.get("items")
            if not isinstance(items, Mapping):
                raise UnsupportedSchema("arrays need a single 'items' schema")
            return ArrayNode(
                item=compile_node(items),
                min_items=int(sub.get("minItems", 0)),
                max_items=int(sub["maxItems"]) if "maxItems" in sub else None,
            )
        if kind == "string":
            if "pattern" in sub or "format" in sub:
                raise UnsupportedSchema("string pattern/format is not supported")
            return StringNode(
                max_length=int(sub.get("maxLength", default_max_length)),
                charset=string_charset,
                min_length=int(sub.get("minLength", 0)),
            )
        if kind in ("integer", "number"):
            # The tighter of minimum / exclusiveMinimum (and of maximum / exclusiveMaximum) wins.
            lo_v, ex_lo = float(sub.get("minimum", -default_number_bound)), False
            if "exclusiveMinimum" in sub and sub["exclusiveMinimum"] >= lo_v:
                lo_v, ex_lo = float(sub["exclusiveMinimum"]), True
            hi_v, ex_hi = float(sub.get("maximum", default_number_bound)), False
            if "exclusiveMaximum" in sub and sub["exclusiveMaximum"] <= hi_v:
                hi_v, ex_hi = float(sub["exclusiveMaximum"]), True
            if kind == "integer":
                lo_i = math.floor(lo_v) + 1 if ex_lo else math.ceil(lo_v)
                hi_i = math.ceil(hi_v) - 1 if ex_hi else math.floor(hi_v)
                return integer_node(lo_i, hi_i)
            return number_node(lo_v, hi_v, exclusive_min=ex_lo, exclusive_max=ex_hi, decimals=max_decimals)
        raise UnsupportedSchema(f"unsupported schema: {dict(sub)!r}")

    return compile_node(schema)


def event_grammar(
    schema: Mapping[str, Any],
    gamma: float,
    *,
    max_decimals: int = DEFAULT_MAX_DECIMALS,
    string_charset: frozenset[str] = SAFE_STRING_CHARS,
) -> ObjectNode:
    """The event schema's grammar plus eq. 4, level 1 <=> 'severe', and ordered bbox corners."""
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma must be in (0, 1), got {gamma}")
    root = compile_schema(schema, max_decimals=max_decimals, string_charset=string_charset)
    if not isinstance(root, ObjectNode):
        raise UnsupportedSchema("the event schema must be an object")
    score = root.child("score")
    if not isinstance(score, NumberNode):
        raise UnsupportedSchema("score must be a number")
    lo = score.lo / score.scale
    hi = score.hi / score.scale
    score_by_level = {
        0: number_node(max(lo, 0.0), min(gamma, hi), exclusive_max=True, decimals=max_decimals),
        1: number_node(max(gamma, lo), min(1.0, hi), decimals=max_decimals),
    }

    def refine_event(key: str, node: Node, values: Mapping[str, Any]) -> Node:
        # Severity precedes level in key order, so severity decides level; level then bounds score.
        if key == "level" and "severity" in values:
            return LiteralNode(("1",) if values["severity"] == "severe" else ("0",))
        if key == "score" and values.get("level") in score_by_level:
            return score_by_level[values["level"]]
        return node

    def refine_bbox(index: int, node: Node, items: Sequence[Any]) -> Node:
        # [x1, y1, x2, y2]: x2 >= x1 and y2 >= y1.
        if index >= 2 and isinstance(node, NumberNode) and len(items) > index - 2:
            return replace(node, lo=max(node.lo, int(items[index - 2])))
        return node

    objects = root.child("objects")
    if isinstance(objects, ArrayNode) and isinstance(objects.item, ObjectNode):
        obj = objects.item
        bbox = obj.child("bbox")
        if isinstance(bbox, ArrayNode):
            obj = obj.with_child("bbox", replace(bbox, refine=refine_bbox))
        root = root.with_child("objects", replace(objects, item=obj))
    return replace(root, refine=refine_event)


def grammar_alphabet(node: Node) -> frozenset[str]:
    """Every character the grammar can ever accept."""
    if isinstance(node, LiteralNode):
        return frozenset("".join(node.literals))
    if isinstance(node, NumberNode):
        chars = set(string.digits)
        if node.lo < 0:
            chars.add("-")
        if node.decimals:
            chars.add(".")
        return frozenset(chars)
    if isinstance(node, StringNode):
        return node.charset | {'"'}
    if isinstance(node, ArrayNode):
        return grammar_alphabet(node.item) | set("[],")
    if isinstance(node, ObjectNode):
        out: set[str] = set("{},:")
        for key, child in node.keys:
            out |= set(json.dumps(key))
            out |= grammar_alphabet(child)
        return frozenset(out)
    raise TypeError(type(node))


# ---------------------------------------------------------------- parser frames

# Frame.feed results: (_STAY, new_frame) | (_CLOSE, value) | (_PUSH, new_parent, child_node) | None
_STAY, _CLOSE, _PUSH = 0, 1, 2
_Step = tuple[Any, ...]
Witness = tuple[int, Any]  # (characters still needed, the value they produce)


class _Frame:
    __slots__ = ()

    def feed(self, ch: str) -> _Step | None:
        raise NotImplementedError

    def can_end(self) -> bool:
        """A complete value that could still be extended (numbers, prefix-ambiguous literals)."""
        return False

    def value(self) -> Any:
        raise NotImplementedError

    def deliver(self, value: Any) -> _Frame:
        raise NotImplementedError

    def finish(self, child: Witness | None) -> Witness:
        """The shortest way to complete this frame: length and resulting value."""
        raise NotImplementedError


class _LiteralFrame(_Frame):
    __slots__ = ("node", "text")

    def __init__(self, node: LiteralNode, text: str = "") -> None:
        self.node = node
        self.text = text

    def feed(self, ch: str) -> _Step | None:
        t = self.text + ch
        matching = [lit for lit in self.node.literals if lit.startswith(t)]
        if not matching:
            return None
        if t in matching and len(matching) == 1:
            return (_CLOSE, json.loads(t))
        return (_STAY, _LiteralFrame(self.node, t))

    def can_end(self) -> bool:
        return self.text in self.node.literals

    def value(self) -> Any:
        return json.loads(self.text)

    def finish(self, child: Witness | None) -> Witness:
        best = min((lit for lit in self.node.literals if lit.startswith(self.text)), key=len)
        return len(best) - len(self.text), json.loads(best)


def _number_parts(text: str) -> tuple[bool, str, str | None]:
    neg = text.startswith("-")
    body = text[1:] if neg else text
    ip, dot, fp = body.partition(".")
    return neg, ip, (fp if dot else None)


def _number_feasible(node: NumberNode, text: str) -> bool:
    """Whether some completion of `text` is a number inside the node's range."""
    neg, ip, fp = _number_parts(text)
    lo, hi = (-node.hi, -node.lo) if neg else (node.lo, node.hi)
    lo = max(lo, 0)
    if lo > hi:
        return False
    if ip == "":
        return True
    s = node.scale
    p = int(ip)
    if fp is not None:
        m = len(fp)
        v = p * 10**m + (int(fp) if fp else 0)
        a = v * 10 ** (node.decimals - m)
        b = (v + 1) * 10 ** (node.decimals - m) - 1
        return a <= hi and b >= lo
    k = 0
    while True:
        a = p * 10**k * s
        if a > hi:
            return False
        if (p + 1) * 10**k * s - 1 >= lo:
            return True
        if ip == "0":
            return False  # no leading zeros: "0" cannot grow more integer digits
        k += 1


def _number_scaled(node: NumberNode, text: str) -> int | None:
    neg, ip, fp = _number_parts(text)
    if ip == "" or fp == "":
        return None
    v = int(ip) * node.scale + (int(fp.ljust(node.decimals, "0")) if fp else 0)
    return -v if neg else v


@lru_cache(maxsize=65536)
def _shortest_number_suffix(node: NumberNode, text: str) -> str:
    """Breadth-first: the shortest suffix that makes `text` a complete in-range number."""
    queue: deque[str] = deque([""])
    seen = {""}
    while queue:
        suffix = queue.popleft()
        t = text + suffix
        v = _number_scaled(node, t)
        if v is not None and node.lo <= v <= node.hi:
            return suffix
        for ch in "0123456789.-":
            if _NumberFrame.syntax_ok(node, t, ch) and _number_feasible(node, t + ch):
                nxt = suffix + ch
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
    raise UnsupportedSchema(f"no completion of {text!r} within the number range")


class _NumberFrame(_Frame):
    __slots__ = ("node", "text")

    def __init__(self, node: NumberNode, text: str = "") -> None:
        self.node = node
        self.text = text

    @staticmethod
    def syntax_ok(node: NumberNode, text: str, ch: str) -> bool:
        _, ip, fp = _number_parts(text)
        if ch == "-":
            return text == "" and node.lo < 0
        if ch == ".":
            return node.decimals > 0 and ip != "" and fp is None
        if ch.isdigit() and ch.isascii():
            if fp is not None:
                return len(fp) < node.decimals
            return ip != "0"  # JSON forbids leading zeros
        return False

    def feed(self, ch: str) -> _Step | None:
        if not self.syntax_ok(self.node, self.text, ch):
            return None
        t = self.text + ch
        if not _number_feasible(self.node, t):
            return None
        return (_STAY, _NumberFrame(self.node, t))

    def can_end(self) -> bool:
        v = _number_scaled(self.node, self.text)
        return v is not None and self.node.lo <= v <= self.node.hi

    def value(self) -> Any:
        return int(self.text) if self.node.integer else float(self.text)

    def finish(self, child: Witness | None) -> Witness:
        suffix = _shortest_number_suffix(self.node, self.text)
        t = self.text + suffix
        return len(suffix), (int(t) if self.node.integer else float(t))


class _StringFrame(_Frame):
    __slots__ = ("content", "node", "opened")

    def __init__(self, node: StringNode, opened: bool = False, content: str = "") -> None:
        self.node = node
        self.opened = opened
        self.content = content

    def feed(self, ch: str) -> _Step | None:
        if not self.opened:
            return (_STAY, _StringFrame(self.node, True, "")) if ch == '"' else None
        if ch == '"':
            return (_CLOSE, self.content) if len(self.content) >= self.node.min_length else None
        if ch in self.node.charset and len(self.content) < self.node.max_length:
            return (_STAY, _StringFrame(self.node, True, self.content + ch))
        return None

    def finish(self, child: Witness | None) -> Witness:
        pad = max(0, self.node.min_length - len(self.content))
        filler = min(self.node.charset) * pad if pad else ""
        return (0 if self.opened else 1) + pad + 1, self.content + filler


# Container phases.
_OPEN, _KEY, _VSTART, _VALUE, _AFTER = range(5)


class _ArrayFrame(_Frame):
    __slots__ = ("items", "node", "phase")

    def __init__(self, node: ArrayNode, phase: int = _OPEN, items: tuple[Any, ...] = ()) -> None:
        self.node = node
        self.phase = phase
        self.items = items

    def _room(self) -> bool:
        return self.node.max_items is None or len(self.items) < self.node.max_items

    def feed(self, ch: str) -> _Step | None:
        n = self.node
        if self.phase == _OPEN:
            return (_STAY, _ArrayFrame(n, _VSTART, ())) if ch == "[" else None
        if self.phase == _VSTART:
            # After "[" (first item or "]") or after "," (an item must follow).
            if ch == "]" and not self.items and n.min_items == 0:
                return (_CLOSE, [])
            if not self._room():
                return None
            return (_PUSH, _ArrayFrame(n, _VALUE, self.items), n.item_node(len(self.items), self.items))
        if self.phase == _AFTER:
            if ch == "," and self._room():
                return (_STAY, _ArrayFrame(n, _VSTART, self.items))
            if ch == "]" and len(self.items) >= n.min_items:
                return (_CLOSE, list(self.items))
        return None

    def deliver(self, value: Any) -> _Frame:
        return _ArrayFrame(self.node, _AFTER, (*self.items, value))

    def finish(self, child: Witness | None) -> Witness:
        n = self.node
        items = list(self.items)
        total = 1 if self.phase == _OPEN else 0
        if self.phase == _VALUE:
            assert child is not None
            total += child[0]
            items.append(child[1])
        elif self.phase == _VSTART and items:
            # A comma is already written: an item must follow.
            length, value = _witness(n.item_node(len(items), items))
            total += length
            items.append(value)
        while len(items) < n.min_items:
            length, value = _witness(n.item_node(len(items), items))
            total += length + (1 if items else 0)
            items.append(value)
        return total + 1, items


class _ObjectFrame(_Frame):
    __slots__ = ("index", "node", "phase", "pos", "values")

    def __init__(
        self,
        node: ObjectNode,
        phase: int = _OPEN,
        index: int = 0,
        pos: int = 0,
        values: tuple[tuple[str, Any], ...] = (),
    ) -> None:
        self.node = node
        self.phase = phase
        self.index = index
        self.pos = pos
        self.values = values

    def feed(self, ch: str) -> _Step | None:
        n = self.node
        if self.phase == _OPEN:
            if ch != "{":
                return None
            return (_STAY, _ObjectFrame(n, _KEY if n.keys else _AFTER, 0, 0, ()))
        if self.phase == _KEY:
            key_text = _key_text(n.keys[self.index][0])
            if ch != key_text[self.pos]:
                return None
            if self.pos + 1 == len(key_text):
                return (_STAY, _ObjectFrame(n, _VSTART, self.index, 0, self.values))
            return (_STAY, _ObjectFrame(n, _KEY, self.index, self.pos + 1, self.values))
        if self.phase == _VSTART:
            child = n.value_node(self.index, dict(self.values))
            return (_PUSH, _ObjectFrame(n, _VALUE, self.index, 0, self.values), child)
        if self.phase == _AFTER:
            if self.index < len(n.keys):
                return (_STAY, _ObjectFrame(n, _KEY, self.index, 0, self.values)) if ch == "," else None
            return (_CLOSE, dict(self.values)) if ch == "}" else None
        return None

    def deliver(self, value: Any) -> _Frame:
        key = self.node.keys[self.index][0]
        return _ObjectFrame(self.node, _AFTER, self.index + 1, 0, (*self.values, (key, value)))

    def finish(self, child: Witness | None) -> Witness:
        n = self.node
        values = dict(self.values)
        index = self.index
        total = 0
        if self.phase == _OPEN:
            total += 1
        if self.phase in (_OPEN, _KEY, _VSTART) and n.keys:
            key_text = _key_text(n.keys[index][0])
            done = len(key_text) if self.phase == _VSTART else self.pos
            total += len(key_text) - done
            length, value = _witness(n.value_node(index, values))
            total += length
            values[n.keys[index][0]] = value
            index += 1
        elif self.phase == _VALUE:
            assert child is not None
            total += child[0]
            values[n.keys[index][0]] = child[1]
            index += 1
        for j in range(index, len(n.keys)):
            length, value = _witness(n.value_node(j, values))
            total += 1 + len(_key_text(n.keys[j][0])) + length
            values[n.keys[j][0]] = value
        return total + 1, values


@lru_cache(maxsize=1024)
def _key_text(key: str) -> str:
    return json.dumps(key) + ":"


def _new_frame(node: Node) -> _Frame:
    if isinstance(node, LiteralNode):
        return _LiteralFrame(node)
    if isinstance(node, NumberNode):
        return _NumberFrame(node)
    if isinstance(node, StringNode):
        return _StringFrame(node)
    if isinstance(node, ArrayNode):
        return _ArrayFrame(node)
    if isinstance(node, ObjectNode):
        return _ObjectFrame(node)
    raise TypeError(type(node))


def _witness(node: Node) -> Witness:
    return _new_frame(node).finish(None)


# ---------------------------------------------------------------- parser state


class ParseState:
    """An immutable point in a document: feed characters to get new states; the original is untouched."""

    __slots__ = ("_stack",)

    def __init__(self, stack: tuple[_Frame, ...]) -> None:
        self._stack = stack

    @classmethod
    def start(cls, grammar: Node) -> ParseState:
        """The state before the first character."""
        return cls((_new_frame(grammar),))

    def feed(self, text: str) -> ParseState | None:
        """The state after `text`, or None if `text` makes the output an invalid prefix."""
        stack = self._stack
        for ch in text:
            nxt = _feed_char(stack, ch)
            if nxt is None:
                return None
            stack = nxt
        return ParseState(stack)

    def accepts(self, ch: str) -> bool:
        """Whether one more character `ch` keeps the prefix valid."""
        return _feed_char(self._stack, ch) is not None

    @property
    def complete(self) -> bool:
        """Whether the text so far is a whole valid document."""
        s = self._stack
        return not s or (len(s) == 1 and s[0].can_end())

    def chars_to_complete(self) -> int:
        """Length of the shortest completion (0 when complete)."""
        if self.complete:
            return 0
        witness: Witness | None = None
        for frame in reversed(self._stack):
            witness = frame.finish(witness)
        assert witness is not None
        return witness[0]

    def shortest_completion(self, alphabet: frozenset[str]) -> str:
        """A shortest completion, one character at a time (each must shorten the rest by exactly one)."""
        out: list[str] = []
        state: ParseState = self
        while not state.complete:
            need = state.chars_to_complete()
            for ch in sorted(alphabet):
                nxt = state.feed(ch)
                if nxt is not None and nxt.chars_to_complete() == need - 1:
                    out.append(ch)
                    state = nxt
                    break
            else:
                raise RuntimeError("no character shortens the completion")
        return "".join(out)


def _feed_char(stack: tuple[_Frame, ...], ch: str) -> tuple[_Frame, ...] | None:
    while stack:
        top = stack[-1]
        step = top.feed(ch)
        if step is not None:
            if step[0] == _STAY:
                return (*stack[:-1], step[1])
            if step[0] == _CLOSE:
                return _deliver(stack[:-1], step[1])
            parent, child = step[1], _new_frame(step[2])
            cstep = child.feed(ch)
            if cstep is None:
                return None
            if cstep[0] == _STAY:
                return (*stack[:-1], parent, cstep[1])
            if cstep[0] == _CLOSE:
                return _deliver((*stack[:-1], parent), cstep[1])
            raise AssertionError("a value cannot push a child on its first character")
        if not top.can_end():
            return None
        # A number (or ambiguous literal) ends here; the character belongs to its parent.
        stack = _deliver(stack[:-1], top.value())
    return None


def _deliver(stack: tuple[_Frame, ...], value: Any) -> tuple[_Frame, ...]:
    if not stack:
        return ()
    return (*stack[:-1], stack[-1].deliver(value))


def is_valid_prefix(grammar: Node, text: str) -> bool:
    """Whether `text` can be extended to a document of `grammar`."""
    return ParseState.start(grammar).feed(text) is not None


def is_complete_document(grammar: Node, text: str) -> bool:
    """Whether `text` is a whole document of `grammar`."""
    state = ParseState.start(grammar).feed(text)
    return state is not None and state.complete


# ---------------------------------------------------------------- logits processor


class TokenTable:
    """The text of every usable token, decoded once; tokens with characters the grammar never accepts are dropped."""

    def __init__(self, texts: Mapping[int, str], alphabet: frozenset[str]) -> None:
        import torch  # the grammar itself needs no torch; only decoding does

        self.alphabet = tuple(sorted(alphabet))
        char_index = {c: i for i, c in enumerate(self.alphabet)}
        kept = sorted((tid, t) for tid, t in texts.items() if t and all(c in alphabet for c in t))
        self.ids = torch.tensor([tid for tid, _ in kept], dtype=torch.long)
        self.id_list = [tid for tid, _ in kept]
        self.texts = [t for _, t in kept]
        self.first_char = torch.tensor([char_index[t[0]] for t in self.texts], dtype=torch.long)
        self.by_id = dict(kept)
        singles = {t for t in self.texts if len(t) == 1}
        # The token budget assumes every character can be written as a token of its own.
        self.missing_single_chars = frozenset(alphabet - singles)
        if self.missing_single_chars:
            log.warning(
                "vocabulary lacks single-character tokens for %r: budget enforcement is approximate",
                "".join(sorted(self.missing_single_chars)),
            )

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, alphabet: frozenset[str]) -> TokenTable:
        """Decode each id of a Hugging Face tokenizer (len, all_special_ids, batch_decode) once; skip specials."""
        special = set(tokenizer.all_special_ids)
        ids = [tid for tid in range(len(tokenizer)) if tid not in special]
        decoded = tokenizer.batch_decode(
            [[tid] for tid in ids], skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return cls(dict(zip(ids, decoded, strict=True)), alphabet)


class JsonSchemaLogitsProcessor:
    """Masks logits so generation can only write a document of `grammar`, then EOS.

    Per step and row: compute which characters the state accepts, take the tokens
    starting with one of them, walk them in descending logit order and keep the
    first `top_k_valid` whose whole text is a valid continuation (and, with a
    token budget, still leaves room to finish: the shortest completion, at one
    token per character, must fit in the tokens left). Everything else is -inf.
    Works with beam search too: states are keyed by the generated ids.
    """

    def __init__(
        self,
        grammar: Node,
        table: TokenTable,
        eos_token_ids: Sequence[int],
        *,
        top_k_valid: int = 1,
        max_new_tokens: int | None = None,
        prompt_length: int | None = None,
    ) -> None:
        if not eos_token_ids:
            raise ValueError("need at least one EOS token id")
        if top_k_valid < 1:
            raise ValueError("top_k_valid must be >= 1")
        self.grammar = grammar
        self.table = table
        self.eos_token_ids = sorted(set(eos_token_ids))
        self.top_k_valid = top_k_valid
        self.max_new_tokens = max_new_tokens
        self.prompt_length = prompt_length
        self.stuck_rows = 0
        self.first_chunk = max(64, 4 * top_k_valid)
        self._start = ParseState.start(grammar)
        self._states: dict[tuple[int, ...], ParseState | None] = {(): self._start}
        self._eos_set = frozenset(self.eos_token_ids)
        self.min_document_chars = self._start.chars_to_complete()
        if max_new_tokens is not None and max_new_tokens < self.min_document_chars:
            # The budget assumes one character per token; below this it would block every token.
            log.warning(
                "max_new_tokens=%d is below the shortest document (%d chars): budget not enforced",
                max_new_tokens,
                self.min_document_chars,
            )
            self.max_new_tokens = None

    def text_of(self, token_ids: Sequence[int]) -> str:
        """The text the processor believes these generated ids spell (EOS and unknown ids skipped)."""
        return "".join(self.table.by_id.get(t, "") for t in token_ids)

    def _state_for(self, key: tuple[int, ...]) -> ParseState | None:
        # Normally the previous step's state is cached and one token is fed; after a
        # cache miss (e.g. a processor reused across calls) replay from the longest known prefix.
        n = len(key)
        while n > 0 and key[:n] not in self._states:
            n -= 1
        state = self._states.get(key[:n], self._start) if n else self._start
        for tok in key[n:]:
            if state is None:
                return None
            text = self.table.by_id.get(tok)
            state = state.feed(text) if text is not None else None
        return state

    def allowed(self, state: ParseState, scores: torch.Tensor, generated: int) -> list[int]:
        """The token ids to keep for one row (EOS ids when the document is complete)."""
        if state.complete:
            return list(self.eos_token_ids)
        import torch

        tokens_left = None if self.max_new_tokens is None else self.max_new_tokens - generated - 1
        table = self.table
        ok_chars = torch.tensor([state.accepts(c) for c in table.alphabet], dtype=torch.bool)
        positions = torch.nonzero(ok_chars[table.first_char], as_tuple=False).squeeze(1)
        # A tokenizer may know ids the model's head has no logit for (and the reverse: padded heads).
        positions = positions[table.ids[positions] < scores.shape[-1]]
        if positions.numel() == 0:
            return []
        candidate_scores = scores[table.ids[positions]]
        kept: list[int] = []
        # Usually one of the best few candidates is valid: a top-k is much cheaper than sorting a
        # 150k-token vocabulary every step; the full sort is the fallback.
        first = min(self.first_chunk, candidate_scores.numel())
        head = torch.topk(candidate_scores, first).indices
        if self._keep_valid(state, positions[head].tolist(), tokens_left, kept):
            return kept
        if first < candidate_scores.numel():
            order = torch.argsort(candidate_scores, descending=True)[first:]
            self._keep_valid(state, positions[order].tolist(), tokens_left, kept)
        return kept

    def _keep_valid(self, state: ParseState, positions: list[int], tokens_left: int | None, kept: list[int]) -> bool:
        table = self.table
        for pos in positions:
            nxt = state.feed(table.texts[pos])
            if nxt is None:
                continue
            if tokens_left is not None and nxt.chars_to_complete() > tokens_left:
                continue
            kept.append(table.id_list[pos])
            if len(kept) >= self.top_k_valid:
                return True
        return False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Transformers LogitsProcessor protocol: (batch, seq) ids, (batch, vocab) scores -> masked scores."""
        import torch

        if self.prompt_length is None:
            self.prompt_length = int(input_ids.shape[1])
        out = torch.full_like(scores, float("-inf"))
        # Token choice happens in Python: one copy to the CPU per step instead of many small syncs.
        cpu_scores = scores.detach().float().cpu()
        new_states: dict[tuple[int, ...], ParseState | None] = {}
        for row in range(input_ids.shape[0]):
            key = tuple(input_ids[row, self.prompt_length :].tolist())
            if any(t in self._eos_set for t in key):
                out[row] = scores[row]  # a finished row: generate pads it, its scores do not matter
                continue
            state = self._state_for(key)
            new_states[key] = state
            if state is None:
                # A token this processor did not allow was forced in; the output is already invalid.
                keep = list(self.eos_token_ids)
            else:
                keep = self.allowed(state, cpu_scores[row], len(key))
                if not keep:
                    # Only possible when the vocabulary cannot spell a needed character.
                    self.stuck_rows += 1
                    log.warning("constrained decoding is stuck after %d tokens; ending the output", len(key))
                    keep = list(self.eos_token_ids)
            idx = torch.tensor(keep, dtype=torch.long, device=scores.device)
            vals = scores[row, idx]
            # Keep the model's preference among allowed tokens, but never an all -inf row.
            out[row, idx] = torch.where(torch.isfinite(vals), vals, torch.zeros_like(vals))
        self._states = new_states
        return out
