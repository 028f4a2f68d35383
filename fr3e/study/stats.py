"""The statistics behind every table and verdict: pure functions on lists of numbers.

No DataFrames, files or models here; `fr3e.study.report` aggregates runs into the numbers these functions take,
`fr3e.study.claims` turns their intervals into verdicts. Every interval is two-sided 95%.

- `t_interval`: Student t-interval of a mean (n − 1 degrees of freedom).
- `paired_t_interval`: the same on per-seed paired differences (FR3E seed s − GRPO++ seed s); pairing by
  seed removes what the two arms share (base model, data order, evaluation problems).
- `paired_bootstrap_interval`: percentile bootstrap of the mean paired difference, for the case where each
  arm has one value per unit (problem, step) but not several seeds. Resamples units, keeping pairs.
- `welch_interval` / `diff_of_diffs_interval`: difference of two independent means (Welch–Satterthwaite
  degrees of freedom, rounded down, which widens the interval); a difference of differences ("the gain
  is smaller on the math model") is the Welch interval of two sets of per-seed differences.
- `seeds_for_half_width`: how many seeds a t-interval needs to reach a half-width (what halving one takes).
- `variance_split`: the variance of per-seed differences split into evaluation noise and seed-to-seed noise.
- `verdict`: `holds` when the interval excludes 0 in the paper's direction, `contradicted` when it
  excludes 0 in the other direction, `inconclusive` when it contains 0 (a closed interval: an end at
  exactly 0 contains 0) or does not exist, `not testable here` when it has no width (every seed gave the
  same difference, as when the world fixes the quantity). Never from point estimates.
- `t_two_sided_p` / `p_from_t_interval`: the two-sided p-value of a t-interval's estimate against 0 (the
  Student t distribution function through the regularised incomplete beta function, Lentz's continued
  fraction); `holm`: Holm's step-down adjustment of a family of p-values (the primary claims).

Deviation from a statistics package: the t quantile comes from a table (exact for df ≤ 20, 25, 30, 40,
60, 120; linear in 1/df between, off by < 0.002 at df 21–119), so the package needs no SciPy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

HOLDS, CONTRADICTED, INCONCLUSIVE = "holds", "contradicted", "inconclusive"
NOT_TESTABLE = "not testable here"
VERDICTS = (HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)

_T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 7: 2.3646, 8: 2.3060, 9: 2.2622,
         10: 2.2281, 11: 2.2010, 12: 2.1788, 13: 2.1604, 14: 2.1448, 15: 2.1314, 16: 2.1199, 17: 2.1098,
         18: 2.1009, 19: 2.0930, 20: 2.0860, 25: 2.0595, 30: 2.0423, 40: 2.0211, 60: 2.0003, 120: 1.9799}
"""Student t 97.5% quantiles (any statistics table)."""
_Z975 = 1.959964


def t_quantile_975(df: int) -> float:
    """Student t 97.5% quantile (two-sided 95%) for `df` ≥ 1 degrees of freedom (table; linear in 1/df between)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df in _T975:
        return _T975[df]
    keys = sorted(_T975)
    if df > keys[-1]:  # towards the normal quantile, linear in 1/df
        return _Z975 + (_T975[keys[-1]] - _Z975) * keys[-1] / df
    lo = max(k for k in keys if k < df)
    hi = min(k for k in keys if k > df)
    w = (1 / df - 1 / hi) / (1 / lo - 1 / hi)
    return _T975[hi] + w * (_T975[lo] - _T975[hi])


def finite(values: Sequence[float]) -> np.ndarray:
    """The finite values as float64 (None and nan dropped: a run that did not measure it)."""
    return np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1 (nan for one value), count) of the finite values."""
    x = finite(values)
    if x.size == 0:
        return math.nan, math.nan, 0
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan, int(x.size)


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): 95% Student t-interval of the mean, mean ± t(n−1) · s / √n; (mean, nan, nan) for n < 2."""
    m, s, n = mean_std(values)
    if n < 2:
        return m, math.nan, math.nan
    half = t_quantile_975(n - 1) * s / math.sqrt(n)
    return m, m - half, m + half


def paired_t_interval(diffs: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high) of a 95% t-interval on paired differences (one per seed); (mean, nan, nan) for one pair."""
    return t_interval(diffs)


def paired_bootstrap_interval(a: Sequence[float], b: Sequence[float], resamples: int = 10_000,
                              seed: int = 0) -> tuple[float, float, float]:
    """(mean of b − a, low, high): 95% percentile bootstrap of the mean paired difference.

    a, b: (N,) values of the two arms on the same N units (problems, steps), unit i paired with unit i.
    Draws `resamples` sets of N unit indices with replacement (numpy Generator seeded with `seed`), so the
    result is deterministic. (mean, nan, nan) for N < 2.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired arms need the same 1-D shape, got {a.shape} and {b.shape}")
    d = b - a  # (N,)
    if d.size < 2:
        return (float(d.mean()) if d.size else math.nan), math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, d.size, size=(resamples, d.size))  # (R, N)
    means = d[idx].mean(axis=1)  # (R,)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(d.mean()), float(low), float(high)


def welch_interval(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float,
                   n_b: int) -> tuple[float, float, float]:
    """(mean_a − mean_b, low, high): 95% Welch interval of a difference of two independent means.

    Standard error √(s_a²/n_a + s_b²/n_b); degrees of freedom by Welch–Satterthwaite, rounded down (never
    below min(n_a, n_b) − 1). Needs n ≥ 2 on both sides, else (difference, nan, nan).
    """
    diff = mean_a - mean_b
    if n_a < 2 or n_b < 2 or not (np.isfinite(sd_a) and np.isfinite(sd_b)):
        return diff, math.nan, math.nan
    va, vb = sd_a ** 2 / n_a, sd_b ** 2 / n_b
    se = math.sqrt(va + vb)
    floor_df = min(n_a, n_b) - 1
    df = floor_df if se == 0 else (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    half = t_quantile_975(max(floor_df, math.floor(df + 1e-9))) * se
    return diff, diff - half, diff + half


def diff_of_diffs_interval(diffs_a: Sequence[float], diffs_b: Sequence[float]) -> tuple[float, float, float]:
    """(mean(diffs_a) − mean(diffs_b), low, high): is the paired difference larger in setting a than in b?

    diffs_a, diffs_b: per-seed paired differences (e.g. FR3E − GRPO++) in two independent settings (two base
    models, each trained on its own); Welch interval of the difference of their means.
    """
    ma, sa, na = mean_std(diffs_a)
    mb, sb, nb = mean_std(diffs_b)
    return welch_interval(ma, sa, na, mb, sb, nb)


def sd_from_t_interval(low: float, high: float, n: int) -> float:
    """The sample std s behind a t-interval mean ± t(n−1)·s/√n (inverts `t_interval`); nan without one."""
    if n < 2 or not (np.isfinite(low) and np.isfinite(high)):
        return math.nan
    return (high - low) / 2 * math.sqrt(n) / t_quantile_975(n - 1)


def seeds_for_half_width(sd: float, half_width: float, max_seeds: int = 10_000) -> int | None:
    """The fewest seeds n ≥ 2 whose 95% t-interval, t(n−1) · sd / √n, is at most `half_width`.

    sd: the sample std of the per-seed values (assumed not to change with more seeds). The t quantile shrinks
    as n grows, so halving a half-width measured with n seeds takes a little fewer than 4n seeds. None when
    sd or half_width is not a positive finite number, or more than `max_seeds` would be needed.
    """
    if not (np.isfinite(sd) and np.isfinite(half_width)) or half_width <= 0:
        return None
    if sd == 0:
        return 2
    for n in range(2, max_seeds + 1):
        if t_quantile_975(n - 1) * sd / math.sqrt(n) <= half_width:
            return n
    return None


def variance_split(total_sd: float, eval_var: float) -> dict:
    """Split the variance of per-seed differences into evaluation noise and seed-to-seed (training) noise.

    total_sd: sample std of the per-seed differences; eval_var: the evaluation-noise variance of one
    difference (same units²). seed_var = max(total_sd² − eval_var, 0). Returns eval_sd, seed_sd (√ of each),
    eval_share (eval_var / total_sd², capped at 1) and dominant: "seeds" or "evaluation" (the larger part),
    or "unknown" when either input is missing.
    """
    if not (np.isfinite(total_sd) and np.isfinite(eval_var)) or eval_var < 0:
        return {"eval_sd": math.sqrt(eval_var) if np.isfinite(eval_var) and eval_var >= 0 else math.nan,
                "seed_sd": math.nan, "eval_share": math.nan, "dominant": "unknown"}
    total = total_sd ** 2
    seed_var = max(total - eval_var, 0.0)
    share = min(1.0, eval_var / total) if total > 0 else (1.0 if eval_var > 0 else math.nan)
    dominant = "evaluation" if eval_var > seed_var else "seeds"
    return {"eval_sd": math.sqrt(eval_var), "seed_sd": math.sqrt(seed_var), "eval_share": share,
            "dominant": dominant}


def verdict(low: float, high: float, direction: int = 1) -> str:
    """`holds` / `contradicted` / `inconclusive` from a 95% interval of (FR3E − baseline) or a like difference.

    direction: +1 when the paper says the difference is positive, −1 when negative. The interval is closed:
    [0, 2] contains 0 and is inconclusive. A missing interval (nan) is inconclusive; one without width
    ([0, 0], [1.5, 1.5]) is `not testable here`: every seed agreed exactly, so no interval can be formed.
    """
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return INCONCLUSIVE
    if low > high:
        raise ValueError(f"interval low {low} > high {high}")
    if high - low <= 1e-12 * max(1.0, abs(low), abs(high)):  # no width: nothing varied, nothing to test
        return NOT_TESTABLE
    if low > 0:
        return HOLDS if direction > 0 else CONTRADICTED
    if high < 0:
        return CONTRADICTED if direction > 0 else HOLDS
    return INCONCLUSIVE


def _betacf(a: float, b: float, x: float, iterations: int = 300, eps: float = 1e-15) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, iterations + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))  # even step
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))  # odd step
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularised incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's T with `df` degrees of freedom: I_{df/(df+t²)}(df/2, 1/2)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if not math.isfinite(t):
        return 0.0 if not math.isnan(t) else math.nan
    return regularized_beta(df / 2.0, 0.5, df / (df + t * t))


def p_from_t_interval(estimate: float, low: float, high: float, n: int) -> float:
    """Two-sided p-value against 0 of a 95% t-interval [low, high] of a mean over n paired values (df n − 1).

    The standard error is the half-width over the 97.5% quantile; nan without an interval; 1.0 for an
    interval without width and an estimate of 0, 0.0 for one without width away from 0."""
    if n < 2 or low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return math.nan
    se = (high - low) / 2.0 / t_quantile_975(n - 1)
    if se <= 0:
        return 1.0 if estimate == 0 else 0.0
    return t_two_sided_p(estimate / se, n - 1)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (nan stays nan and is not counted).

    Sorted ascending p_(1) <= ... <= p_(m): adjusted p_(i) = max over j <= i of min(1, (m − j + 1) p_(j)).
    A claim is significant at family-wise level α when its adjusted p-value is below α."""
    p = [float(x) for x in p_values]
    valid = sorted((x, i) for i, x in enumerate(p) if not math.isnan(x))
    m = len(valid)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, (x, i) in enumerate(valid):
        running = max(running, min(1.0, (m - rank) * x))
        out[i] = running
    return out


def fmt_signed(x: float, digits: int = 1) -> str:
    """"+1.2" / "−1.2" (a true minus sign) / "nan"."""
    if x is None or not np.isfinite(x):
        return "nan"
    s = f"{x:+.{digits}f}"
    return s.replace("-", "−")


def fmt_interval(estimate: float, low: float, high: float, digits: int = 1) -> str:
    """"+0.0 [−1.0, +1.1]"; "+0.0 (no interval)" when there is none."""
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return f"{fmt_signed(estimate, digits)} (no interval)"
    return f"{fmt_signed(estimate, digits)} [{fmt_signed(low, digits)}, {fmt_signed(high, digits)}]"


def fmt_verdict(estimate: float, low: float, high: float, direction: int = 1, digits: int = 1) -> str:
    """The verdict with its interval beside it: "inconclusive (+0.0 [−1.0, +1.1])"; an interval without width
    says why it cannot be tested."""
    name = verdict(low, high, direction)
    if name == NOT_TESTABLE:
        return (f"{name} ({fmt_interval(estimate, low, high, digits)}: every seed gave the same difference, "
                "so the world fixes this quantity or nothing varied)")
    return f"{name} ({fmt_interval(estimate, low, high, digits)})"


def fmt_mean_std(mean: float, std: float, digits: int = 1) -> str:
    """"41.2 ± 3.1"; one seed (std nan) gives "41.2"; no value gives "–"."""
    if mean is None or not np.isfinite(mean):
        return "–"
    if std is None or not np.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
