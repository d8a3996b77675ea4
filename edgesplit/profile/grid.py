"""Parse the grids a profile sweeps over: ``"0:30:5"`` (inclusive range), ``"2,4,8"`` (list), ``"all"`` (splits).

Items are separated by commas and each item is a single value or an inclusive range ``start:stop[:step]`` (step
defaults to 1 and may be negative for a descending range), so ``"0:10:5,20"`` is ``(0, 5, 10, 20)``. Float ranges
are computed as ``start + i·step`` and rounded to 10 decimals, so ``"0.02:0.30:0.04"`` gives exactly
``0.02, 0.06, …, 0.30`` without drift. Every parser raises ``ValueError`` saying what was wrong and what is accepted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

FORMAT = "a value, a comma list (2,4,8) or an inclusive range start:stop[:step] (0:30:5)"


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number; expected {FORMAT}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}: {text!r} is not a finite number")
    return value


def _range(item: str, name: str) -> list[float]:
    parts = item.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"{name}: range {item!r} must be start:stop or start:stop:step")
    start, stop = _number(parts[0], name), _number(parts[1], name)
    step = _number(parts[2], name) if len(parts) == 3 else 1.0
    if step == 0:
        raise ValueError(f"{name}: range {item!r} has a zero step")
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count <= 0:
        raise ValueError(f"{name}: range {item!r} is empty (a step of {step:g} never gets from {start:g} to "
                         f"{stop:g})")
    return [round(start + i * step, 10) for i in range(count)]


def _items(spec: str, name: str) -> list[float]:
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{name}: empty grid; expected {FORMAT}")
    values: list[float] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            raise ValueError(f"{name}: empty item in {spec!r}; expected {FORMAT}")
        values.extend(_range(item, name) if ":" in item else [_number(item, name)])
    return _unique(values, name)


def _unique(values: Iterable, name: str) -> list:
    seen: list = []
    for value in values:
        if value in seen:
            raise ValueError(f"{name}: value {value!r} appears twice")
        seen.append(value)
    return seen


def parse_float_grid(spec: str, name: str = "grid", check: Callable[[float], bool] | None = None,
                     accepted: str = "") -> tuple[float, ...]:
    """Floats from ``spec``; ``check`` (with the ``accepted`` description) rejects out-of-domain values."""
    values = _items(spec, name)
    bad = [v for v in values if check is not None and not check(v)]
    if bad:
        raise ValueError(f"{name}: {bad[0]:g} is out of range; accepted: {accepted}")
    return tuple(values)


def parse_int_grid(spec: str, name: str = "grid", low: int | None = None, high: int | None = None) -> tuple[int, ...]:
    """Integers from ``spec``, each within ``low..high`` (inclusive) when given."""
    values = _items(spec, name)
    if any(v != int(v) for v in values):
        raise ValueError(f"{name}: {spec!r} contains non-integers; expected integers, {FORMAT}")
    ints = tuple(int(v) for v in values)
    lo = -math.inf if low is None else low
    hi = math.inf if high is None else high
    bad = [v for v in ints if not lo <= v <= hi]
    if bad:
        raise ValueError(f"{name}: {bad[0]} is out of range; accepted: {low}..{high}")
    return ints


def parse_str_grid(spec: str, name: str, accepted: Iterable[str]) -> tuple[str, ...]:
    """Comma-separated names, each one of ``accepted`` (case-insensitive)."""
    allowed = tuple(accepted)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{name}: empty list; accepted: {', '.join(allowed)}")
    names = [part.strip().lower() for part in spec.split(",")]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ValueError(f"{name}: unknown value {bad[0]!r}; accepted: {', '.join(allowed)}")
    return tuple(_unique(names, name))


def parse_splits(spec: str, num_layers: int | None = None) -> tuple[int, ...] | None:
    """Split points from ``spec``: ``all`` (``None`` until the model is known, else ``0..L``) or an int grid.

    With ``num_layers`` the splits are checked against ``0..num_layers`` and returned sorted.
    """
    if isinstance(spec, str) and spec.strip().lower() == "all":
        return None if num_layers is None else tuple(range(num_layers + 1))
    splits = parse_int_grid(spec, "splits", low=0, high=num_layers)
    return tuple(sorted(splits))
