"""A workflow's declared input shape, and the check a submitted input must pass.

A workflow may declare its input as a dataclass or a TypedDict (`Workflow(name,
input=Shape)`); `check_input` holds a JSON value to it and names the first field that
does not match, so `POST /workflow-queue/jobs` can answer 400 before anything is stored.
Python's own annotations are the schema, so no JSON Schema library is needed: the types
understood are those JSON can carry (str, int, float, bool, None, list[X], dict[str, X],
Literal, unions and `X | None`, `Any`, and nested dataclasses and TypedDicts).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, NotRequired, Required, Union, get_args, get_origin

from conveyor.errors import ConveyorError

Shape = type


def check_input(shape: Shape | None, value: Any) -> None:
    """Raise `InvalidInputError` naming the first field of `value` that `shape` refuses.

    With no shape declared, any JSON object is accepted.
    """
    if not isinstance(value, dict):
        raise InvalidInputError("input", "must be a JSON object")
    if shape is not None:
        _check(shape, value, "input")
    _check_text(value, "input")


def _check_text(value: Any, path: str) -> None:
    """No NUL character anywhere: the `jobs` read model keeps the input as jsonb, which
    cannot hold one."""
    if isinstance(value, str) and "\x00" in value:
        raise InvalidInputError(path, "must not contain a NUL character")
    if isinstance(value, list):
        for i, element in enumerate(value):
            _check_text(element, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, element in value.items():
            _check_text(key, f"{path}.{key!r}")
            _check_text(element, f"{path}.{key}")


def _fields(shape: Shape) -> tuple[dict[str, Any], frozenset[str]]:
    """The shape's fields and their types, and those that must be present."""
    hints = typing.get_type_hints(shape, include_extras=True)
    if dataclasses.is_dataclass(shape):
        required = frozenset(
            f.name for f in dataclasses.fields(shape)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        return {f.name: hints[f.name] for f in dataclasses.fields(shape)}, required
    # Not `__required_keys__`: under `from __future__ import annotations` Python 3.11 cannot
    # see a NotRequired in an annotation's text when it builds the class.
    total = getattr(shape, "__total__", True)
    return hints, frozenset(name for name, hint in hints.items()
                            if get_origin(hint) is Required
                            or (total and get_origin(hint) is not NotRequired))


def _is_record(shape: Any) -> bool:
    return isinstance(shape, type) and (
        dataclasses.is_dataclass(shape) or typing.is_typeddict(shape))


def _check(expected: Any, value: Any, path: str) -> None:
    origin = get_origin(expected)
    if origin in (Required, NotRequired):
        _check(get_args(expected)[0], value, path)
    elif expected is Any:
        return
    elif _is_record(expected):
        _check_record(expected, value, path)
    elif origin in (Union, types.UnionType):
        for option in get_args(expected):
            try:
                _check(option, value, path)
                return
            except InvalidInputError:
                continue
        raise InvalidInputError(path, f"must be {_name(expected)}")
    elif origin is Literal:
        if not any(value == a and type(value) is type(a) for a in get_args(expected)):
            raise InvalidInputError(path, f"must be one of {list(get_args(expected))}")
    elif origin is list:
        if not isinstance(value, list):
            raise InvalidInputError(path, "must be a list")
        (item,) = get_args(expected) or (Any,)
        for i, element in enumerate(value):
            _check(item, element, f"{path}[{i}]")
    elif origin is dict or expected is dict:
        if not isinstance(value, dict):
            raise InvalidInputError(path, "must be an object")
        _, item = get_args(expected) or (str, Any)
        for key, element in value.items():
            _check(item, element, f"{path}.{key}")
    else:
        _check_scalar(expected, value, path)


def _check_record(shape: Shape, value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise InvalidInputError(path, "must be an object")
    fields, required = _fields(shape)
    for name in sorted(required - value.keys()):
        raise InvalidInputError(f"{path}.{name}", "is required")
    for name in value:
        if name not in fields:
            raise InvalidInputError(f"{path}.{name}", "is not a field of this input")
    for name, element in value.items():
        _check(fields[name], element, f"{path}.{name}")


_SCALARS: Mapping[Any, tuple[type, ...]] = {
    str: (str,), bool: (bool,), int: (int,), float: (int, float), type(None): (type(None),),
    None: (type(None),),
}


def _check_scalar(expected: Any, value: Any, path: str) -> None:
    accepted = _SCALARS.get(expected)
    if accepted is None:
        raise InvalidInputError(path, f"has a type no JSON value can be: {_name(expected)}")
    # JSON's true and false are not numbers, though Python's bool is an int.
    if isinstance(value, bool) and expected is not bool:
        raise InvalidInputError(path, f"must be {_name(expected)}")
    if not isinstance(value, accepted):
        raise InvalidInputError(path, f"must be {_name(expected)}")


def _name(expected: Any) -> str:
    if expected in (None, type(None)):
        return "null"
    if isinstance(expected, type) and get_origin(expected) is None:
        return {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}.get(
            expected, expected.__name__)
    if get_origin(expected) in (Union, types.UnionType):
        return " or ".join(_name(option) for option in get_args(expected))
    return str(expected).replace("typing.", "")


class InvalidInputError(ConveyorError):
    """Raised when a job's submitted input does not match its workflow's declared shape."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"'{field}' {problem}.")
        self.field = field
