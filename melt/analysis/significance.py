"""Two-sample significance for benchmark trials, standard library only.

Mann-Whitney U: no assumption of normality (trial times are skewed: a page fault or a preempted
thread makes one trial slow, never one fast). Exact null distribution for small samples without
ties, the normal approximation with tie and continuity correction otherwise. Holm's step-down
correction keeps the chance of any false alarm across a whole comparison under alpha.

The smallest two-sided exact p is 2 / C(n1 + n2, n1): 0.0079 for 5 vs 5, 1.1e-5 for 10 vs 10.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

EXACT_MAX_N = 40  # exact distribution up to this many samples per side (DP over n1 * n2 states)


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) and the sizes of tie groups."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = rank
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@lru_cache(maxsize=64)
def _u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """Number of arrangements giving each U = 0..n1*n2 under the null (no ties)."""
    # f[m][u] for samples (i, m): f_i(u) = f_{i-1}(u - m) + f_i'(u) built by the usual recursion
    # on the largest element; done as a table over n2 for each n1 step.
    prev = [[1] for _ in range(n2 + 1)]  # i = 0: one arrangement, U = 0, for every m
    for i in range(1, n1 + 1):
        cur = [[1]]  # m = 0: U = 0
        for m in range(1, n2 + 1):
            a = prev[m]  # largest element is from sample 1: it beats all m -> shift by m
            b = cur[m - 1]  # largest element is from sample 2: U unchanged
            size = i * m + 1
            row = [0] * size
            for u, c in enumerate(a):
                row[u + m] += c
            for u, c in enumerate(b):
                row[u] += c
            cur.append(row)
        prev = cur
    return tuple(prev[n2])


def mann_whitney_p(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Two-sided p-value that x and y come from the same distribution; None when untestable."""
    n1, n2 = len(x), len(y)
    if n1 < 2 or n2 < 2:
        return None
    ranks, ties = _ranks(list(x) + list(y))
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    if not ties and n1 <= EXACT_MAX_N and n2 <= EXACT_MAX_N:
        counts = _u_counts(n1, n2)
        total = sum(counts)
        u = int(round(u1))
        lower = sum(counts[: u + 1]) / total
        upper = sum(counts[u:]) / total
        return min(1.0, 2 * min(lower, upper))
    n = n1 + n2
    mean = n1 * n2 / 2
    tie_term = sum(t**3 - t for t in ties) / (n * (n - 1))
    var = n1 * n2 / 12 * ((n + 1) - tie_term)
    if var <= 0:
        return 1.0  # every value identical
    z = (abs(u1 - mean) - 0.5) / math.sqrt(var)
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))


def min_p(n1: int, n2: int) -> float:
    """The smallest two-sided p a rank test can give for these sample sizes (no ties)."""
    return min(1.0, 2 / math.comb(n1 + n2, n1))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None and does not count in the family)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(tested)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """Two-sided p of Student's t with df degrees of freedom."""
    return betainc(df / 2, 0.5, df / (df + t * t))


def run_level_p(history: Sequence[float], new: float) -> float | None:
    """Is `new` (one run's median) from the population of earlier runs' medians? A prediction
    t-test on the log scale (changes are ratios): t = (ln new - mean) / (sd * sqrt(1 + 1/n)).
    None with fewer than 3 earlier runs, or no spread among them."""
    if len(history) < 3 or new <= 0 or any(h <= 0 for h in history):
        return None
    logs = [math.log(h) for h in history]
    n = len(logs)
    mean = sum(logs) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (n - 1))
    if sd == 0:
        return None
    t = (math.log(new) - mean) / (sd * math.sqrt(1 + 1 / n))
    return t_two_sided_p(t, n - 1)
