"""Typed hyper-parameter search spaces, declared next to each unlearning method.

A method class sets ``search_space: ClassVar[SearchSpace]``: ``{option: distribution}`` where a
distribution is a list of values (categorical), a :class:`FloatRange` or an :class:`IntRange`
(``log=True`` samples the logarithm uniformly — learning rates, damping and noise scales span
orders of magnitude, as in SalUn's and RURK's tuning grids). A space made of lists only is a
*grid*: the tuner enumerates it (seeded order) instead of sampling it.

In YAML (a scenario's ``tune.space``) a list is categorical and ``{low, high, log}`` a range; a
range of two ints is an :class:`IntRange`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from obliviate.errors import ConfigError


@dataclass(frozen=True)
class FloatRange:
    """Floats in ``[low, high]``; ``log`` samples ``log(x)`` uniformly (needs ``low > 0``)."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        _check_range(self.low, self.high, self.log)


@dataclass(frozen=True)
class IntRange:
    """Integers in ``[low, high]`` (both included); ``log`` as for :class:`FloatRange`."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        _check_range(self.low, self.high, self.log)


def _check_range(low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"a search range needs finite low <= high, got [{low}, {high}]")
    if log and low <= 0:
        raise ConfigError(f"a log-scale search range needs low > 0, got {low}")


Distribution: TypeAlias = list[Any] | FloatRange | IntRange
SearchSpace: TypeAlias = dict[str, Distribution]


def as_distribution(v: Any, where: str = "search space") -> Distribution:
    """A distribution from its plain form: a list/tuple (categorical, non-empty), a range object,
    or a mapping ``{low, high, log}`` (ints on both ends give an :class:`IntRange`)."""
    if isinstance(v, FloatRange | IntRange):
        return v
    if isinstance(v, Sequence) and not isinstance(v, str):
        if len(v) == 0:
            raise ConfigError(f"{where}: a categorical choice needs at least one value")
        return list(v)
    if isinstance(v, Mapping):
        extra = set(v) - {"low", "high", "log"}
        if extra or not {"low", "high"} <= set(v):
            raise ConfigError(f"{where}: a range is {{low, high, log}}, got keys {sorted(v)}")
        low, high, log = v["low"], v["high"], bool(v.get("log", False))
        if isinstance(low, bool) or isinstance(high, bool):
            raise ConfigError(f"{where}: range ends must be numbers, got {low!r}, {high!r}")
        if isinstance(low, int) and isinstance(high, int):
            return IntRange(low, high, log)
        if not isinstance(low, int | float) or not isinstance(high, int | float):
            raise ConfigError(f"{where}: range ends must be numbers, got {low!r}, {high!r}")
        return FloatRange(float(low), float(high), log)
    raise ConfigError(
        f"{where}: expected a list of values or {{low, high, log}}, got {type(v).__name__}"
    )


def plain(dist: Distribution) -> list[Any] | dict[str, Any]:
    """JSON form of a distribution (for hashes and records); inverse of :func:`as_distribution`."""
    if isinstance(dist, FloatRange | IntRange):
        return {"low": dist.low, "high": dist.high, "log": dist.log}
    return list(dist)


def is_grid(space: Mapping[str, Distribution]) -> bool:
    """True when every option is categorical, so the space can be enumerated."""
    return all(not isinstance(d, FloatRange | IntRange) for d in space.values())


def grid_size(space: Mapping[str, Distribution]) -> float:
    """Number of combinations of a grid (``math.inf`` for a space with ranges)."""
    if not is_grid(space):
        return math.inf
    return float(math.prod(len(d) for d in space.values()))  # type: ignore[arg-type]


__all__ = [
    "Distribution",
    "FloatRange",
    "IntRange",
    "SearchSpace",
    "as_distribution",
    "grid_size",
    "is_grid",
    "plain",
]
