"""Range validators for config classes, checked once when an experiment is loaded.

Use them as attrs validators::

    lr: float = attrs.field(default=1e-4, validator=positive)
    ema_rate: float = attrs.field(default=0.999, validator=in_range(0, 1, high_open=True))

They raise :class:`OutOfRange`, which :func:`rrcore.contracts.structure.structure` turns into one
line naming the file, the key, its value and the range:
``exp.toml: train.lr = -1: must be > 0``. Non-finite numbers (nan, inf) never pass.
Plugins use them for their own config classes too.
"""

from __future__ import annotations

import json
import math
from typing import Any

import attrs


class OutOfRange(ValueError):
    """A config value outside its valid range."""

    def __init__(self, key: str, value: Any, requirement: str) -> None:
        self.key, self.value, self.requirement = key, value, requirement
        super().__init__(f"{key} = {show(value)}: must be {requirement}")


def show(value: Any) -> str:
    """A value as the user would write it (``-1``, ``0.0001``, ``[0.9, 1.5]``, ``"a b"``); a
    string quoted, its control characters escaped and, past 60 characters, cut short."""
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**20:
        digits = str(abs(value))
        return f"{'-' if value < 0 else ''}{digits[:6]}... ({len(digits)} digits)"
    if isinstance(value, str):
        if len(value) > 60:
            return f"{json.dumps(value[:40], ensure_ascii=False)}... ({len(value)} characters)"
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


@attrs.frozen
class Range:
    """Validator: ``low <(=) value <(=) high``; either bound may be None (unbounded)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {show(self.low)}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {show(self.high)}"
        return f"in {'(' if self.low_open else '['}{show(self.low)}, {show(self.high)}{')' if self.high_open else ']'}"

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __call__(self, instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not self.contains(value):
            raise OutOfRange(attribute.name, value, self.describe())


@attrs.frozen
class Each:
    """Validator: every element of a list lies in ``range``."""

    range: Range

    def __call__(self, instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not all(self.range.contains(v) for v in value):
            raise OutOfRange(attribute.name, value, f"numbers each {self.range.describe()}")


def at_least(low: float) -> Range:
    """``value >= low``."""
    return Range(low=low)


def in_range(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Range:
    """``low <= value <= high`` (``<`` where a bound is open)."""
    return Range(low, high, low_open, high_open)


FOLDER_NAME_BYTES = 200
"""The longest :func:`folder_name`, in UTF-8 bytes: file systems allow 255 (ext4, XFS, APFS),
and rr adds up to ~15 to a run folder's name (``.old-N``, ``-sweep``, ``-rr-eval``)."""


def folder_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    """Validator: ``value`` names one folder inside another (``run.name`` in ``run.out_dir``):
    not empty, ``.`` or ``..``, no ``/`` or ``\\``, no control characters (NUL included),
    at most :data:`FOLDER_NAME_BYTES` bytes."""
    if (
        value in ("", ".", "..")
        or "/" in value
        or "\\" in value
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
        or len(value.encode("utf-8", "surrogatepass")) > FOLDER_NAME_BYTES
    ):
        raise OutOfRange(
            attribute.name,
            value,
            f"one folder name: not empty, . or .., no / or \\, no control characters, "
            f"at most {FOLDER_NAME_BYTES} bytes",
        )


positive = Range(low=0, low_open=True)
"""``value > 0``."""

non_negative = at_least(0)
"""``value >= 0``."""

fraction = in_range(0, 1)
"""``0 <= value <= 1`` (rates and probabilities)."""

INT64_MAX = 2**63 - 1
"""The largest integer a config holds: TOML's integers are 64-bit, and so are the step
counters, seeds and sizes torch and numpy take (:func:`rrcore.contracts.structure.structure` refuses
any integer outside ``[-2**63, 2**63 - 1]``)."""

STEP_COUNT_MAX = 2**31 - 1
"""The most ACT steps a row can take (``act.halt_max_steps``, ``eval.max_steps``): the
carry counts them in int32."""

RATE_MAX = 1e6
"""The largest learning rate, weight decay or optimizer scale factor. Each multiplies
float32 weights, so their products (lr x weight_decay, lr x a, b**2) must stay inside
float32's range (3.4e38); this bound keeps them far inside it, and no model trains at
rates anywhere near it (an Adam step moves a weight by about lr)."""
