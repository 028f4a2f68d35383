"""fr3e.study.stats: intervals and verdicts checked against arithmetic done by hand in the comments."""

from __future__ import annotations

import math

import pytest

from fr3e.study import stats


def test_t_quantile_table_and_interpolation():
    assert stats.t_quantile_975(2) == pytest.approx(4.3027, abs=1e-4)
    assert 1.96 < stats.t_quantile_975(1000) < stats.t_quantile_975(120)
    assert stats.t_quantile_975(22) == pytest.approx(2.0739, abs=2e-3)  # interpolated; exact 2.0739
    with pytest.raises(ValueError, match=">= 1"):
        stats.t_quantile_975(0)


def test_t_interval_of_three_numbers():
    # 2, 4, 9: mean 5; deviations −3, −1, +4 -> squares 9 + 1 + 16 = 26; s² = 26 / 2 = 13, s = 3.60555
    # se = s / √3 = √(13/3) = 2.08167; t(2) 97.5% = 4.3027 -> half = 4.3027 · 2.08167 = 8.95674
    m, lo, hi = stats.t_interval([2.0, 4.0, 9.0])
    assert (m, lo, hi) == pytest.approx((5.0, 5 - 8.95674, 5 + 8.95674), abs=1e-4)
    # one value: no interval
    m, lo, hi = stats.t_interval([5.0])
    assert m == 5.0 and math.isnan(lo) and math.isnan(hi)
    # non-finite values are dropped (a run that did not measure it): same as [2, 4, 9]
    assert stats.t_interval([2.0, float("nan"), 4.0, None, 9.0]) == pytest.approx((5.0, -3.95674, 13.95674),
                                                                                    abs=1e-4)


def test_paired_t_interval_on_per_seed_differences():
    # diffs 1, 2, 3: mean 2, s 1, se 1/√3 = 0.57735, half = 4.3027 · 0.57735 = 2.4842
    assert stats.paired_t_interval([1.0, 2.0, 3.0]) == pytest.approx((2.0, -0.4842, 4.4842), abs=1e-3)


def test_mean_std():
    # 40, 50, 60: mean 50, sample std √((100 + 0 + 100) / 2) = 10
    assert stats.mean_std([40, 50, 60]) == (50.0, 10.0, 3)
    m, s, n = stats.mean_std([7.0])
    assert (m, n) == (7.0, 1) and math.isnan(s)


def test_paired_bootstrap_with_fixed_seed():
    # differences b − a = 0, 0, 0, 10. A resample of 4 units holds k copies of the 10 with k ~ Binomial(4, 1/4),
    # so its mean is 2.5 k. P(k = 0) = (3/4)^4 = 0.316 > 0.025 -> the 2.5% percentile is 0.
    # P(k = 4) = 1/256 = 0.0039 < 0.025 but P(k >= 3) = 4 · (1/4)^3 · (3/4) + 1/256 = 0.0508 > 0.025
    # -> the 97.5% percentile is k = 3, i.e. 7.5 (10,000 resamples put it far inside that band).
    a = [1.0, 2.0, 3.0, 4.0]
    b = [1.0, 2.0, 3.0, 14.0]
    assert stats.paired_bootstrap_interval(a, b, resamples=10_000, seed=0) == (2.5, 0.0, 7.5)
    assert stats.paired_bootstrap_interval(a, b, resamples=10_000, seed=1) == (2.5, 0.0, 7.5)
    # constant differences: every resample has mean 1 -> [1, 1]
    assert stats.paired_bootstrap_interval([1, 2, 3], [2, 3, 4], seed=0) == (1.0, 1.0, 1.0)
    # deterministic in the seed
    x, y = [0.1, 0.5, 0.2, 0.9, 0.3], [0.3, 0.4, 0.6, 0.8, 0.9]
    assert stats.paired_bootstrap_interval(x, y, seed=3) == stats.paired_bootstrap_interval(x, y, seed=3)
    with pytest.raises(ValueError, match="same 1-D shape"):
        stats.paired_bootstrap_interval([1, 2], [1, 2, 3])


def test_welch_and_difference_of_differences():
    # a: per-seed gains 5, 5, 8 -> mean 6, s² = (1 + 1 + 4) / 2 = 3; b: 1, 2, 3 -> mean 2, s² = 1
    # va = 3/3 = 1, vb = 1/3; se = √(4/3) = 1.15470
    # Welch df = (4/3)² / (1²/2 + (1/3)²/2) = 1.77778 / 0.55556 = 3.2 -> 3; t(3) = 3.1824
    # half = 3.1824 · 1.15470 = 3.67473 -> 4 ± 3.67473
    d, lo, hi = stats.diff_of_diffs_interval([5.0, 5.0, 8.0], [1.0, 2.0, 3.0])
    assert (d, lo, hi) == pytest.approx((4.0, 0.32527, 7.67473), abs=1e-4)
    assert stats.verdict(lo, hi, +1) == "holds"  # the gain is larger in a
    assert stats.verdict(lo, hi, -1) == "contradicted"  # a claim "smaller in a" is contradicted
    # equal spreads and sizes: df = 2(n−1) = 4; s = 1 each, se = √(2/3) = 0.81650, t(4) = 2.7764 -> half 2.26693
    assert stats.welch_interval(3.0, 1.0, 3, 1.0, 1.0, 3) == pytest.approx((2.0, -0.26693, 4.26693), abs=1e-4)
    # one seed on a side: no interval
    d, lo, hi = stats.diff_of_diffs_interval([1.0], [1.0, 2.0])
    assert d == pytest.approx(-0.5) and math.isnan(lo) and math.isnan(hi)


def test_sd_from_t_interval_inverts_t_interval():
    m, lo, hi = stats.t_interval([2.0, 4.0, 9.0])
    assert stats.sd_from_t_interval(lo, hi, 3) == pytest.approx(math.sqrt(13), abs=1e-9)
    assert math.isnan(stats.sd_from_t_interval(float("nan"), float("nan"), 3))


def test_three_verdicts_and_the_boundary():
    assert stats.verdict(0.3, 2.1, +1) == "holds"
    assert stats.verdict(-2.1, -0.3, +1) == "contradicted"
    assert stats.verdict(-1.0, 1.1, +1) == "inconclusive"
    # paper says "lower": an interval below 0 holds, above 0 contradicts
    assert stats.verdict(-2.1, -0.3, -1) == "holds"
    assert stats.verdict(0.3, 2.1, -1) == "contradicted"
    # boundary: a closed interval that ends at exactly 0 contains 0
    assert stats.verdict(0.0, 2.0, +1) == "inconclusive"
    assert stats.verdict(-2.0, 0.0, -1) == "inconclusive"
    assert stats.verdict(0.0, 0.0, +1) == "not testable here"  # no width: every seed agreed exactly
    # no interval (one seed): never a verdict from the point estimate
    assert stats.verdict(float("nan"), float("nan"), +1) == "inconclusive"
    with pytest.raises(ValueError, match="direction"):
        stats.verdict(0.1, 0.2, 0)
    with pytest.raises(ValueError, match="low"):
        stats.verdict(1.0, 0.0, 1)


def test_formats():
    assert stats.fmt_verdict(0.04, -1.02, 1.06) == "inconclusive (+0.0 [−1.0, +1.1])"
    assert stats.fmt_verdict(2.0, 0.5, 3.5, direction=-1) == "contradicted (+2.0 [+0.5, +3.5])"
    assert stats.fmt_verdict(5.0, float("nan"), float("nan")) == "inconclusive (+5.0 (no interval))"
    assert stats.fmt_interval(-0.0123, -0.02, -0.001, digits=3) == "−0.012 [−0.020, −0.001]"
    assert stats.fmt_mean_std(50.0, 10.0) == "50.0 ± 10.0"
    assert stats.fmt_mean_std(41.25, float("nan")) == "41.2"
    assert stats.fmt_mean_std(float("nan"), float("nan")) == "–"


def test_seeds_for_half_width_hand_computed():
    # sd 10, target 5: t(n−1)·10/√n is 5.33 at n = 16 (2.1314·10/4), 5.14 at 17, 4.97 at 18 (2.1098·10/4.2426)
    assert stats.seeds_for_half_width(10.0, 5.0) == 18
    assert stats.seeds_for_half_width(0.0, 1.0) == 2
    assert stats.seeds_for_half_width(float("nan"), 1.0) is None and stats.seeds_for_half_width(1.0, 0.0) is None


def test_variance_split_hand_computed():
    # total sd 5 -> variance 25; evaluation 9 -> seeds 16: eval sd 3, seed sd 4, share 9/25 = 0.36
    out = stats.variance_split(5.0, 9.0)
    assert out["eval_sd"] == pytest.approx(3.0) and out["seed_sd"] == pytest.approx(4.0)
    assert out["eval_share"] == pytest.approx(0.36) and out["dominant"] == "seeds"
    # evaluation noise larger than the observed spread: all of it is evaluation noise
    out = stats.variance_split(2.0, 9.0)
    assert out["seed_sd"] == 0.0 and out["eval_share"] == 1.0 and out["dominant"] == "evaluation"
    assert stats.variance_split(float("nan"), 1.0)["dominant"] == "unknown"


# ------------------------------------------------------------------------ p-values, Holm, not testable
@pytest.mark.parametrize("df", [1, 2, 3, 5, 9, 20, 30, 120])
def test_two_sided_p_at_the_tabled_quantile_is_five_percent(df):
    # The 97.5% quantile of Student's t leaves 2.5% in each tail: P(|T| >= q) = 0.05 (table to 4 decimals).
    assert stats.t_two_sided_p(stats.t_quantile_975(df), df) == pytest.approx(0.05, abs=2e-5)


def test_two_sided_p_known_values():
    assert stats.t_two_sided_p(0.0, 4) == pytest.approx(1.0)
    # df = 1 is the Cauchy distribution: P(|T| >= 1) = 1 - 2·atan(1)/π = 0.5
    assert stats.t_two_sided_p(1.0, 1) == pytest.approx(0.5, abs=1e-12)
    # df = 2 has a closed form: P(|T| >= t) = 1 - t / sqrt(2 + t²); t = 1 -> 1 - 1/sqrt(3) = 0.42265
    assert stats.t_two_sided_p(1.0, 2) == pytest.approx(1 - 1 / math.sqrt(3), abs=1e-12)
    assert stats.t_two_sided_p(-1.0, 2) == stats.t_two_sided_p(1.0, 2)


def test_p_from_a_t_interval_inverts_the_interval():
    # 5 seeds, mean 1.0, half-width exactly the 97.5% quantile × se: the interval's edge at 0 gives p = 0.05.
    q = stats.t_quantile_975(4)
    assert stats.p_from_t_interval(1.0, 0.0, 2.0, 5) == pytest.approx(0.05, abs=2e-5)
    assert math.isnan(stats.p_from_t_interval(1.0, math.nan, math.nan, 5))
    assert math.isnan(stats.p_from_t_interval(1.0, 0.0, 2.0, 1))
    assert stats.p_from_t_interval(1.0, 1.0 - q, 1.0 + q, 5) > 0.05  # se = 1: t = 1


def test_holm_step_down_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): 4·0.005 = 0.02; 3·0.01 = 0.03; 2·0.03 = 0.06; 1·0.04 = 0.04 -> 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.2, math.nan, 0.9])  # nan is not counted in m = 2
    assert out[0] == pytest.approx(0.4) and math.isnan(out[1]) and out[2] == pytest.approx(0.9)
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]


def test_an_interval_without_width_is_not_testable():
    assert stats.verdict(0.0, 0.0) == stats.NOT_TESTABLE
    assert stats.verdict(1.5, 1.5, -1) == stats.NOT_TESTABLE
    assert stats.verdict(-0.0, 0.0) == stats.NOT_TESTABLE
    assert stats.verdict(0.0, 1e-3) == stats.INCONCLUSIVE
    assert stats.fmt_verdict(0.0, 0.0, 0.0).startswith("not testable here (+0.0 [+0.0, +0.0]: every seed")
