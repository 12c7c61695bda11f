"""The uncertainty code against hand-computed cases and a synthetic session with a known ratio."""

from __future__ import annotations

import numpy as np
import pytest

from train2infer import stats


@pytest.mark.parametrize("k, n, lo, hi", [
    (0, 10, 0.0, 0.277533),     # z^2/(n+z^2): the upper bound when nothing is right
    (10, 10, 0.722467, 1.0),
    (5, 10, 0.236594, 0.763406),
    (263, 269, 0.952201, 0.989738),
])
def test_wilson_interval_matches_hand_computation(k, n, lo, hi):
    assert stats.wilson(k, n) == pytest.approx((lo, hi), abs=2e-6)


def test_wilson_without_images_says_nothing():
    assert stats.wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("b, c, p", [
    (0, 0, 1.0),            # the two models never disagree
    (1, 1, 1.0),            # 2 * P[X <= 1] = 2 * 3/4 -> capped at 1
    (0, 5, 0.0625),         # 2 / 2^5: five discordant images all one way are not yet significant ...
    (0, 6, 0.03125),        # ... six are
    (2, 8, 0.109375),       # 2 * (1 + 10 + 45) / 1024
    (8, 2, 0.109375),       # symmetric
    (0, 10, 0.001953125),
])
def test_exact_mcnemar_p_values(b, c, p):
    base = [True] * b + [False] * c + [True] * 7 + [False] * 3  # 7 both right, 3 both wrong: ignored
    var = [False] * b + [True] * c + [True] * 7 + [False] * 3
    got = stats.mcnemar(base, var)
    assert got == {"only_baseline": b, "only_variant": c, "p_value": pytest.approx(p, rel=1e-12)}


def test_mcnemar_refuses_unpaired_inputs():
    with pytest.raises(ValueError, match="different image counts"):
        stats.mcnemar([True, False], [True])


def test_verdicts_at_the_edge_of_significance():
    assert stats.verdict(0.05, -0.1) == "no significant difference"  # p must be below 5 %
    assert stats.verdict(0.049, -0.1) == "significantly worse"
    assert stats.verdict(0.049, 0.1) == "significantly better"
    assert stats.verdict(1.0, 0.0) == "no significant difference"


def test_all_equal_predictions_give_a_zero_difference_and_no_verdict():
    y = np.arange(50) % 10
    pred = y.copy()
    pred[:5] = (pred[:5] + 1) % 10  # both models wrong on the same 5 images
    got = stats.compare_accuracy(y, pred, pred)
    assert got["accuracy_diff_ci_low"] == got["accuracy_diff_ci_high"] == 0.0
    assert got["mcnemar_p"] == 1.0 and got["accuracy_verdict"] == "no significant difference"
    assert (got["accuracy_ci_low"], got["accuracy_ci_high"]) == pytest.approx(stats.wilson(45, 50))


def test_paired_difference_interval_of_ten_more_right_out_of_a_hundred():
    y = np.zeros(100, int)
    base = np.ones(100, int)
    base[:80] = 0               # baseline right on 80
    var = base.copy()
    var[80:90] = 0              # the variant also on 10 more: difference +0.10
    got = stats.compare_accuracy(y, base, var)
    assert got["mcnemar_only_baseline"] == 0 and got["mcnemar_only_variant"] == 10
    # bootstrap of a mean of 10 ones in 100: sd = sqrt(0.1 * 0.9 / 100) = 0.03, so about 0.10 +- 0.06
    assert 0.03 <= got["accuracy_diff_ci_low"] <= 0.05 and 0.15 <= got["accuracy_diff_ci_high"] <= 0.17
    assert got["accuracy_verdict"] == "significantly better"
    assert stats.compare_accuracy(y, base, var) == got  # a fixed seed: the same interval every time


def test_unpaired_difference_matches_newcombes_worked_example():
    # Newcombe (1998), Statistics in Medicine 17:873, Table II: 56/70 against 48/80, method 10.
    u = stats.unpaired(56, 70, 48, 80)
    assert u["difference"] == pytest.approx(0.2)
    assert (u["difference_ci_low"], u["difference_ci_high"]) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    # pooled z = 0.2 / sqrt(104/150 * 46/150 * (1/70 + 1/80)) = 2.6502
    assert u["p_value"] == pytest.approx(0.00805, abs=5e-5) and u["verdict"] == "significantly better"
    same = stats.unpaired(8541, 10000, 8541, 10000)
    assert same["difference"] == 0 and same["p_value"] == 1 and same["verdict"] == "no significant difference"
    assert same["difference_ci_low"] < 0 < same["difference_ci_high"]


def session(rng, ratio=3.0, rounds=40, calls=25):
    """Interleaved rounds on a host that flips between a fast and a slow state per round."""
    state = rng.choice([1.0, 1.35], size=(rounds, 1))
    base = ratio * state * rng.lognormal(0, 0.08, (rounds, calls))
    var = state * rng.lognormal(0, 0.08, (rounds, calls))
    return base, var


def test_ratio_interval_finds_a_known_ratio():
    est, lo, hi = stats.ratio_interval(*session(np.random.default_rng(1)))
    assert lo < 3.0 < hi and est == pytest.approx(3.0, rel=0.03)
    assert 2.8 < lo and hi < 3.2


def test_ratio_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    hits = sum(lo <= 3.0 <= hi for _, lo, hi in
               (stats.ratio_interval(*session(rng), reps=500, seed=i) for i in range(60)))
    assert hits >= 51  # 95 % nominal; 51/60 = 85 % allows for Monte Carlo error


def test_rounds_are_the_resampled_unit():
    """A state shared by a whole round moves all its calls together: resampling single calls would
    treat 1,000 correlated calls as independent and give a far narrower interval than rounds do."""
    rng = np.random.default_rng(3)
    rounds = 40
    state_b, state_v = rng.lognormal(0, 0.2, size=(2, rounds, 1))  # the two models react differently
    base = 3.0 * state_b * rng.lognormal(0, 0.02, (rounds, 25))
    var = state_v * rng.lognormal(0, 0.02, (rounds, 25))
    _, lo, hi = stats.ratio_interval(base, var)
    _, lo1, hi1 = stats.ratio_interval(base.reshape(-1, 1), var.reshape(-1, 1))  # every call its own "round"
    assert hi - lo > 2.5 * (hi1 - lo1)


def test_by_round_needs_whole_rounds():
    assert stats.by_round(range(50), 25).shape == (2, 25)
    with pytest.raises(ValueError, match="not whole rounds"):
        stats.by_round(range(51), 25)
    with pytest.raises(ValueError, match="rounds differ"):
        stats.ratio_interval(np.ones((3, 2)), np.ones((4, 2)))


def test_quiet_rounds_pick_the_fast_state_and_its_ratio():
    """Two states: in the slow one the baseline slows by 60 % and the variant by 10 % (as TensorFlow
    and LiteRT do on this host), so an all-rounds ratio depends on the mix; the quiet-rounds ratio
    does not."""
    rng = np.random.default_rng(5)
    estimates = []
    for slow_share in (0.2, 0.6):
        slow = rng.random((80, 1)) < slow_share
        base = 3.0 * np.where(slow, 1.6, 1.0) * rng.lognormal(0, 0.02, (80, 25))
        var = np.where(slow, 1.1, 1.0) * rng.lognormal(0, 0.02, (80, 25))
        quiet = stats.quiet_rounds(base, 0.10)
        assert (quiet == ~slow[:, 0]).all()
        estimates.append((stats.ratio_interval(base, var)[0], stats.ratio_interval(base, var, quiet=quiet)[0]))
    (all_a, quiet_a), (all_b, quiet_b) = estimates
    assert abs(all_a - all_b) > 0.3                                   # the mix moves the all-rounds ratio
    assert quiet_a == pytest.approx(3.0, rel=0.01) and quiet_b == pytest.approx(3.0, rel=0.01)


def test_session_spread_widens_the_interval_in_quadrature():
    base, var = session(np.random.default_rng(2))
    est, lo, hi = stats.ratio_interval(base, var)
    est2, lo2, hi2 = stats.ratio_interval(base, var, session_cv=0.02)
    assert est2 == est
    want = np.sqrt(np.log(hi / est) ** 2 + (1.959964 * 0.02) ** 2)
    assert np.log(hi2 / est) == pytest.approx(want, rel=1e-6) and lo2 < lo


def test_moving_blocks_keep_consecutive_rounds_together():
    idx = stats._block_indices(np.random.default_rng(0), 23, 5, 100)
    assert idx.shape == (100, 23) and idx.min() >= 0 and idx.max() <= 22
    assert (np.diff(idx[:, :5], axis=1) == 1).all()  # the first block is 5 consecutive rounds
    assert stats._block_indices(np.random.default_rng(0), 3, 5, 4).shape == (4, 3)  # block longer than the session


def test_speedups_of_a_session_count_the_baselines_quiet_rounds():
    base, var = session(np.random.default_rng(4))
    got, share = stats.speedups({"base": base, "v": var}, "base", tolerance=0.10, block=5, session_cv=0.03)
    quiet = stats.quiet_rounds(base, 0.10)
    assert share == pytest.approx(quiet.mean()) and 0 < share < 1
    assert got["base"] | {"latency_p50_ms_quiet": 0} == {"speedup_p50": 1.0, "speedup_p50_ci_low": 1.0,
                                                         "speedup_p50_ci_high": 1.0, "latency_p50_ms_quiet": 0}
    want = stats.ratio_interval(base, var, quiet=quiet, block=5, session_cv=0.03)
    assert (got["v"]["speedup_p50"], got["v"]["speedup_p50_ci_low"], got["v"]["speedup_p50_ci_high"]) == want
    assert got["v"]["latency_p50_ms_quiet"] == np.median(var[quiet])
