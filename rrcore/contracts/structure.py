"""Plain data (TOML) into attrs config classes, strictly, with errors a user can act on.

TOML has types, so nothing is silently converted: ``3.7`` is not an ``int``, ``"1"`` not a
``bool``. Every problem becomes one line of a :class:`~rrcore.contracts.errors.ConfigError`
naming the file, the key path and what would be right (a misspelt key gets the closest
valid one); the validators of :mod:`rrcore.base.validators` name the range.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable, MutableSequence
from typing import Any, Literal

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from rrcore.base.validators import INT64_MAX, OutOfRange, show
from rrcore.contracts.errors import ConfigError

MAX_PROBLEMS = 3  # lines of a ConfigError listing several problems, then a count of the rest


def type_name(tp: Any) -> str:
    """A type as a user reads it: ``int``, ``list[float]``, ``'fixed' | 'adaptive'``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is not None and typing.get_args(tp):
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{args}]" if name != "UnionType" and origin is not typing.Union else args.replace(", ", " | ")
    return getattr(tp, "__name__", str(tp))


def close_hint(key: str, valid: Iterable[str], listing: str = "valid keys") -> str:
    """``did you mean 'lr'?`` for a key close to a valid one, else the valid ones listed."""
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else f"{listing}: {', '.join(valid) or 'none'}"


def _strict(expected: type, accept: tuple[type, ...], convert: Any = None) -> Any:
    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and expected is not bool or not isinstance(value, accept):
            raise TypeError(f"expected {expected.__name__}, got {type(value).__name__} {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise OutOfRange("", value, "a 64-bit integer, in [-2**63, 2**63 - 1]")
        return convert(value) if convert else value

    return hook


def make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(int, _strict(int, (int,)))
    converter.register_structure_hook(float, _strict(float, (int, float), float))
    converter.register_structure_hook(bool, _strict(bool, (bool,)))
    converter.register_structure_hook(str, _strict(str, (str,)))

    def structure_list(value: Any, tp: Any) -> list[Any]:
        # A string or table where a list belongs is refused whole: structured, each of its
        # characters (or keys) would be an error of its own, one line each.
        if not isinstance(value, list):
            raise TypeError(f"expected {type_name(tp)}, got {type(value).__name__} {value!r}")
        (element,) = typing.get_args(tp) or (Any,)
        return converter.structure(value, MutableSequence[element])  # cattrs' own list hook

    converter.register_structure_hook_func(lambda tp: typing.get_origin(tp) is list, structure_list)
    return converter


_converter = make_converter()


def _describe(error: BaseException, path: list[str], expected: Any) -> list[tuple[str, str]]:
    """Flatten cattrs' exception groups into (key path, message) pairs."""
    if isinstance(error, ForbiddenExtraKeysError):
        valid = [f.name for f in attrs.fields(error.cl)]
        return [
            (".".join([*path, key]), f"unknown key; {close_hint(key, valid)}") for key in sorted(error.extra_fields)
        ]
    if isinstance(error, ClassValidationError | IterableValidationError):
        with_notes, without = error.group_exceptions()
        out = []
        for sub, note in with_notes:
            key = note.name if isinstance(error, ClassValidationError) else str(note.index)
            out += _describe(sub, [*path, key], note.type)
        for sub in without:
            out += _describe(sub, path, expected)
        return out
    if isinstance(error, KeyError):
        return [(".".join(path), "required key is missing")]
    if isinstance(error, OutOfRange):  # from a validator (naming its key) or a structure hook
        key = ".".join([*path, error.key] if error.key else path)
        return [(f"{key} = {show(error.value)}", f"must be {error.requirement}")]
    message = str(error)
    if expected is not None and "expected" not in message:
        message = f"expected {type_name(expected)} ({message})"
    return [(".".join(path), message)]


def structure(values: dict[str, Any], cls: type, where: str, path: str) -> Any:
    """Structure ``values`` into attrs class ``cls`` or raise :class:`ConfigError`."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: {path}: expected a table, got {type(values).__name__} {values!r}")
    try:
        return _converter.structure(values, cls)
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError) as error:
        problems = _describe(error, [path] if path else [], None)
        lines = [f"{where}: {key}: {message}" for key, message in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            lines.append(f"{where}: and {len(problems) - MAX_PROBLEMS} more problems")
        raise ConfigError("\n".join(lines)) from None
    except (TypeError, ValueError) as error:  # validators and __attrs_post_init__ checks
        raise ConfigError(f"{where}: {path}: {error}") from None
