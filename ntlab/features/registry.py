"""The indicators ntlab computes, by name: inputs, parameters and the kernels behind them.

Every indicator is backed by the five Numba forms of :mod:`ntlab.kernels` (``NAME_nb``,
``NAME_2d_nb``, ``NAME_grid_nb``, ``NAME_state_nb``, ``NAME_update_nb``); the conventions
(warm-up, NaN rule) are in the kernels' docstrings. This module only describes them and checks
parameters, so that kernels never see a bad value.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ntlab.exceptions import ConfigError

__all__ = ["Indicator", "Param", "indicator", "names"]


@dataclass(frozen=True, kw_only=True)
class Param:
    """One parameter: its name, type, default and smallest allowed value."""

    name: str
    kind: type  # int or float
    default: float | int | None = None
    minimum: float = 1
    inclusive: bool = True

    def check(self, value: Any) -> float | int:
        if value is None:
            if self.default is None:
                msg = f"parameter {self.name!r} is required"
                raise ConfigError(msg)
            value = self.default
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (self.kind is int and not isinstance(value, int)):
            msg = f"{self.name}={value!r} must be {'an int' if self.kind is int else 'a number'}"
            raise ConfigError(msg)
        low_ok = value >= self.minimum if self.inclusive else value > self.minimum
        if not (math.isfinite(value) and low_ok):
            bound = ">=" if self.inclusive else ">"
            msg = f"{self.name}={value!r} must be finite and {bound} {self.minimum}"
            raise ConfigError(msg)
        return self.kind(value)


@dataclass(frozen=True, kw_only=True)
class Indicator:
    """An indicator: the module of its kernels, its input columns, parameters and outputs."""

    name: str
    module: str
    inputs: tuple[str, ...]
    params: tuple[Param, ...] = ()
    outputs: tuple[str, ...] = ("value",)
    description: str = ""
    grid_takes_all_params: bool = False
    """Whether the grid kernel takes every parameter as an array (one value per column)."""

    def kernel(self, form: str = "") -> Callable[..., Any]:
        """The Numba kernel of one form: ``""`` (1-D), ``"2d"``, ``"grid"``, ``"state"``, ``"update"``."""
        suffix = f"_{form}_nb" if form else "_nb"
        return getattr(importlib.import_module(self.module), self.name + suffix)

    def check(self, values: dict[str, Any]) -> tuple[float | int, ...]:
        """Parameter values in order, defaults filled in; unknown names are errors."""
        known = {p.name for p in self.params}
        unknown = sorted(set(values) - known)
        if unknown:
            msg = f"{self.name} has no parameter(s) {unknown}; its parameters are {sorted(known) or 'none'}"
            raise ConfigError(msg)
        return tuple(p.check(values.get(p.name)) for p in self.params)


_ROLL = "ntlab.kernels.rolling"
_IND = "ntlab.kernels.indicators"
_EXT = "ntlab.kernels.extrema"
_COV = "ntlab.kernels.covariance"
_VOL = "ntlab.kernels.volume"


def _window(minimum: int = 1, default: int | None = None) -> Param:
    return Param(name="window", kind=int, minimum=minimum, default=default)


_REGISTRY = {
    i.name: i
    for i in (
        Indicator(name="returns", module=_ROLL, inputs=("x",), description="simple 1-period returns"),
        Indicator(name="log_returns", module=_ROLL, inputs=("x",), description="1-period log returns"),
        Indicator(name="rolling_sum", module=_ROLL, inputs=("x",), params=(_window(),)),
        Indicator(name="rolling_mean", module=_ROLL, inputs=("x",), params=(_window(),), description="simple moving average"),
        Indicator(name="rolling_var", module=_ROLL, inputs=("x",), params=(_window(2),), description="sample variance (ddof=1)"),
        Indicator(name="rolling_std", module=_ROLL, inputs=("x",), params=(_window(2),), description="sample standard deviation"),
        Indicator(name="rolling_zscore", module=_ROLL, inputs=("x",), params=(_window(2),)),
        Indicator(name="rolling_min", module=_EXT, inputs=("x",), params=(_window(),)),
        Indicator(name="rolling_max", module=_EXT, inputs=("x",), params=(_window(),)),
        Indicator(name="rolling_corr", module=_COV, inputs=("x", "y"), params=(_window(2),)),
        Indicator(name="rolling_beta", module=_COV, inputs=("x", "y"), params=(_window(2),), description="cov(x, y) / var(y)"),
        Indicator(name="ema", module=_IND, inputs=("x",), params=(Param(name="span", kind=int),), description="exponential moving average, alpha = 2/(span+1)"),
        Indicator(name="wma", module=_IND, inputs=("x",), params=(_window(),), description="linearly weighted moving average"),
        Indicator(
            name="macd",
            module=_IND,
            inputs=("x",),
            params=(Param(name="fast", kind=int, default=12), Param(name="slow", kind=int, default=26), Param(name="signal", kind=int, default=9)),
            outputs=("macd", "signal", "hist"),
            grid_takes_all_params=True,
        ),
        Indicator(
            name="bollinger",
            module=_IND,
            inputs=("x",),
            params=(_window(default=20), Param(name="k", kind=float, default=2.0, minimum=0)),
            outputs=("upper", "middle", "lower"),
            description="mean +/- k population std",
            grid_takes_all_params=True,
        ),
        Indicator(name="rsi", module=_IND, inputs=("x",), params=(Param(name="period", kind=int, default=14),), description="Wilder's RSI"),
        Indicator(name="atr", module=_IND, inputs=("high", "low", "close"), params=(Param(name="period", kind=int, default=14),), description="Wilder's average true range"),
        Indicator(name="vwap", module=_VOL, inputs=("price", "volume"), description="cumulative volume-weighted average price"),
        Indicator(name="rolling_vwap", module=_VOL, inputs=("price", "volume"), params=(_window(),)),
        Indicator(name="obv", module=_VOL, inputs=("close", "volume"), description="on-balance volume"),
        Indicator(
            name="realised_vol",
            module=_ROLL,
            inputs=("x",),
            params=(_window(2), Param(name="periods_per_year", kind=float, default=252.0, minimum=0, inclusive=False)),
            description="annualised rolling std of log returns",
        ),
    )
}


def names() -> list[str]:
    """Names of every indicator."""
    return sorted(_REGISTRY)


def indicator(name: str) -> Indicator:
    """The :class:`Indicator` called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f"; known: {', '.join(names())}"
        msg = f"unknown indicator {name!r}{hint}"
        raise ConfigError(msg) from None
