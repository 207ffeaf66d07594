"""Synthetic generators: reproducible, schema-conforming, and statistically what they claim.

The tolerances are several standard errors wide for the fixed seeds, so the checks cannot flake.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import polars as pl
import pytest

from ntlab.data import synthetic
from ntlab.data.schemas import TS, conform
from ntlab.data.synthetic import (
    YEAR,
    correlated_bars,
    gbm_bars,
    jump_diffusion_bars,
    regime_switching_bars,
    trade_ticks,
)
from ntlab.exceptions import ConfigError

UTC = dt.UTC
MINUTES_PER_YEAR = YEAR / dt.timedelta(minutes=1)

GENERATORS: dict[str, tuple[str, Callable[[int], pl.DataFrame]]] = {
    "gbm": ("bars", lambda seed: gbm_bars(500, seed=seed)),
    "jumps": ("bars", lambda seed: jump_diffusion_bars(500, jump_intensity=5_000.0, seed=seed)),
    "regimes": ("bars", lambda seed: regime_switching_bars(500, seed=seed).bars),
    "correlated": ("bars", lambda seed: correlated_bars(500, seed=seed)),
    "ticks": ("trades", lambda seed: trade_ticks(500, seed=seed)),
}


def _log_returns(bars: pl.DataFrame) -> np.ndarray:
    close = bars["close"].to_numpy()
    return np.diff(np.log(np.concatenate([[bars["open"][0]], close])))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_same_seed_same_frame_other_seed_other_frame(name: str) -> None:
    _, make = GENERATORS[name]
    assert make(1).equals(make(1))
    assert not make(1).equals(make(2))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_frames_conform_to_their_schema(name: str) -> None:
    kind, make = GENERATORS[name]
    frame = make(3)
    assert conform(frame, kind).equals(frame)
    assert frame["ts"].dtype == TS
    assert frame.null_count().sum_horizontal().item() == 0
    assert frame["ts"].is_sorted()


@pytest.mark.parametrize("name", ["gbm", "jumps", "regimes", "correlated"])
def test_ohlc_is_consistent_and_bars_are_contiguous(name: str) -> None:
    bars = GENERATORS[name][1](5)
    hi, lo = bars["high"], bars["low"]
    assert (hi >= bars[["open", "close"]].max_horizontal()).all()
    assert (lo <= bars[["open", "close"]].min_horizontal()).all()
    assert (lo > 0).all() and (bars["volume"] > 0).all()
    for _, one in bars.group_by("symbol"):
        assert one["open"][1:].equals(one["close"][:-1], check_names=False)
        assert (one["ts"].diff().drop_nulls() == dt.timedelta(minutes=1)).all()


def test_bars_stay_continuous_across_generation_chunks() -> None:
    n = synthetic._CHUNK_BARS + 10
    bars = gbm_bars(n, substeps=2, seed=4)
    edge = synthetic._CHUNK_BARS
    assert bars["open"][edge] == bars["close"][edge - 1]
    assert bars["ts"][-1] == dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=n - 1)


def test_start_freq_and_symbol_are_honoured() -> None:
    aware = dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    bars = gbm_bars(3, symbol="QQQ", start=aware, freq=dt.timedelta(seconds=30), seed=1)
    assert bars["symbol"].to_list() == ["QQQ"] * 3
    assert bars["ts"].to_list() == [
        dt.datetime(2024, 3, 1, 14, 30, s, tzinfo=UTC) for s in (0, 30)
    ] + [dt.datetime(2024, 3, 1, 14, 31, tzinfo=UTC)]
    assert gbm_bars(1, start=dt.date(2020, 2, 2), freq="1d", seed=1)["ts"][0] == dt.datetime(
        2020, 2, 2, tzinfo=UTC
    )
    assert gbm_bars(2, start="2020-02-02T12:00", freq="250ms", seed=1)["ts"].to_list() == [
        dt.datetime(2020, 2, 2, 12, tzinfo=UTC),
        dt.datetime(2020, 2, 2, 12, 0, 0, 250_000, tzinfo=UTC),
    ]


# ------------------------------------------------------------------- statistics
def test_gbm_realised_volatility_matches_sigma() -> None:
    bars = gbm_bars(100_000, sigma=0.35, mu=0.0, seed=11)
    realised = _log_returns(bars).std() * np.sqrt(MINUTES_PER_YEAR)
    assert realised == pytest.approx(0.35, rel=0.03)  # standard error is about 0.2 %


def test_gbm_drift_shows_over_a_long_daily_path() -> None:
    bars = gbm_bars(20_000, freq="1d", mu=0.5, sigma=0.05, substeps=1, seed=2)
    years = 20_000 / 365
    growth = np.log(bars["close"][-1] / 100.0) / years
    assert growth == pytest.approx(0.5 - 0.5 * 0.05**2, abs=0.01)  # se 0.05/sqrt(54.8) = 0.007


def test_correlated_returns_match_the_target_matrix() -> None:
    corr = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 1.0]])
    bars = correlated_bars(
        20_000, symbols=["A", "B", "C"], corr=corr, sigma=[0.2, 0.4, 0.8], s0=[10, 20, 30], seed=3
    )
    returns = np.column_stack([_log_returns(bars.filter(symbol=s)) for s in "ABC"])
    assert np.allclose(np.corrcoef(returns.T), corr, atol=0.03)  # se about 0.007
    vols = returns.std(axis=0) * np.sqrt(MINUTES_PER_YEAR)
    assert np.allclose(vols, [0.2, 0.4, 0.8], rtol=0.04)
    assert bars.filter(symbol="C")["open"][0] == 30.0


def test_perfectly_correlated_assets_move_together() -> None:
    bars = correlated_bars(200, symbols=["X", "Y"], corr=[[1, 1], [1, 1]], seed=5)
    x, y = (bars.filter(symbol=s)["close"].to_numpy() for s in "XY")
    assert np.allclose(x, y, rtol=1e-12)


def test_jump_counts_match_the_intensity() -> None:
    # no diffusion and fixed jump sizes: each bar's return is drift + 0.05 * (jumps in the bar)
    intensity, size = 500.0, 0.05
    bars = jump_diffusion_bars(
        8_760, freq="1h", sigma=0.0, jump_intensity=intensity, jump_mean=size, jump_std=0.0, seed=6
    )
    drift = -intensity * np.expm1(size) / 8_760
    counts = np.rint((_log_returns(bars) - drift) / size)
    assert np.allclose((_log_returns(bars) - drift) / size, counts, atol=1e-6)
    assert counts.sum() == pytest.approx(intensity, rel=0.15)  # Poisson sd 22, i.e. 4.5 %
    assert counts.max() >= 2  # several jumps can land in one bar


def test_jump_diffusion_keeps_the_expected_growth_rate() -> None:
    # mu is compensated for the jumps: the mean of exp(return) per bar is exp(mu * dt)
    bars = jump_diffusion_bars(
        50_000, freq="1d", mu=0.1, sigma=0.1, jump_intensity=20.0, jump_mean=-0.05, jump_std=0.05,
        substeps=1, seed=7,
    )
    gross = np.exp(_log_returns(bars)).mean()
    assert gross == pytest.approx(np.exp(0.1 / 365), abs=3e-4)  # se about 6e-5


def test_regime_durations_and_volatilities_match_the_chain() -> None:
    transition = [[0.98, 0.02], [0.05, 0.95]]
    bars, regimes = regime_switching_bars(
        200_000, transition=transition, sigmas=[0.1, 0.5], mus=[0.0, 0.0], seed=8
    )
    assert regimes.dtype == np.int8 and regimes.shape == (200_000,)
    change = np.flatnonzero(np.diff(regimes)) + 1
    runs = np.diff(np.concatenate([[0], change, [regimes.size]]))
    states = regimes[np.concatenate([[0], change])]
    assert runs[states == 0][:-1].mean() == pytest.approx(50.0, rel=0.1)  # se about 2 %
    assert runs[states == 1][:-1].mean() == pytest.approx(20.0, rel=0.1)
    assert (regimes == 0).mean() == pytest.approx(0.05 / 0.07, abs=0.03)  # stationary share
    returns = _log_returns(bars)
    for state, sigma in [(0, 0.1), (1, 0.5)]:
        realised = returns[regimes == state].std() * np.sqrt(MINUTES_PER_YEAR)
        assert realised == pytest.approx(sigma, rel=0.03)


def test_three_regimes_with_forced_and_absorbing_moves() -> None:
    transition = [[0.0, 0.5, 0.5], [0.3, 0.7, 0.0], [0.0, 0.0, 1.0]]
    _, regimes = regime_switching_bars(
        500, mus=[0, 0, 0], sigmas=[0.1, 0.2, 0.3], transition=transition, seed=9
    )
    assert regimes[0] == 0
    first_two = int(np.argmax(regimes == 2))
    assert regimes[first_two] == 2 and (regimes[first_two:] == 2).all()  # absorbing
    zeros = np.flatnonzero(regimes[:first_two] == 0)
    assert (np.diff(zeros) > 1).all() if zeros.size > 1 else True  # regime 0 never stays


def test_fast_switching_regimes_cover_every_bar() -> None:
    _, regimes = regime_switching_bars(
        100_000, transition=[[0.1, 0.9], [0.9, 0.1]], initial_regime=1, seed=10
    )
    assert regimes[0] == 1 and regimes.size == 100_000
    assert (regimes == 0).mean() == pytest.approx(0.5, abs=0.02)


def test_trade_prices_sit_on_the_tick_grid_and_bounce() -> None:
    ticks = trade_ticks(200_000, price0=1640.0, tick_size=0.25, sigma=0.05, seed=12)
    steps = ticks["price"].to_numpy() / 0.25
    assert np.array_equal(steps, np.round(steps))
    changes = np.diff(ticks["price"].to_numpy())
    lag1 = np.corrcoef(changes[:-1], changes[1:])[0, 1]
    assert lag1 < -0.3  # bid/ask bounce (ES shows -0.31)
    buys = ticks.filter(side=1)["price"].mean()
    sells = ticks.filter(side=-1)["price"].mean()
    assert buys > sells  # buys lift the ask, sells hit the bid
    assert set(ticks["side"].unique().to_list()) == {-1, 1}
    assert ticks.filter(side=1).height / ticks.height == pytest.approx(0.5, abs=0.01)
    assert ticks["trade_id"].to_list()[:3] == [0, 1, 2]


@pytest.mark.parametrize(
    ("tick", "text"), [(0.01, "{:.2f}"), (0.3, "{:.1f}"), (5.0, "{:.0f}"), (1e-5, "{:.5f}")]
)
def test_prices_print_as_exact_decimals_of_the_tick(tick: float, text: str) -> None:
    ticks = trade_ticks(2_000, price0=5_000 * tick, tick_size=tick, sigma=0.3, seed=13)
    for price in ticks["price"].head(50).to_list():
        assert float(text.format(price)) == price
        assert abs(price / tick - round(price / tick)) < 1e-9


def test_sizes_are_whole_or_fractional_lots() -> None:
    whole = trade_ticks(10_000, seed=14)["size"].to_numpy()
    assert np.array_equal(whole, np.round(whole)) and whole.min() >= 1.0
    frac = trade_ticks(10_000, lot_size=0.001, seed=14)["size"].to_numpy()
    assert np.allclose(frac * 1000, np.round(frac * 1000), atol=1e-9)
    assert frac.min() >= 0.001 and not np.array_equal(frac, np.round(frac))


def test_trade_arrivals_are_poisson() -> None:
    ticks = trade_ticks(200_000, mean_interarrival=0.25, start="2024-06-01", seed=15)
    ts = ticks["ts"].to_physical().to_numpy()
    gaps = np.diff(ts) / 1e9
    assert (gaps >= 0).all()
    assert gaps.mean() == pytest.approx(0.25, rel=0.02)  # se 0.22 %
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.03)  # exponential: cv 1
    first = ticks["ts"][0]
    assert dt.datetime(2024, 6, 1, tzinfo=UTC) < first < dt.datetime(2024, 6, 1, 0, 0, 5, tzinfo=UTC)


def test_tick_volatility_matches_sigma_over_long_horizons() -> None:
    ticks = trade_ticks(100_000, mean_interarrival=60.0, sigma=0.4, tick_size=0.0001, seed=16)
    hourly = ticks.group_by_dynamic("ts", every="1d").agg(pl.col("price").last())
    returns = np.diff(np.log(hourly["price"].to_numpy()))
    assert returns.std() * np.sqrt(365) == pytest.approx(0.4, rel=0.25)  # 69 days: se 9 %


# ------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: gbm_bars(0, seed=1), "n must be a positive integer, got 0"),
        (lambda: gbm_bars(True, seed=1), "n must be a positive integer, got True"),
        (lambda: gbm_bars(5, sigma=-0.1, seed=1), r"sigma must be finite and >= 0, got -0.1"),
        (lambda: gbm_bars(5, sigma=float("nan"), seed=1), "sigma must be finite"),
        (lambda: gbm_bars(5, s0=0.0, seed=1), "s0 must be finite and > 0"),
        (lambda: gbm_bars(5, seed=-1), "seed must be a non-negative integer"),
        (lambda: gbm_bars(5, seed=None), "seed must be a non-negative integer, got None"),
        (lambda: gbm_bars(5, freq="1mo", seed=1), "freq='1mo' uses the calendar unit 'mo'"),
        (lambda: gbm_bars(5, freq="5 minutes", seed=1), "freq='5 minutes' is not a duration"),
        (lambda: gbm_bars(5, freq=1.5, seed=1), "freq=1.5 is not a duration"),
        (lambda: gbm_bars(5, freq="0s", seed=1), "must be a positive duration"),
        (lambda: gbm_bars(5, freq=dt.timedelta(0), seed=1), "must be a positive duration"),
        (lambda: gbm_bars(5, substeps=0, seed=1), "substeps must be an integer >= 1"),
        (lambda: gbm_bars(5, start="soon", seed=1), "start='soon' is not an ISO date"),
        (lambda: gbm_bars(5, start=17, seed=1), "start must be a datetime, date or ISO string"),
        (lambda: jump_diffusion_bars(5, jump_intensity=-1.0, seed=1), "jump_intensity must be"),
        (lambda: jump_diffusion_bars(5, jump_std=-0.1, seed=1), "jump_std must be finite"),
        (lambda: correlated_bars(5, corr=[[1, 2], [2, 1]], seed=1), r"entries in \[-1, 1\]"),
        (lambda: correlated_bars(5, corr=[[1, 0.5], [0.4, 1]], seed=1), "symmetric"),
        (lambda: correlated_bars(5, corr=[[2, 0], [0, 1]], seed=1), "unit diagonal"),
        (lambda: correlated_bars(5, corr=np.eye(3), seed=1), r"must be 2x2.*shape \(3, 3\)"),
        (
            lambda: correlated_bars(
                5, symbols="ABC", corr=[[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]], seed=1
            ),
            "not positive semi-definite",
        ),
        (lambda: correlated_bars(5, symbols=["A", "A"], seed=1), "distinct and not empty"),
        (lambda: correlated_bars(5, sigma=[0.1, 0.2, 0.3], seed=1), "sigma must be one number"),
        (lambda: correlated_bars(5, s0=[1.0, -1.0], seed=1), "s0 must be finite and > 0"),
        (lambda: regime_switching_bars(5, transition=[[0.5, 0.6], [0.5, 0.5]], seed=1),
         "must sum to 1"),
        (lambda: regime_switching_bars(5, transition=[[1.5, -0.5], [0.5, 0.5]], seed=1),
         r"lie in \[0, 1\]"),
        (lambda: regime_switching_bars(5, transition=np.eye(3), seed=1), "must be a 2x2 matrix"),
        (lambda: regime_switching_bars(5, mus=[0.0], sigmas=[0.1], seed=1), "two or more"),
        (lambda: regime_switching_bars(5, sigmas=[0.1, 0.2, 0.3], seed=1), "one per regime"),
        (lambda: regime_switching_bars(5, sigmas=[0.1, -0.2], seed=1), "sigmas must be >= 0"),
        (lambda: regime_switching_bars(5, initial_regime=2, seed=1), "initial_regime=2 is not"),
        (lambda: trade_ticks(5, tick_size=0.0, seed=1), "tick_size must be finite and > 0"),
        (lambda: trade_ticks(5, mean_interarrival=-1.0, seed=1), "mean_interarrival must be"),
        (lambda: trade_ticks(5, spread_ticks=0, seed=1), "spread_ticks must be an integer >= 1"),
        (lambda: trade_ticks(5, price0=-3.0, seed=1), "price0 must be finite and > 0"),
        (lambda: trade_ticks(-5, seed=1), "n must be a positive integer"),
        (lambda: trade_ticks(5, symbol="", seed=1), r"symbol='' cannot name a catalog folder"),
        (lambda: gbm_bars(5, symbol=7, seed=1), "symbol=7 must be a string such as 'BTCUSDT'"),
        (lambda: jump_diffusion_bars(5, symbol="a/b", seed=1), r"use 'a-b' instead"),
        (lambda: correlated_bars(5, symbols=["A", None], seed=1), r"symbols\[1\]=None must be"),
        (lambda: correlated_bars(5, symbols=["A", ".."], seed=1), r"symbols\[1\]='\.\.' cannot"),
    ],
)
def test_bad_parameters_raise_config_errors(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()


def test_wider_spreads_and_numpy_integers_are_accepted() -> None:
    ticks = trade_ticks(
        np.int64(1_000), spread_ticks=np.int64(3), tick_size=0.5, sigma=0.0, seed=np.int64(2)
    )
    prices = ticks["price"].unique().sort().to_list()
    assert len(prices) == 2 and prices[1] - prices[0] == 1.5
