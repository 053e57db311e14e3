"""Traces thinned for display: min and max per bucket on a time axis shared by every channel.

A 10-minute trace at 10 Hz has 6000 samples per channel; a plot a few hundred pixels wide shows
no more than a few hundred. Each bucket keeps its lowest and its highest value (in the order they
happened), so spikes and dips survive; only the timing within a bucket is blurred (the two points
sit at the bucket's first and last sample time). Raw samples stay in the results folder.
"""

from __future__ import annotations

import math

import numpy as np


def _decimals(values: np.ndarray, significant: int = 4) -> int:
    """Decimal places that keep `significant` digits of the channel's largest magnitude."""
    finite = np.abs(values[np.isfinite(values)])
    top = float(finite.max()) if finite.size else 0.0
    if top == 0:
        return 0
    return max(0, significant - 1 - math.floor(math.log10(top)))


def rounded(values: np.ndarray, significant: int = 4) -> list[float | None]:
    """Plain list for JSON: rounded per channel (shorter text, no visible change), NaN -> None."""
    out = np.round(values, _decimals(values, significant))
    return [None if v != v else v for v in out.tolist()]


def minmax_envelope(t_s: np.ndarray, columns: dict[str, np.ndarray], max_points: int) -> tuple[np.ndarray, dict]:
    """(x, {channel: y}) with at most max_points points per channel, x shared by all channels.

    Empty cells (NaN) are ignored within a bucket; a bucket with no value stays NaN (a gap)."""
    n = len(t_s)
    if n <= max_points:
        return t_s, columns
    n_buckets = max(1, max_points // 2)
    size = math.ceil(n / n_buckets)
    n_buckets = math.ceil(n / size)
    pad = n_buckets * size - n
    starts = np.arange(n_buckets) * size
    ends = np.minimum(starts + size, n) - 1
    x = np.empty(2 * n_buckets)
    x[0::2], x[1::2] = t_s[starts], t_s[ends]
    out = {}
    for name, y in columns.items():
        grid = np.concatenate([y, np.full(pad, np.nan)]).reshape(n_buckets, size)
        empty = np.isnan(grid).all(axis=1)
        i_lo = np.nanargmin(np.where(empty[:, None], 0.0, grid), axis=1)
        i_hi = np.nanargmax(np.where(empty[:, None], 0.0, grid), axis=1)
        rows = np.arange(n_buckets)
        lo, hi = grid[rows, i_lo], grid[rows, i_hi]
        first = np.where(i_lo <= i_hi, lo, hi)
        second = np.where(i_lo <= i_hi, hi, lo)
        y_out = np.empty(2 * n_buckets)
        y_out[0::2], y_out[1::2] = first, second
        y_out[np.repeat(empty, 2)] = np.nan
        out[name] = y_out
    return x, out
