"""A condition's worst-case cost, judged from its text before it ever runs.

The CEL runtime (`common-expression-language`, Rust) has no cost budget or time limit, and it holds
the GIL while it runs: seven nested `.all(...)` over ten items froze a worker for seconds, and a
short nested `.map` exhausted memory before any error handling could run. So every condition is
parsed here (a small parser over the same tokens the type checks read) and refused, at save and
before it is evaluated, when:

- it is longer than `MAX_CONDITION_CHARS`, or nested deeper than `MAX_NESTING` (brackets, or a
  chain of calls such as `a.f().g().h()`);
- its comprehensions (`all`, `exists`, `exists_one`, `map`, `filter`) are nested more than
  `MAX_COMPREHENSION_NESTING` deep, or iterate over something whose size cannot be bounded;
- a `matches` pattern is not a quoted string (its compile cost could not be judged);
- its estimated cost is above `MAX_COST` steps. A comprehension costs the number of items it
  iterates over times the cost of its body; a list field of the variable (`resource.tags`) is
  taken to hold at most `LIST_FIELD_ITEMS` items, the catalog API's limit on tags; a regular
  expression costs what the runtime spends compiling it on every call (Unicode classes such as
  `\\w` or `\\p{L}` are hundreds of times dearer than a letter). One step costs the runtime
  0.3 to 0.7 us (measured), so `MAX_COST` keeps any condition within a few milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_CONDITION_CHARS = 8_000
MAX_NESTING = 16
MAX_COMPREHENSION_NESTING = 2
MAX_COST = 5_000
LIST_FIELD_ITEMS = 32

COMPREHENSIONS = ("all", "exists", "exists_one", "map", "filter")

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>[rR]?(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'))
    | (?P<bytes>[bB][rR]?(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'))
    | (?P<num>0[xX][0-9a-fA-F]+[uU]?|\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?
             |\d+[eE][+-]?\d+|\d+[uU]?)
    | (?P<ident>[A-Za-z_]\w*)
    | (?P<op>==|!=|<=|>=|&&|\|\||[^\s\w])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # str, bytes, num, ident, op
    text: str


def tokens(expression: str) -> list[Token]:
    """The condition's tokens; stops at the first character CEL would not accept."""
    found, position = [], 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            break
        kind = match.lastgroup or "op"
        found.append(Token(kind, match[kind]))
        position = match.end()
    return found


class CostError(ValueError):
    """A condition that could be too expensive to evaluate; the message says which limit and why."""


# --- Parsing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    kind: str  # lit, list, map, ident, select, index, unary, nary, ternary, call, method
    text: str = ""
    children: tuple[_Node, ...] = ()
    ops: tuple[str, ...] = ()  # nary: the operators between the children


_LEVELS: tuple[tuple[str, ...], ...] = (
    ("||",),
    ("&&",),
    ("==", "!=", "<", "<=", ">", ">=", "in"),
    ("+", "-"),
    ("*", "/", "%"),
)


class _Parser:
    """Recursive descent over CEL's grammar (precedence as in the CEL spec). It only reads
    conditions the runtime has already compiled, so it does not explain syntax errors; it bounds
    its own recursion by `MAX_NESTING`, and chains of operators are read as one flat node."""

    def __init__(self, expression: str) -> None:
        self.tokens = tokens(expression)
        self.position = 0
        self.depth = 0

    def parse(self) -> _Node:
        node = self.expr()
        if self.position != len(self.tokens):
            raise CostError("could not be analysed for cost (unexpected text after the condition)")
        return node

    def peek(self, ahead: int = 0) -> Token | None:
        index = self.position + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def at_op(self, text: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token is not None and token.kind == "op" and token.text == text

    def take(self, text: str) -> bool:
        if self.at_op(text):
            self.position += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.take(text):
            raise CostError(f"could not be analysed for cost (expected {text!r})")

    def expr(self) -> _Node:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise CostError(f"is nested more than {MAX_NESTING} levels deep")
        try:
            node = self.binary(0)
            if self.take("?"):
                then = self.binary(0)
                self.expect(":")
                node = _Node("ternary", children=(node, then, self.expr()))
            return node
        finally:
            self.depth -= 1

    def binary(self, level: int) -> _Node:
        if level == len(_LEVELS):
            return self.unary()
        children, ops = [self.binary(level + 1)], []
        while (token := self.peek()) is not None and token.text in _LEVELS[level]:
            if token.kind != "op" and not (token.kind == "ident" and token.text == "in"):
                break
            self.position += 1
            ops.append(token.text)
            children.append(self.binary(level + 1))
        return children[0] if not ops else _Node("nary", children=tuple(children), ops=tuple(ops))

    def unary(self) -> _Node:
        prefix = ""
        while self.at_op("!") or self.at_op("-"):
            prefix += self.tokens[self.position].text
            self.position += 1
        node = self.member()
        return _Node("unary", prefix, (node,)) if prefix else node

    def member(self) -> _Node:
        node = self.primary()
        chain = 0
        while True:
            if self.take("."):
                self.take("?")
                name = self.ident()
                if self.take("("):
                    node = _Node("method", name, (node, *self.items(")")))
                else:
                    node = _Node("select", name, (node,))
            elif self.take("["):
                self.take("?")
                node = _Node("index", children=(node, self.expr()))
                self.expect("]")
            elif self.at_op("{") and node.kind in ("ident", "select"):
                self.position += 1  # a message construction, `Type{field: value}`
                node = _Node("map", children=self.entries("}", keyed_by_name=True))
            else:
                return node
            chain += 1
            if chain > MAX_NESTING:
                raise CostError(f"chains more than {MAX_NESTING} selections or calls")

    def ident(self) -> str:
        token = self.peek()
        if token is None or token.kind != "ident":
            raise CostError("could not be analysed for cost (expected a name)")
        self.position += 1
        return token.text

    def primary(self) -> _Node:
        token = self.peek()
        if token is None:
            raise CostError("could not be analysed for cost (the condition ends too early)")
        if token.kind in ("str", "bytes", "num"):
            self.position += 1
            return _Node("lit", token.text)
        if self.take("("):
            node = self.expr()
            self.expect(")")
            return node
        if self.take("["):
            return _Node("list", children=self.items("]"))
        if self.take("{"):
            return _Node("map", children=self.entries("}"))
        self.take(".")  # a leading dot names the root scope
        name = self.ident()
        if name in ("true", "false", "null"):
            return _Node("lit", name)
        if self.take("("):
            return _Node("call", name, self.items(")"))
        return _Node("ident", name)

    def items(self, close: str) -> tuple[_Node, ...]:
        found: list[_Node] = []
        while not self.take(close):
            self.take("?")
            found.append(self.expr())
            if not self.take(","):
                self.expect(close)
                break
        return tuple(found)

    def entries(self, close: str, *, keyed_by_name: bool = False) -> tuple[_Node, ...]:
        """Keys and values, alternating."""
        found: list[_Node] = []
        while not self.take(close):
            self.take("?")
            found.append(_Node("lit", self.ident()) if keyed_by_name else self.expr())
            self.expect(":")
            found.append(self.expr())
            if not self.take(","):
                self.expect(close)
                break
        return tuple(found)


# --- Estimating --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Estimate:
    cost: int
    items: int | None = None  # an upper bound on a list's or map's size; None: not a collection
    element_items: int | None = None  # the same bound for its elements, when they are collections


class _Estimator:
    def __init__(self) -> None:
        self.nesting = 0

    def estimate(self, node: _Node, scope: dict[str, int | None]) -> _Estimate:
        kind = node.kind
        if kind == "lit":
            return _Estimate(1)
        if kind == "ident":
            # A comprehension's variable is one element of what it iterates over; the condition's
            # own variable (`resource`) is read field by field.
            return _Estimate(1, scope.get(node.text))
        if kind in ("list", "map"):
            parts = [self.estimate(child, scope) for child in node.children]
            size = len(parts) if kind == "list" else len(parts) // 2
            return _Estimate(1 + _total(parts), size, _largest(p.items for p in parts))
        if kind == "select":
            (operand,) = node.children
            part = self.estimate(operand, scope)
            if operand.kind == "ident" and operand.text not in scope:
                return _Estimate(part.cost + 1, LIST_FIELD_ITEMS)  # any field of the variable may be a list
            return _Estimate(part.cost + 1, part.element_items)
        if kind == "index":
            target, key = (self.estimate(child, scope) for child in node.children)
            return _Estimate(target.cost + key.cost + 1, target.element_items)
        if kind == "unary":
            return _Estimate(self.estimate(node.children[0], scope).cost + len(node.text))
        if kind == "ternary":
            parts = [self.estimate(child, scope) for child in node.children]
            return _Estimate(_total(parts), _largest((parts[1].items, parts[2].items)))
        if kind == "nary":
            parts = [self.estimate(child, scope) for child in node.children]
            return _operators(node.ops, parts)
        if kind == "call":
            if node.text == "matches" and len(node.children) == 2:
                return self.matches(node.children[0], node.children[1], scope)
            return _Estimate(1 + _total([self.estimate(child, scope) for child in node.children]))
        # kind == "method"
        receiver, *arguments = node.children
        if node.text in COMPREHENSIONS and len(arguments) in (2, 3) and arguments[0].kind == "ident":
            return self.comprehension(node.text, receiver, arguments, scope)
        if node.text == "matches" and len(arguments) == 1:
            return self.matches(receiver, arguments[0], scope)
        return _Estimate(1 + _total([self.estimate(child, scope) for child in node.children]))

    def comprehension(
        self, macro: str, receiver: _Node, arguments: list[_Node], scope: dict[str, int | None]
    ) -> _Estimate:
        over = self.estimate(receiver, scope)
        if over.items is None:
            raise CostError(
                f"`.{macro}(...)` iterates over something whose size Veil cannot bound; "
                "iterate over a list field (such as resource.tags) or a list written out"
            )
        self.nesting += 1
        try:
            if self.nesting > MAX_COMPREHENSION_NESTING:
                raise CostError(
                    f"nests comprehensions ({', '.join(COMPREHENSIONS)}) more than "
                    f"{MAX_COMPREHENSION_NESTING} deep"
                )
            inner = {**scope, arguments[0].text: over.element_items}
            body = [self.estimate(argument, inner) for argument in arguments[1:]]
        finally:
            self.nesting -= 1
        cost = over.cost + over.items * (_total(body) + 2)
        if macro == "map":
            return _Estimate(cost, over.items, body[-1].items)
        if macro == "filter":
            return _Estimate(cost, over.items, over.element_items)
        return _Estimate(cost)

    def matches(self, subject: _Node, pattern: _Node, scope: dict[str, int | None]) -> _Estimate:
        if pattern.kind != "lit" or pattern.text[:1] not in ("'", '"', "r", "R"):
            raise CostError(
                "the pattern given to matches() must be a quoted string, so its cost can be judged"
            )
        return _Estimate(self.estimate(subject, scope).cost + regex_cost(_string_value(pattern.text)))


def _operators(ops: tuple[str, ...], parts: list[_Estimate]) -> _Estimate:
    """A chain of binary operators. `x in list` walks the list, `==` and `!=` between two lists
    walk both, `+` between lists copies both; other operators take one step each."""
    cost = _total(parts) + len(ops)
    for op, left, right in zip(ops, parts, parts[1:], strict=False):
        if op == "in":
            cost += right.items or 0
        elif op in ("==", "!=") and left.items is not None and right.items is not None:
            cost += left.items + right.items
    if set(ops) == {"+"} and any(p.items is not None for p in parts):
        size = sum(p.items or 0 for p in parts)
        return _Estimate(cost + size, size, _largest(p.element_items for p in parts))
    return _Estimate(cost)


def _total(parts: list[_Estimate]) -> int:
    return sum(p.cost for p in parts)


def _largest(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _string_value(literal: str) -> str:
    """A string literal's text, close enough to weigh a pattern (`\\\\w` in a quoted string is `\\w`)."""
    raw = literal[:1] in ("r", "R")
    body = literal[1:] if raw else literal
    quote = 3 if body[:3] in ('"""', "'''") else 1
    body = body[quote:-quote]
    return body if raw else body.replace("\\\\", "\\")


# --- Regular expressions -----------------------------------------------------------------------

# What compiling one atom costs the runtime, in steps (measured: `\w` 0.27 ms, `\p{L}` 0.2 ms,
# `\d` 27 us, `.` 9 us, a letter under 1 us); the runtime compiles the pattern on every call.
_REGEX_CALL = 100
_UNICODE_CLASS, _DIGIT_CLASS, _WIDE_CLASS, _PLAIN = 1000, 100, 30, 2
_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")


def regex_cost(pattern: str) -> int:
    """The estimated cost of compiling `pattern`: atoms weighed by their class, a group or atom
    repeated `{n}` (or `{m,n}`) times counts n times (nested repetitions multiply)."""
    plain = _WIDE_CLASS if "(?i" in pattern else _PLAIN
    totals, last, position = [0], 0, 0
    groups: list[int] = []
    while position < len(pattern):
        char = pattern[position]
        if char == "\\":
            escape = pattern[position + 1 : position + 2]
            if escape in ("p", "P"):
                braced = pattern[position + 2 : position + 3] == "{"
                end = pattern.find("}", position) + 1 if braced else 0
                last, position = _UNICODE_CLASS, max(end, position + 3)
            else:
                last = {"w": _UNICODE_CLASS, "W": _UNICODE_CLASS, "d": _DIGIT_CLASS, "D": _DIGIT_CLASS}.get(
                    escape, _WIDE_CLASS if escape in ("s", "S") else plain
                )
                position += 2
            totals[-1] += last
            continue
        if char == "[":
            end = _class_end(pattern, position)
            members = pattern[position:end]
            if re.search(r"\\[wWpP]", members):
                last = _UNICODE_CLASS
            elif re.search(r"\\[dD]", members):
                last = _DIGIT_CLASS
            else:
                last = _WIDE_CLASS if members.startswith("[^") or "(?i" in pattern else plain
            totals[-1] += last
            position = end
            continue
        if char == "(":
            groups.append(len(totals))
            totals.append(0)
            position += 1
            continue
        if char == ")" and groups:
            groups.pop()
            last = totals.pop()
            totals[-1] += last
            position += 1
            continue
        repeat = _REPEAT.match(pattern, position) if char == "{" else None
        if repeat is not None:
            times = int(repeat[2]) if repeat[2] else int(repeat[1])
            totals[-1] += last * (max(times, 1) - 1)
            last *= max(times, 1)
            position = repeat.end()
            continue
        if char not in "*+?|^$":
            last = _WIDE_CLASS if char == "." else plain
            totals[-1] += last
        position += 1
    return _REGEX_CALL + sum(totals)


def _class_end(pattern: str, start: int) -> int:
    """The index after the `]` closing the bracket class opened at `start`."""
    position = start + 1
    if pattern[position : position + 1] == "^":
        position += 1
    if pattern[position : position + 1] == "]":
        position += 1
    depth = 1
    while position < len(pattern) and depth:
        char = pattern[position]
        if char == "\\":
            position += 2
            continue
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        position += 1
    return position


# --- The check ---------------------------------------------------------------------------------


def cost_problem(expression: str) -> str | None:
    """Why `expression` (a condition the runtime compiles) may not run, or None when its cost is
    bounded within the limits. Call it before the condition first runs."""
    if len(expression) > MAX_CONDITION_CHARS:
        return f"is {len(expression):,} characters long; at most {MAX_CONDITION_CHARS:,}"
    try:
        cost = _Estimator().estimate(_Parser(expression).parse(), {}).cost
    except CostError as exc:
        return str(exc)
    if cost > MAX_COST:
        return (
            f"is too expensive to evaluate: an estimated {cost:,} steps, at most {MAX_COST:,} "
            "(a comprehension costs its body times the items it iterates over; a regular expression's "
            "classes such as \\w or \\p{L}, and {n} repetitions, are costly)"
        )
    return None
