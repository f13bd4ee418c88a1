"""Argo's small languages: ``{{...}}`` substitution, ``depends`` and ``when`` expressions.

Pure functions on strings and dicts; nothing here knows about processes or the DAG walker. Durations are
parsed by :mod:`.durations` (re-exported here as ``parse_duration``); ``retryStrategy.expression`` (expr-lang)
by :mod:`.exprlang`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from .durations import parse_duration
from .model import UnsupportedFeature, WorkflowError

__all__ = [
    "TAG",
    "substitute",
    "go_json",
    "go_format",
    "parameter_string",
    "item_scope",
    "item_label",
    "DependsExpr",
    "parse_depends",
    "depends_from_dependencies",
    "depends_tasks",
    "eval_depends",
    "parse_when",
    "eval_when",
    "check_when_syntax",
    "parse_duration",
    "DEPENDS_RESULTS",
]

# --- {{...}} substitution -------------------------------------------------------------------

#: A template tag, like fasttemplate's: from ``{{`` to the first ``}}``.
TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


def substitute(
    value: Any, scope: Mapping[str, str], *, keep: Callable[[str], bool] | None = None
) -> tuple[Any, list[str]]:
    """Replace ``{{ key }}`` tags in every string of ``value`` (dicts and lists are copied).

    Returns ``(new_value, unresolved)``: tags whose key is not in ``scope`` stay as they are and
    are listed in ``unresolved`` unless ``keep(key)`` says they are meant for a later pass.
    Expression tags (``{{=...}}``) raise :class:`UnsupportedFeature`.
    """
    unresolved: list[str] = []

    def repl(match: re.Match[str]) -> str:
        key = match.group(1).strip()
        if key.startswith("="):
            raise UnsupportedFeature(f"expression tag {match.group(0)!r} is not supported by the local runner")
        if key in scope:
            return scope[key]
        if keep is None or not keep(key):
            if key not in unresolved:
                unresolved.append(key)
        return match.group(0)

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return TAG.sub(repl, v) if "{{" in v else v
        if isinstance(v, Mapping):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value), unresolved


def go_json(value: Any) -> str:
    """JSON the way Go's encoding/json writes it: compact, map keys sorted."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def go_format(value: Any) -> str:
    """A JSON value rendered like Go's ``%v`` of an Argo Item (nested containers as JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return go_json(value)


def parameter_string(value: Any) -> str:
    """A parameter value of the Workflow dict (argument, default, ``valueFrom.default``, env value, argv item) as
    the string that is substituted: strings as they are, booleans ``true``/``false``, lists and dicts as JSON
    (``json.dumps``, as hera serializes them), anything else ``str()``. The one such conversion of the package."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def item_scope(item: Any) -> dict[str, str]:
    """The ``{{item}}`` / ``{{item.key}}`` scope of one withItems/withParam element."""
    if isinstance(item, Mapping):
        scope = {f"item.{k}": go_format(v) for k, v in item.items()}
        scope["item"] = go_json(item)
        return scope
    return {"item": go_format(item)}


def item_label(index: int, item: Any) -> str:
    """Argo's fan-out node suffix: ``(0:a)``; maps as sorted ``k:v`` pairs; lists as JSON."""
    if isinstance(item, Mapping):
        desc = ",".join(sorted(f"{k}:{go_format(v)}" for k, v in item.items()))
    else:
        desc = go_format(item)
    return f"({index}:{desc})"


# --- depends ----------------------------------------------------------------------------------

DEPENDS_RESULTS = frozenset(
    {"Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded", "AllFailed"}
)


@dataclass(frozen=True)
class _Ref:
    task: str
    result: str | None  # None: bare task name


@dataclass(frozen=True)
class _Not:
    operand: "DependsExpr"


@dataclass(frozen=True)
class _BoolOp:
    op: str  # "&&" or "||"
    operands: tuple["DependsExpr", ...]


DependsExpr = Union[_Ref, _Not, _BoolOp]

_DEPENDS_TOKEN = re.compile(r"\s*(?:(&&|\|\||!|\(|\))|([A-Za-z0-9][-A-Za-z0-9_]*)(?:\.([A-Za-z]+))?)")


def _tokenize_depends(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _DEPENDS_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise WorkflowError(f"cannot parse depends expression {text!r} at {text[pos:]!r}")
        if m.group(1):
            tokens.append(("op", m.group(1)))
        else:
            result = m.group(3)
            if result is not None and result not in DEPENDS_RESULTS:
                raise WorkflowError(f"depends expression {text!r}: task result {result!r} is invalid")
            tokens.append(("ref", _Ref(m.group(2), result)))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]], text: str) -> None:
        self.tokens, self.pos, self.text = tokens, 0, text

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None:
            raise WorkflowError(f"depends expression {self.text!r} ends unexpectedly")
        self.pos += 1
        return tok

    def expr(self) -> DependsExpr:
        return self.binary("||", self.conj)

    def conj(self) -> DependsExpr:
        return self.binary("&&", self.unary)

    def binary(self, op: str, sub: Callable[[], DependsExpr]) -> DependsExpr:
        operands = [sub()]
        while self.peek() == ("op", op):
            self.take()
            operands.append(sub())
        return operands[0] if len(operands) == 1 else _BoolOp(op, tuple(operands))

    def unary(self) -> DependsExpr:
        kind, val = self.take()
        if kind == "ref":
            return val
        if val == "!":
            return _Not(self.unary())
        if val == "(":
            inner = self.expr()
            if self.take() != ("op", ")"):
                raise WorkflowError(f"depends expression {self.text!r}: missing ')'")
            return inner
        raise WorkflowError(f"depends expression {self.text!r}: unexpected {val!r}")


def parse_depends(text: str) -> DependsExpr:
    """Parse an Argo ``depends`` expression (``&&``, ``||``, ``!``, parentheses, ``task[.Result]``)."""
    parser = _Parser(_tokenize_depends(text), text)
    tree = parser.expr()
    if parser.peek() is not None:
        raise WorkflowError(f"depends expression {text!r}: unexpected {parser.peek()[1]!r}")
    return tree


def depends_from_dependencies(names: list[str]) -> DependsExpr | None:
    """``dependencies: [A, B]`` is ``depends: "A && B"`` (bare names, expanded by the caller)."""
    refs = tuple(_Ref(n, None) for n in names)
    if not refs:
        return None
    return refs[0] if len(refs) == 1 else _BoolOp("&&", refs)


def depends_tasks(tree: DependsExpr | None) -> list[str]:
    """Task names referenced by an expression, in first-seen order."""
    out: list[str] = []

    def walk(node: DependsExpr) -> None:
        if isinstance(node, _Ref):
            if node.task not in out:
                out.append(node.task)
        elif isinstance(node, _Not):
            walk(node.operand)
        else:
            for o in node.operands:
                walk(o)

    if tree is not None:
        walk(tree)
    return out


def eval_depends(tree: DependsExpr, result_of: Callable[[str, str | None], bool]) -> bool:
    """Evaluate with ``result_of(task, result)``; ``result`` is None for a bare task name."""
    if isinstance(tree, _Ref):
        return result_of(tree.task, tree.result)
    if isinstance(tree, _Not):
        return not eval_depends(tree.operand, result_of)
    if tree.op == "&&":
        return all(eval_depends(o, result_of) for o in tree.operands)
    return any(eval_depends(o, result_of) for o in tree.operands)


# --- when -------------------------------------------------------------------------------------

_WHEN_TOKEN = re.compile(
    r"""\s*(?:(==|!=|<=|>=|<|>|&&|\|\||\(|\))|'([^']*)'|"([^"]*)"|([^\s()<>=!&|'"]+))"""
)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_FANCY = re.compile(r"[+*%^~?\[\]{}]")
_COMPARATORS = ("==", "!=", "<=", ">=", "<", ">")


def _tokenize_when(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _WHEN_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise UnsupportedFeature(
                f"when expression {text!r}: {text[pos:].strip()!r} is not supported by the local runner "
                "(only ==, !=, <, >, <=, >=, &&, || and parentheses)"
            )
        op, single, double, word = m.groups()
        if op:
            tokens.append(("op", op))
        elif single is not None or double is not None:
            tokens.append(("val", single if single is not None else double))
        else:
            if word in ("true", "false"):
                tokens.append(("val", word == "true"))
            elif _NUMBER.match(word) and not word.startswith("+"):
                tokens.append(("val", float(word)))
            elif _FANCY.search(word) and not _NUMBER.match(word):
                raise UnsupportedFeature(
                    f"when expression {text!r}: {word!r} looks like an operator the local runner does not support"
                )
            else:
                tokens.append(("val", word))  # govaluate variables are strings in Argo
        pos = m.end()
    return tokens


class _WhenParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize_when(text)
        self.pos = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None:
            raise UnsupportedFeature(f"when expression {self.text!r} ends unexpectedly")
        self.pos += 1
        return tok

    def parse(self) -> Any:
        tree = self.disj()
        if self.peek() is not None:
            raise UnsupportedFeature(f"when expression {self.text!r}: unexpected {self.peek()[1]!r}")
        return tree

    def disj(self) -> Any:
        items = [self.conj()]
        while self.peek() == ("op", "||"):
            self.take()
            items.append(self.conj())
        return items[0] if len(items) == 1 else ("||", items)

    def conj(self) -> Any:
        items = [self.comparison()]
        while self.peek() == ("op", "&&"):
            self.take()
            items.append(self.comparison())
        return items[0] if len(items) == 1 else ("&&", items)

    def comparison(self) -> Any:
        left = self.atom()
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] in _COMPARATORS:
            self.take()
            return ("cmp", tok[1], left, self.atom())
        return left

    def atom(self) -> Any:
        kind, val = self.take()
        if kind == "val":
            return ("val", val)
        if val == "(":
            inner = self.disj()
            if self.take() != ("op", ")"):
                raise UnsupportedFeature(f"when expression {self.text!r}: missing ')'")
            return inner
        raise UnsupportedFeature(f"when expression {self.text!r}: unexpected {val!r}")


def parse_when(text: str) -> Any:
    """Parse a (substituted) ``when`` expression; fancier syntax raises UnsupportedFeature."""
    return _WhenParser(text).parse()


def check_when_syntax(text: str) -> None:
    """Up-front check of a ``when`` that still has ``{{...}}`` tags (each replaced by a word)."""
    parse_when(TAG.sub("x", text))


def eval_when(text: str) -> bool:
    """Evaluate a substituted ``when``. Raises ValueError on type errors (e.g. ``a < 3``)."""

    def value(node: Any) -> Any:
        kind = node[0]
        if kind == "val":
            return node[1]
        if kind == "cmp":
            _, op, left, right = node
            a, b = value(left), value(right)
            if op == "==":
                return type(a) is type(b) and a == b
            if op == "!=":
                return not (type(a) is type(b) and a == b)
            if type(a) is not type(b) or isinstance(a, bool):
                raise ValueError(f"cannot compare {a!r} {op} {b!r}")
            return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        op, items = node
        results = [truth(i) for i in items]
        return all(results) if op == "&&" else any(results)

    def truth(node: Any) -> bool:
        v = value(node)
        if not isinstance(v, bool):
            raise ValueError(f"{v!r} is not a boolean")
        return v

    try:
        return truth(parse_when(text))
    except ValueError as exc:
        raise ValueError(f"invalid when expression {text!r}: {exc}") from None
