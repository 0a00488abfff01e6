"""Range validators for config classes, checked once when an experiment is loaded.

Use them as attrs validators::

    lr: float = attrs.field(default=1e-4, validator=positive)
    ema_rate: float = attrs.field(default=0.999, validator=in_range(0, 1, high_open=True))

They raise :class:`OutOfRange`, which :func:`rrcore.config.structure` turns into one
line naming the file, the key, its value and the range:
``exp.toml: train.lr = -1: must be > 0``. Non-finite numbers (nan, inf) never pass.
Plugins use them for their own config classes too.
"""

from __future__ import annotations

import math
from typing import Any

import attrs


class OutOfRange(ValueError):
    """A config value outside its valid range."""

    def __init__(self, key: str, value: Any, requirement: str) -> None:
        self.key, self.value, self.requirement = key, value, requirement
        super().__init__(f"{key} = {show(value)}: must be {requirement}")


def show(value: Any) -> str:
    """A number as the user would write it (``-1``, ``0.0001``, ``[0.9, 1.5]``)."""
    if isinstance(value, float):
        return format(value, "g")
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


positive = Range(low=0, low_open=True)
"""``value > 0``."""

non_negative = at_least(0)
"""``value >= 0``."""

fraction = in_range(0, 1)
"""``0 <= value <= 1`` (rates and probabilities)."""
