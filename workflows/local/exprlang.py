"""A subset of expr-lang (github.com/expr-lang/expr), the language of ``retryStrategy.expression``.

Argo (v4.1.2) evaluates the expression with ``util/expr/argoexpr/eval.go`` ``EvalBool`` over the environment of
``util/expr/env/env.go`` ``GetFuncMap`` (the variables, plus ``asInt``/``asFloat`` = expr's ``int``/``float``,
``jsonpath``, ``toJson`` and ``sprig``). This module implements what such expressions use, with expr's
semantics (expr v1.17.8, the version argo-workflows v4.1.2 pins):

* literals: numbers, ``'...'``/``"..."``/```...``` strings, ``true``, ``false``, ``nil``, ``[a, b]`` lists;
* ``a.b``, ``a?.b``, ``a[i]``, ``f(x)``, ``c ? x : y``, and the operators of expr's
  ``parser/operator/operator.go`` with its precedences: ``or ||`` < ``and &&`` < ``== != < > <= >= in matches
  contains startsWith endsWith`` (and ``not in`` ...) < ``+ -`` < ``* / %`` < ``not ! (unary)`` < ``- + (unary)``
  < ``** ^`` < ``??``;
* ``==`` between different types is false, never an error (``"2" == 2`` is false: ``vm/runtime`` ``Equal``),
  while ``<`` between different types is an error; ``/`` always yields a float; ``and``/``or``/``not`` want booleans;
* functions ``int``/``asInt`` (a string goes through Go's ``strconv.Atoi``: ``asInt("1.5")`` is an error, as in
  Argo), ``float``/``asFloat``, ``string``, ``len``, ``lower``, ``upper``, ``trim``.

Anything else (sprig, jsonpath, closures, ranges, pipes, ``let``...) is refused with :class:`UnsupportedFeature`
when the workflow is validated, before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .expressions import go_format
from .model import UnsupportedFeature, WorkflowError

__all__ = ["ExprError", "parse", "check", "evaluate_bool"]


class ExprError(ValueError):
    """The expression failed at run time (a type error, a bad regexp...): Argo marks the node Error."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>(?:[0-9][0-9_]*(?:\.(?!\.)[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
    | (?P<op>\*\*|==|!=|<=|>=|&&|\|\||\?\?|\?\.|\.\.|[-+*/%^!<>()\[\]{},.?:|\#;])
    )""",
    re.VERBOSE,
)
_BINARY = {
    "or": 10, "||": 10, "and": 15, "&&": 15,
    "==": 20, "!=": 20, "<": 20, ">": 20, "<=": 20, ">=": 20,
    "in": 20, "matches": 20, "contains": 20, "startsWith": 20, "endsWith": 20,
    "+": 30, "-": 30, "*": 60, "/": 60, "%": 60, "**": 100, "^": 100, "??": 500,
}
_RIGHT = {"**", "^"}
_NEGATABLE = {"in", "matches", "contains", "startsWith", "endsWith"}
_UNARY = {"not": 50, "!": 50, "-": 90, "+": 90}
_KEYWORDS = {"true": True, "false": False, "nil": None}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "\\": "\\", "'": "'",
            '"': '"'}


def _unquote(text: str) -> str:
    if text[0] == "`":
        return text[1:-1]

    def repl(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc[0] in "xuU":
            return chr(int(esc[1:], 16))
        return _ESCAPES[esc]

    return re.sub(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[ntrabfv\\'\"])", repl, text[1:-1])


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos, end = 0, len(text.rstrip())
    while pos < end:
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise WorkflowError(f"expression {text!r}: cannot parse at {text[pos:].strip()[:20]!r}")
        kind = m.lastgroup
        raw = m.group(kind)
        if kind == "num":
            clean = raw.replace("_", "")
            tokens.append(("lit", float(clean) if any(c in clean for c in ".eE") else int(clean)))
        elif kind == "str":
            tokens.append(("lit", _unquote(raw)))
        elif kind == "name" and raw in _KEYWORDS:
            tokens.append(("lit", _KEYWORDS[raw]))
        else:
            tokens.append((kind, raw))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.pos = text, _tokenize(text), 0

    def peek(self, ahead: int = 0) -> tuple[str, Any] | None:
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None:
            raise WorkflowError(f"expression {self.text!r} ends unexpectedly")
        self.pos += 1
        return tok

    def expect(self, op: str) -> None:
        tok = self.take()
        if tok != ("op", op):
            raise WorkflowError(f"expression {self.text!r}: expected {op!r}, got {tok[1]!r}")

    def unsupported(self, what: Any) -> UnsupportedFeature:
        return UnsupportedFeature(f"expression {self.text!r}: {what!r} is not supported by the local runner")

    def parse(self) -> Any:
        tree = self.conditional()
        if self.peek() is not None:
            raise WorkflowError(f"expression {self.text!r}: unexpected {self.peek()[1]!r}")
        return tree

    def conditional(self) -> Any:
        cond = self.binary(0)
        if self.peek() == ("op", "?"):
            self.take()
            yes = self.conditional()
            self.expect(":")
            return ("cond", cond, yes, self.conditional())
        return cond

    def _binary_op(self) -> tuple[str, bool, int] | None:
        tok = self.peek()
        if tok is None or tok[0] not in ("op", "name"):
            return None
        op = tok[1]
        if op == "not" and self.peek(1) is not None and self.peek(1)[1] in _NEGATABLE:
            return self.peek(1)[1], True, 2
        if op in ("|", ".."):
            raise self.unsupported(op)
        return (op, False, 1) if op in _BINARY else None

    def binary(self, min_prec: int) -> Any:
        left = self.unary()
        while (found := self._binary_op()) is not None:
            op, negated, width = found
            prec = _BINARY[op]
            if prec < min_prec:
                break
            self.pos += width
            right = self.binary(prec if op in _RIGHT else prec + 1)
            left = ("bin", op, left, right)
            if negated:
                left = ("unary", "not", left)
        return left

    def unary(self) -> Any:
        tok = self.peek()
        if tok is not None and tok[0] in ("op", "name") and tok[1] in _UNARY:
            self.take()
            return ("unary", tok[1], self.binary(_UNARY[tok[1]]))
        return self.postfix(self.primary())

    def primary(self) -> Any:
        kind, val = self.take()
        if kind == "lit":
            return ("lit", val)
        if kind == "name":
            if val in ("let", "if", "else") or val in _BINARY or val in _UNARY:
                raise self.unsupported(val)
            if self.peek() == ("op", "("):
                self.take()
                return ("call", val, self.arguments(")"))
            return ("name", val)
        if val == "(":
            inner = self.conditional()
            self.expect(")")
            return inner
        if val == "[":
            return ("list", self.arguments("]"))
        if val in ("{", "#", ";"):
            raise self.unsupported(val)
        raise WorkflowError(f"expression {self.text!r}: unexpected {val!r}")

    def arguments(self, close: str) -> list[Any]:
        args: list[Any] = []
        while self.peek() != ("op", close):
            args.append(self.conditional())
            if self.peek() == ("op", ","):
                self.take()
            elif self.peek() != ("op", close):
                raise WorkflowError(f"expression {self.text!r}: expected ',' or {close!r}")
        self.take()
        return args

    def postfix(self, node: Any) -> Any:
        while True:
            tok = self.peek()
            if tok in (("op", "."), ("op", "?.")):
                self.take()
                kind, name = self.take()
                if kind != "name":
                    raise WorkflowError(f"expression {self.text!r}: expected a name after {tok[1]!r}")
                if self.peek() == ("op", "("):
                    raise self.unsupported(f"{name}(...)")  # methods such as sprig.upper(...)
                node = ("member", node, name, tok[1] == "?.")
            elif tok == ("op", "["):
                self.take()
                index = self.conditional()
                self.expect("]")
                node = ("index", node, index)
            else:
                return node


# --- evaluation ------------------------------------------------------------------------------------


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _equal(a: Any, b: Any) -> bool:
    if _is_num(a) and _is_num(b):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _go_str(x: Any) -> str:
    return "<nil>" if x is None else go_format(x)


def _to_int(x: Any) -> int:
    if _is_num(x):
        return int(x)
    if isinstance(x, str) and re.fullmatch(r"[+-]?[0-9]+", x):
        return int(x)
    raise ExprError(f"invalid operation: int({_go_str(x)})")


def _to_float(x: Any) -> float:
    if _is_num(x):
        return float(x)
    if isinstance(x, str) and x == x.strip() and "_" not in x:
        try:
            return float(x)
        except ValueError:
            pass
    raise ExprError(f"invalid operation: float({_go_str(x)})")


def _string_fn(name: str, fn: Callable[[str], Any]) -> Callable[[Any], Any]:
    def call(x: Any) -> Any:
        if not isinstance(x, str):
            raise ExprError(f"{name}({_go_str(x)}): argument must be a string")
        return fn(x)

    return call


def _length(x: Any) -> int:
    if isinstance(x, (str, list, dict)):
        return len(x)
    raise ExprError(f"invalid argument for len (type {type(x).__name__})")


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "int": _to_int, "asInt": _to_int, "float": _to_float, "asFloat": _to_float,
    "string": _go_str, "len": _length,
    "lower": _string_fn("lower", str.lower), "upper": _string_fn("upper", str.upper),
    "trim": _string_fn("trim", str.strip),
}


def _compare(op: str, a: Any, b: Any) -> bool:
    if not ((_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise ExprError(f"invalid operation: {_go_str(a)} {op} {_go_str(b)} (mismatched types)")
    return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if not (_is_num(a) and _is_num(b)):
        raise ExprError(f"invalid operation: {_go_str(a)} {op} {_go_str(b)}")
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b if b else (float("nan") if a == 0 else float("inf") if a > 0 else float("-inf"))
    if op == "%":
        if not (isinstance(a, int) and isinstance(b, int)) or b == 0:
            raise ExprError(f"invalid operation: {_go_str(a)} % {_go_str(b)}")
        return int(a - b * int(a / b))  # Go's truncated remainder
    return float(a) ** float(b)  # ** and ^


def _bool(x: Any, where: str) -> bool:
    if not isinstance(x, bool):
        raise ExprError(f"invalid operation: {where} needs a boolean, got {_go_str(x)}")
    return x


def _evaluate(node: Any, env: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "name":
        if node[1] not in env:
            raise ExprError(f"unknown name {node[1]}")
        return env[node[1]]
    if kind == "list":
        return [_evaluate(x, env) for x in node[1]]
    if kind == "member":
        obj = _evaluate(node[1], env)
        if obj is None and node[3]:
            return None
        if not isinstance(obj, Mapping):
            raise ExprError(f"cannot fetch {node[2]} from {_go_str(obj)}")
        return obj.get(node[2])
    if kind == "index":
        obj, key = _evaluate(node[1], env), _evaluate(node[2], env)
        if isinstance(obj, Mapping):
            return obj.get(key)
        if isinstance(obj, (list, str)) and isinstance(key, int) and not isinstance(key, bool):
            if -len(obj) <= key < len(obj):
                return obj[key]
            raise ExprError(f"index out of range: {key} (array length is {len(obj)})")
        raise ExprError(f"cannot fetch {_go_str(key)} from {_go_str(obj)}")
    if kind == "call":
        return FUNCTIONS[node[1]](*[_evaluate(a, env) for a in node[2]])
    if kind == "cond":
        return _evaluate(node[2] if _bool(_evaluate(node[1], env), "?:") else node[3], env)
    if kind == "unary":
        x = _evaluate(node[2], env)
        if node[1] in ("!", "not"):
            return not _bool(x, node[1])
        if not _is_num(x):
            raise ExprError(f"invalid operation: {node[1]}{_go_str(x)}")
        return -x if node[1] == "-" else x
    _, op, left, right = node
    if op in ("&&", "and"):
        return _bool(_evaluate(left, env), op) and _bool(_evaluate(right, env), op)
    if op in ("||", "or"):
        return _bool(_evaluate(left, env), op) or _bool(_evaluate(right, env), op)
    a = _evaluate(left, env)
    if op == "??":
        return a if a is not None else _evaluate(right, env)
    b = _evaluate(right, env)
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op in ("<", ">", "<=", ">="):
        return _compare(op, a, b)
    if op == "in":
        if isinstance(b, list):
            return any(_equal(a, x) for x in b)
        if isinstance(b, Mapping):
            return a in b
        raise ExprError(f"invalid operation: {_go_str(a)} in {_go_str(b)}")
    if op in ("matches", "contains", "startsWith", "endsWith"):
        if not (isinstance(a, str) and isinstance(b, str)):
            raise ExprError(f"invalid operation: {_go_str(a)} {op} {_go_str(b)}")
        if op == "matches":
            try:
                return re.search(b, a) is not None  # Go's regexp.MatchString: a match anywhere
            except re.error as exc:
                raise ExprError(f"invalid regexp {b!r}: {exc}") from None
        return {"contains": b in a, "startsWith": a.startswith(b), "endsWith": a.endswith(b)}[op]
    return _arith(op, a, b)


# --- public API -------------------------------------------------------------------------------------


def parse(text: str) -> Any:
    """Parse an expression; WorkflowError on a syntax error, UnsupportedFeature outside the subset."""
    return _Parser(text).parse()


def check(text: str, names: Iterable[str]) -> None:
    """Up-front check: syntax, and that only ``names`` and the supported functions are used."""
    allowed = set(names)

    def walk(node: Any) -> None:
        kind = node[0]
        if kind == "name" and node[1] not in allowed:
            if node[1] in ("sprig", "jsonpath", "toJson"):
                raise UnsupportedFeature(f"expression {text!r}: {node[1]!r} is not supported by the local runner")
            raise WorkflowError(f"expression {text!r}: unknown name {node[1]!r} (known: {', '.join(sorted(allowed))})")
        if kind == "call" and node[1] not in FUNCTIONS:
            raise UnsupportedFeature(
                f"expression {text!r}: function {node[1]!r} is not supported by the local runner "
                f"(supported: {', '.join(sorted(FUNCTIONS))})"
            )
        for child in node[1:]:
            if isinstance(child, tuple):
                walk(child)
            elif isinstance(child, list):
                for c in child:
                    walk(c)

    walk(parse(text))


def evaluate_bool(text: str, env: Mapping[str, Any]) -> bool:
    """``argoexpr.EvalBool``: evaluate and insist on a boolean. ExprError (a ValueError) on failure."""
    try:
        result = _evaluate(parse(text), env)
    except (WorkflowError, UnsupportedFeature) as exc:
        raise ExprError(str(exc)) from None
    except ExprError as exc:
        raise ExprError(f"unable to evaluate expression '{text}': {exc}") from None
    if not isinstance(result, bool):
        raise ExprError(f"unable to cast expression result '{_go_str(result)}' to bool")
    return result
