"""The part of CEL that KFP trigger conditions use, evaluated over an ExecutorInput.

The KFP driver evaluates ``triggerPolicy.condition`` with cel-go over the ExecutorInput
proto (kubeflow/pipelines backend/src/v2/expression/expression.go, ``Condition``): field
names as in the proto (``inputs.artifacts['k'].artifacts[0].metadata['blessed']``,
``inputs.parameter_values['p']``), a result that must be a bool. This covers what TFX's
compiler writes for ``Cond``: literals, member/index access, comparisons, ``!``, ``&&``,
``||``, parentheses and the conversions int(), double(), string(), size().
A missing key is an error, as in CEL ("no such key").
"""

import ast
import re
from typing import Any, Callable, Dict, List, Tuple

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<number>\d+\.\d*(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?|\.\d+)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!().\[\],-])
)""",
    re.VERBOSE,
)
_FUNCTIONS: Dict[str, Callable[[Any], Any]] = {
    "int": lambda v: int(float(v)) if isinstance(v, str) else int(v),
    "double": float,
    "string": lambda v: v if isinstance(v, str) else repr(v),
    "size": len,
}
_COMPARE: Dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class CelError(ValueError):
    """The condition does not parse or does not evaluate (the driver fails the task)."""


def _tokens(text: str) -> List[Tuple[str, str]]:
    tokens, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise CelError(f"cannot parse condition at {text[position:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens + [("end", "")]


class _Parser:
    """Recursive descent that evaluates as it parses (conditions are short)."""

    def __init__(self, text: str, context: Dict[str, Any]):
        self.tokens, self.index, self.context = _tokens(text), 0, context

    def peek(self) -> str:
        return self.tokens[self.index][1]

    def take(self, expected: str = "") -> Tuple[str, str]:
        token = self.tokens[self.index]
        if expected and token[1] != expected:
            raise CelError(f"expected {expected!r}, got {token[1]!r}")
        self.index += 1
        return token

    def expression(self) -> Any:
        return self._logic("||", self.conjunction, deciding=True)

    def conjunction(self) -> Any:
        return self._logic("&&", self.comparison, deciding=False)

    def _logic(self, operator: str, operand: Callable[[], Any], deciding: bool) -> Any:
        """``operand (operator operand)*`` with CEL's commutative logic: a side equal to
        ``deciding`` decides even when the other side is an error (``false && x.missing``)."""
        value = operand()
        while self.peek() == operator:
            self.take()
            left, right = _boolean(value), _boolean(operand())
            if deciding in (left, right):
                value = deciding
            else:
                value = left if isinstance(left, _Error) else right
        return value

    def comparison(self) -> Any:
        value = self.unary()
        while self.peek() in _COMPARE:
            operator = self.take()[1]
            value = _apply(_COMPARE[operator], value, self.unary(), name=f"_{operator}_")
        return value

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            value = _boolean(self.unary())
            return value if isinstance(value, _Error) else not value
        if self.peek() == "-":
            self.take()
            return _apply(lambda v: -v, self.unary(), name="-_")
        return self.postfix(self.primary())

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "string":
            return ast.literal_eval(text)  # CEL's escapes are Python's for these literals
        if text == "(":
            value = self.expression()
            self.take(")")
            return value
        if kind == "name":
            if text in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[text]
            if self.peek() == "(":
                if text not in _FUNCTIONS:
                    raise CelError(f"unknown function {text}()")
                self.take("(")
                argument = self.expression()
                self.take(")")
                return _apply(_FUNCTIONS[text], argument, name=f"{text}()")
            return _member(self.context, text)
        raise CelError(f"unexpected {text!r}")

    def postfix(self, value: Any) -> Any:
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                value = _member(value, self.take()[1])
            else:
                key = self.expression()
                self.take("]")
                value = _member(value, key)
        return value


class _Error:
    """An evaluation error as a value: CEL's logic operators may still decide without it."""

    def __init__(self, message: str):
        self.message = message


def _apply(function: Callable[..., Any], *values: Any, name: str) -> Any:
    errors = [v for v in values if isinstance(v, _Error)]
    if errors:
        return errors[0]
    try:
        return function(*values)
    except (TypeError, ValueError, OverflowError):
        return _Error(f"no such overload: {name} on {values!r}")


def _member(value: Any, key: Any) -> Any:
    if isinstance(value, _Error):
        return value
    if isinstance(key, _Error):
        return key
    try:
        return value[key]
    except (KeyError, IndexError, TypeError):
        return _Error(f"no such key: {key!r}")


def _boolean(value: Any) -> Any:
    if isinstance(value, (bool, _Error)):
        return value
    return _Error(f"no matching overload: expected bool, got {value!r}")


def evaluate_condition(condition: str, executor_input: Dict[str, Any]) -> bool:
    """The condition's value over an ExecutorInput dict with proto (snake_case) field names."""
    parser = _Parser(condition, executor_input)
    result = parser.expression()
    if parser.peek():
        raise CelError(f"unexpected {parser.peek()!r} in condition {condition!r}")
    if isinstance(result, _Error):
        raise CelError(result.message)
    if not isinstance(result, bool):
        raise CelError(f"evaluation error: return type is not bool, got {result!r}")
    return result
