"""The indicator API on Polars frames and arrays, against pandas per symbol."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

import ntlab.features as F
from ntlab.exceptions import ConfigError, DataError, EngineUnavailableError


@pytest.fixture(scope="module")
def long_frame() -> pl.DataFrame:
    rng = np.random.default_rng(3)
    parts = []
    for sym, n in (("A", 300), ("B", 250), ("C", 5)):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        parts.append(pl.DataFrame({"symbol": sym, "close": close, "bench": close * rng.uniform(0.9, 1.1, n)}))
    return pl.concat(parts)


def _pandas(frame: pl.DataFrame, fn) -> np.ndarray:
    pdf = frame.to_pandas()
    return pdf.groupby("symbol", sort=False, group_keys=False).apply(fn, include_groups=False).to_numpy()


def test_feature_over_symbols_equals_pandas(long_frame) -> None:
    out = long_frame.with_columns(sma=F.feature("rolling_mean", "close", window=20).over("symbol"))
    ref = _pandas(long_frame, lambda g: g["close"].rolling(20).mean())
    np.testing.assert_allclose(out["sma"].to_numpy(), ref, rtol=1e-12, equal_nan=True)
    assert out.filter(pl.col("symbol") == "C")["sma"].is_nan().all()  # shorter than the window


def test_namespace_and_two_inputs(long_frame) -> None:
    out = long_frame.with_columns(
        std=pl.col("close").nt.rolling_std(window=30).over("symbol"),
        beta=pl.col("close").nt.rolling_beta("bench", window=30).over("symbol"),
    )
    std = _pandas(long_frame, lambda g: g["close"].rolling(30).std())
    beta = _pandas(long_frame, lambda g: g["close"].rolling(30).cov(g["bench"]) / g["bench"].rolling(30).var())
    np.testing.assert_allclose(out["std"].to_numpy(), std, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(out["beta"].to_numpy(), beta, rtol=1e-9, equal_nan=True)
    with pytest.raises(ConfigError, match=r"unknown indicator 'rolling_stdev'; did you mean 'rolling_std'"):
        _ = pl.col("close").nt.rolling_stdev
    with pytest.raises(AttributeError):
        _ = pl.col("close").nt._private


def test_with_features_on_lazy_and_single_series(long_frame) -> None:
    feats = {"ret": F.feature("returns", "close"), "vol": F.feature("realised_vol", "close", window=20, periods_per_year=365.0)}
    lazy = F.with_features(long_frame.lazy(), feats).collect()
    ref = _pandas(long_frame, lambda g: np.log(g["close"]).diff().rolling(20).std() * np.sqrt(365.0))
    np.testing.assert_allclose(lazy["vol"].to_numpy(), ref, rtol=1e-9, equal_nan=True)
    one = F.with_features(long_frame.filter(pl.col("symbol") == "A").drop("symbol"), feats)
    np.testing.assert_allclose(one["ret"].to_numpy()[1:], np.diff(one["close"].to_numpy()) / one["close"].to_numpy()[:-1], rtol=1e-12)


def test_batch_1d_and_2d(long_frame) -> None:
    a = long_frame.filter(pl.col("symbol") == "A")["close"].to_numpy()[:250]
    b = long_frame.filter(pl.col("symbol") == "B")["close"].to_numpy()
    two = F.batch("rolling_max", np.column_stack([a, b]), window=10)
    np.testing.assert_array_equal(two[:, 0], F.batch("rolling_max", a, window=10))
    np.testing.assert_array_equal(two[:, 1], pd.Series(b).rolling(10).max().to_numpy())
    with pytest.raises(DataError, match=r"1-D or 2-D arrays of one shape, got shapes \[\(250,\), \(249,\)\]"):
        F.batch("rolling_corr", a, b[:-1], window=5)
    with pytest.raises(EngineUnavailableError, match="cupy"):
        F.batch("rolling_mean", a, window=5, engine="cupy")


def test_grid_equals_one_call_per_value(long_frame) -> None:
    close = long_frame.filter(pl.col("symbol") == "A")["close"]
    out = F.grid(close, "rolling_zscore", [5, 20, 60])
    assert out.columns == ["rolling_zscore_5", "rolling_zscore_20", "rolling_zscore_60"]
    for w in (5, 20, 60):
        np.testing.assert_array_equal(out[f"rolling_zscore_{w}"].to_numpy(), F.batch("rolling_zscore", close.to_numpy(), window=w))
    vol = F.grid(close.to_numpy(), "realised_vol", [10, 30], periods_per_year=52.0)
    np.testing.assert_array_equal(vol["realised_vol_30"].to_numpy(), F.batch("realised_vol", close.to_numpy(), window=30, periods_per_year=52.0))


def test_errors_name_the_value_and_the_fix(long_frame) -> None:
    with pytest.raises(ConfigError, match=r"window=0 must be finite and >= 1"):
        F.feature("rolling_mean", "close", window=0)
    with pytest.raises(ConfigError, match=r"window=1 must be finite and >= 2"):
        F.feature("rolling_std", "close", window=1)
    with pytest.raises(ConfigError, match=r"window=2.5 must be an int"):
        F.feature("rolling_mean", "close", window=2.5)
    with pytest.raises(ConfigError, match=r"parameter 'window' is required"):
        F.feature("rolling_mean", "close")
    with pytest.raises(ConfigError, match=r"rolling_mean has no parameter\(s\) \['span'\]; its parameters are \['window'\]"):
        F.feature("rolling_mean", "close", span=3)
    with pytest.raises(ConfigError, match=r"rolling_corr takes 2 input\(s\) \('x', 'y'\), got 1"):
        F.feature("rolling_corr", "close", window=3)
    with pytest.raises(ConfigError, match=r"periods_per_year=0.0 must be finite and > 0"):
        F.feature("realised_vol", "close", window=3, periods_per_year=0.0)
    with pytest.raises(ConfigError, match=r"unknown indicator 'zzz'; known: "):
        F.indicator("zzz")
    with_null = pl.DataFrame({"close": [1.0, None, 3.0]})
    with pytest.raises(DataError, match=r"'close' holds 1 null\(s\), the first at row 1; fill_null or drop_nulls"):
        with_null.select(F.feature("rolling_mean", "close", window=2))
    text = pl.DataFrame({"close": ["a", "b"]})
    with pytest.raises(DataError, match=r"must be numeric, got 'close' of dtype String"):
        text.select(F.feature("rolling_mean", "close", window=2))
    with pytest.raises(ConfigError, match="window is the swept parameter"):
        F.grid(long_frame["close"], "rolling_mean", [2], window=3)
    with pytest.raises(ConfigError, match="values for window is empty"):
        F.grid(long_frame["close"], "rolling_mean", [])
    with pytest.raises(ConfigError, match="no parameter to sweep"):
        F.grid(long_frame["close"], "returns", [1])
    with pytest.raises(ConfigError, match=r"rolling_mean takes 1 input array\(s\)"):
        F.batch("rolling_mean", np.ones(3), np.ones(3), window=2)
    assert "rolling_mean" in F.names()


def test_indicator_features_multi_output_and_multi_input(long_frame) -> None:
    a = long_frame.filter(pl.col("symbol") == "A").with_columns(high=pl.col("close") * 1.01, low=pl.col("close") * 0.99, volume=pl.lit(3.0))
    out = a.select(
        m=F.feature("macd", "close", fast=5, slow=12, signal=4),
        atr=F.feature("atr", "high", "low", "close", period=10),
        obv=pl.col("close").nt.obv("volume"),
        ema=pl.col("close").nt.ema(span=12),
    )
    close = a["close"].to_pandas()
    ema = lambda s, n: s.ewm(span=n, adjust=False).mean()  # noqa: E731
    macd_ref = ema(close, 5) - ema(close, 12)
    got = out["m"].struct.field("macd").to_numpy()
    np.testing.assert_allclose(got[11:], macd_ref.to_numpy()[11:], rtol=1e-9)
    assert np.isnan(got[:11]).all()  # warm-up of the slow EMA
    np.testing.assert_array_equal(out["atr"].to_numpy(), F.batch("atr", a["high"].to_numpy(), a["low"].to_numpy(), a["close"].to_numpy(), period=10))
    steps = np.sign(np.diff(a["close"].to_numpy()))
    np.testing.assert_array_equal(out["obv"].to_numpy(), np.r_[0.0, np.cumsum(steps * 3.0)])
    np.testing.assert_allclose(out["ema"].to_numpy()[11:], ema(close, 12).to_numpy()[11:], rtol=1e-12)
    bands = F.grid(a["close"], "bollinger", [10, 20], k=1.0)
    upper, middle, lower = F.batch("bollinger", a["close"].to_numpy(), window=20, k=1.0)
    np.testing.assert_array_equal(bands["bollinger_upper_20"].to_numpy(), upper)
    np.testing.assert_array_equal(bands["bollinger_lower_20"].to_numpy(), lower)
