"""Tests for the DST activation-probability rule (docs/dst-spec.md).

The expected numbers of the worked examples are derived by hand in the comments and written as
exact fractions; none of them comes from the implementation.
"""

import inspect
from fractions import Fraction as F

import numpy as np
import pytest

from dstcli.schedulers.dst_rule import DSTComponents, dst_components, dst_probabilities


def as_array(rows):
    return np.array([[float(x) for x in row] for row in rows], dtype=np.float64)


def assert_exact(actual, expected_rows, name):
    np.testing.assert_allclose(
        actual, as_array(expected_rows), rtol=1e-12, atol=1e-15, err_msg=name
    )


# --- Worked example 1: 3 tasks, 5 epochs, default lambdas (0.2 each) and beta = 0.1 -----------
#
#   depths = (17, 17, 26)  ->  P_d = (17/26, 17/26, 1)
#   counts = (50, 75, 100) ->  P_c = (1/2, 3/4, 1)
#
#   V     t1    t2    t3
#   k=1   2     4     1
#   k=2   1     2     3/4
#   k=3   1/2   3     1/2     t2 rises (R < 0); t1 and t3 have equal losses
#   k=4   1/2   2     3/8     t1 stagnant (R = 0)
#   k=5   1/4   3/2   1/4     t1 and t3 equal again
#
# k=1: I = 1, P_u = P_r = 1, R = R' = 0.
#
# k=2: I = (1/2, 2/4, 3/4) = (1/2, 1/2, 3/4); E[I] = (7/4)/3 = 7/12
#      P_u = min(1, I/E[I]) = (6/7, 6/7, min(1, 9/7) = 1)
#      decrease = (2-1)/2, (4-2)/4, (1-3/4)/1 = (1/2, 1/2, 1/4)
#      R = decrease / P_u = (7/6 * 1/2, 7/6 * 1/2, 1/4) = (7/12, 7/12, 1/4)
#      R' = R (all >= 0) = (7/12, 7/12, 1/4); E[R'] = (17/12)/3 = 17/36
#      P_r = min(1, E[R']/R') = (17/21, 17/21, min(1, 17/9) = 1)
#
# k=3: I = (1/4, 3/4, 1/2); E[I] = (3/2)/3 = 1/2
#      P_u = (1/2, min(1, 3/2) = 1, 1)
#      decrease = (1-1/2)/1, (2-3)/2, (3/4-1/2)/(3/4) = (1/2, -1/2, 1/3)
#      R = (2 * 1/2, -1/2, 1/3) = (1, -1/2, 1/3)
#      R'_1 = 1/10 * 1 + 9/10 * 7/12 = 12/120 + 63/120 = 75/120 = 5/8
#      R'_2 = 7/12 (R < 0: keep the previous R')
#      R'_3 = 1/10 * 1/3 + 9/10 * 1/4 = 4/120 + 27/120 = 31/120
#      E[R'] = (75 + 70 + 31)/120 / 3 = 176/360 = 22/45
#      P_r = ((22/45)/(5/8), (22/45)/(7/12), min(1, (22/45)/(31/120)))
#          = (176/225, 88/105, min(1, 176/93) = 1)
#
# k=4: I = (1/4, 1/2, 3/8); E[I] = (9/8)/3 = 3/8
#      P_u = ((1/4)/(3/8), min(1, 4/3), (3/8)/(3/8)) = (2/3, 1, 1)
#      decrease = (1/2-1/2)/(1/2), (3-2)/3, (1/2-3/8)/(1/2) = (0, 1/3, 1/4)
#      R = (0, 1/3, 1/4)                                    t1 stagnant: R = 0
#      R'_1 = 1/10 * 0 + 9/10 * 5/8 = 9/16
#      R'_2 = 1/10 * 1/3 + 9/10 * 7/12 = 4/120 + 63/120 = 67/120
#      R'_3 = 1/10 * 1/4 + 9/10 * 31/120 = 30/1200 + 279/1200 = 309/1200 = 103/400
#      E[R'] = (675 + 670 + 309)/1200 / 3 = 1654/3600 = 827/1800
#      P_r = ((827/1800)/(9/16), (827/1800)/(67/120), min(1, (827/1800)/(103/400)))
#          = (1654/2025, 827/1005, min(1, 1654/927) = 1)
#
# k=5: I = (1/8, 3/8, 1/4); E[I] = (6/8)/3 = 1/4
#      P_u = (1/2, min(1, 3/2) = 1, 1)
#      decrease = (1/2-1/4)/(1/2), (2-3/2)/2, (3/8-1/4)/(3/8) = (1/2, 1/4, 1/3)
#      R = (2 * 1/2, 1/4, 1/3) = (1, 1/4, 1/3)
#      R'_1 = 1/10 * 1 + 9/10 * 9/16 = 16/160 + 81/160 = 97/160
#      R'_2 = 1/10 * 1/4 + 9/10 * 67/120 = 30/1200 + 603/1200 = 633/1200 = 211/400
#      R'_3 = 1/10 * 1/3 + 9/10 * 103/400 = 400/12000 + 2781/12000 = 3181/12000
#      E[R'] = (7275 + 6330 + 3181)/12000 / 3 = 16786/36000 = 8393/18000
#      P_r = ((8393/18000)/(97/160), (8393/18000)/(211/400), min(1, 16786/9543))
#          = (8393*160/(18000*97), 8393/9495, 1) = (16786/21825 ~ 0.769118, 0.883939, 1)
#
# P = 1/5 (P_d + P_c + P_u + P_r + 1), e.g. k=1, t1: 1/5 (17/26 + 1/2 + 1 + 1 + 1) = 54/65
#      k     t1                      t2                      t3
#      1     54/65      ~ 0.830769   229/260     ~ 0.880769  1
#      2     149/195    ~ 0.764103   127/156     ~ 0.814103  1
#      3     20101/29250 ~ 0.687214  23161/27300 ~ 0.848388  1
#      4     95752/131625 ~ 0.727461 220889/261300 ~ 0.845346 1
#      5     ~ 0.684593              ~ 0.857557              1

EX1_LOSSES = [
    [2, 4, 1],
    [1, 2, 0.75],
    [0.5, 3, 0.5],
    [0.5, 2, 0.375],
    [0.25, 1.5, 0.25],
]
EX1_DEPTHS = (17, 17, 26)
EX1_COUNTS = (50, 75, 100)

EX1_I = [
    [1, 1, 1],
    [F(1, 2), F(1, 2), F(3, 4)],
    [F(1, 4), F(3, 4), F(1, 2)],
    [F(1, 4), F(1, 2), F(3, 8)],
    [F(1, 8), F(3, 8), F(1, 4)],
]
EX1_P_U = [
    [1, 1, 1],
    [F(6, 7), F(6, 7), 1],
    [F(1, 2), 1, 1],
    [F(2, 3), 1, 1],
    [F(1, 2), 1, 1],
]
EX1_R = [
    [0, 0, 0],
    [F(7, 12), F(7, 12), F(1, 4)],
    [1, F(-1, 2), F(1, 3)],
    [0, F(1, 3), F(1, 4)],
    [1, F(1, 4), F(1, 3)],
]
EX1_R_PRIME = [
    [0, 0, 0],
    [F(7, 12), F(7, 12), F(1, 4)],
    [F(5, 8), F(7, 12), F(31, 120)],
    [F(9, 16), F(67, 120), F(103, 400)],
    [F(97, 160), F(211, 400), F(3181, 12000)],
]
EX1_P_R = [
    [1, 1, 1],
    [F(17, 21), F(17, 21), 1],
    [F(176, 225), F(88, 105), 1],
    [F(1654, 2025), F(827, 1005), 1],
    [F(16786, 21825), F(8393, 9495), 1],
]
EX1_P_D = [F(17, 26), F(17, 26), 1]
EX1_P_C = [F(1, 2), F(3, 4), 1]
EX1_P = [
    [F(1, 5) * (EX1_P_D[t] + EX1_P_C[t] + EX1_P_U[k][t] + EX1_P_R[k][t] + 1) for t in range(3)]
    for k in range(5)
]


def test_example1_fractions_match_the_hand_table():
    # Guards the hand arithmetic itself against a slip in copying the table above.
    assert EX1_P[0] == [F(54, 65), F(229, 260), 1]
    assert EX1_P[1] == [F(149, 195), F(127, 156), 1]
    assert EX1_P[2] == [F(20101, 29250), F(23161, 27300), 1]
    assert EX1_P[3] == [F(95752, 131625), F(220889, 261300), 1]
    assert float(EX1_P[4][0]) == pytest.approx(0.684593, abs=1e-6)
    assert float(EX1_P[4][1]) == pytest.approx(0.857557, abs=1e-6)


def test_example1_every_component():
    comp = dst_components(EX1_LOSSES, EX1_DEPTHS, EX1_COUNTS)
    assert isinstance(comp, DSTComponents)
    assert_exact(comp.P_d, [EX1_P_D] * 5, "P_d")
    assert_exact(comp.P_c, [EX1_P_C] * 5, "P_c")
    assert_exact(comp.P_b, [[1, 1, 1]] * 5, "P_b")
    assert_exact(comp.I, EX1_I, "I")
    assert_exact(comp.P_u, EX1_P_U, "P_u")
    assert_exact(comp.R, EX1_R, "R")
    assert_exact(comp.R_prime, EX1_R_PRIME, "R_prime")
    assert_exact(comp.P_r, EX1_P_R, "P_r")
    assert_exact(comp.P, EX1_P, "P")
    for field in ("P_d", "P_c", "P_u", "P_r", "P_b", "I", "R", "R_prime", "P"):
        arr = getattr(comp, field)
        assert arr.shape == (5, 3) and arr.dtype == np.float64, field


def test_example1_probabilities():
    P = dst_probabilities(np.array(EX1_LOSSES), list(EX1_DEPTHS), np.array(EX1_COUNTS))
    assert_exact(P, EX1_P, "P")


def test_example1_rising_loss_keeps_previous_r_prime_and_stagnant_loss_decays_it():
    comp = dst_components(EX1_LOSSES, EX1_DEPTHS, EX1_COUNTS)
    # Task 2 rises at k=3 (row 2): R < 0 and R' stays at its k=2 value.
    assert comp.R[2, 1] < 0
    assert comp.R_prime[2, 1] == comp.R_prime[1, 1]
    # Task 1 is flat at k=4 (row 3): R = 0, so R' = (1 - beta) R'[k-1].
    assert comp.R[3, 0] == 0
    assert comp.R_prime[3, 0] == pytest.approx(0.9 * comp.R_prime[2, 0], rel=1e-14)
    # Equal losses at k=3 for tasks 1 and 3 do not mean equal I: the starting losses differ.
    assert EX1_LOSSES[2][0] == EX1_LOSSES[2][2]
    assert comp.I[2, 0] != comp.I[2, 2]


# --- Worked example 2: 2 tasks, 3 epochs, lambdas (0.1, 0.3, 0.25, 0.25, 0.1), beta = 0.5 ----
#
#   depths = (3, 6)   -> P_d = (1/2, 1)
#   counts = (40, 10) -> P_c = (1, 1/4)
#
#   V     t1    t2
#   k=1   1     2
#   k=2   1/2   2      t2 stagnant
#   k=3   1/8   1
#
# k=2: I = (1/2, 1); E[I] = 3/4; P_u = ((1/2)/(3/4), min(1, 4/3)) = (2/3, 1)
#      R = (3/2 * (1-1/2)/1, 0) = (3/4, 0); R' = (3/4, 0); E[R'] = 3/8
#      P_r = ((3/8)/(3/4), 1 since R' = 0) = (1/2, 1)
# k=3: I = (1/8, 1/2); E[I] = 5/16; P_u = ((1/8)/(5/16), min(1, 8/5)) = (2/5, 1)
#      R = (5/2 * (1/2-1/8)/(1/2), (2-1)/2) = (5/2 * 3/4, 1/2) = (15/8, 1/2)
#      R' = (1/2 * 15/8 + 1/2 * 3/4, 1/2 * 1/2 + 1/2 * 0) = (21/16, 1/4); E[R'] = 25/32
#      P_r = ((25/32)/(21/16), min(1, 25/8)) = (25/42, 1)
#      (with beta = 0.1, R'_1 would be 0.1875 + 0.675 = 0.8625, not 21/16 = 1.3125)
#
# P = 0.1 P_d + 0.3 P_c + 0.25 P_u + 0.25 P_r + 0.1
#   t1 static part: 0.1 * 1/2 + 0.3 * 1 + 0.1 = 9/20
#   t2 static part: 0.1 * 1 + 0.3 * 1/4 + 0.1 = 11/40
#   k=1: t1 = 9/20 + 1/4 + 1/4 = 19/20;            t2 = 11/40 + 1/2 = 31/40
#   k=2: t1 = 9/20 + 1/4 * 2/3 + 1/4 * 1/2 = 9/20 + 1/6 + 1/8 = 89/120;   t2 = 31/40
#   k=3: t1 = 9/20 + 1/4 * 2/5 + 1/4 * 25/42 = 9/20 + 1/10 + 25/168 = 587/840; t2 = 31/40

EX2_LOSSES = [[1, 2], [0.5, 2], [0.125, 1]]
EX2_LAMBDAS = (0.1, 0.3, 0.25, 0.25, 0.1)
EX2_P = [
    [F(19, 20), F(31, 40)],
    [F(89, 120), F(31, 40)],
    [F(587, 840), F(31, 40)],
]


def test_example2_other_lambdas_and_beta():
    assert F(9, 20) + F(1, 6) + F(1, 8) == F(89, 120)
    assert F(9, 20) + F(1, 10) + F(25, 168) == F(587, 840)
    comp = dst_components(EX2_LOSSES, (3, 6), (40, 10), EX2_LAMBDAS, 0.5)
    assert_exact(comp.P_u, [[1, 1], [F(2, 3), 1], [F(2, 5), 1]], "P_u")
    assert_exact(comp.R, [[0, 0], [F(3, 4), 0], [F(15, 8), F(1, 2)]], "R")
    assert_exact(comp.R_prime, [[0, 0], [F(3, 4), 0], [F(21, 16), F(1, 4)]], "R_prime")
    assert_exact(comp.P_r, [[1, 1], [F(1, 2), 1], [F(25, 42), 1]], "P_r")
    assert_exact(comp.P, EX2_P, "P")
    P = dst_probabilities(EX2_LOSSES, (3, 6), (40, 10), lambdas=EX2_LAMBDAS, beta=0.5)
    assert_exact(P, EX2_P, "P")


def test_signatures():
    sig = inspect.signature(dst_probabilities)
    assert list(sig.parameters) == ["losses", "depths", "counts", "lambdas", "beta"]
    assert sig.parameters["lambdas"].default == (0.2, 0.2, 0.2, 0.2, 0.2)
    assert sig.parameters["beta"].default == 0.1
    param = inspect.signature(dst_components).parameters["count_metric"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default == "ratio"


# --- Invariants ---------------------------------------------------------------------------------


def random_case(rng, n_epochs, n_tasks):
    losses = rng.exponential(1.0, size=(n_epochs, n_tasks))
    # Exact zeros and repeated values exercise the guards and the stagnant branch.
    losses[rng.random(losses.shape) < 0.1] = 0.0
    repeat = rng.random(losses.shape) < 0.1
    repeat[0] = False
    losses[repeat] = np.roll(losses, 1, axis=0)[repeat]
    depths = rng.integers(1, 40, size=n_tasks)
    counts = rng.integers(1, 10_000, size=n_tasks)
    lambdas = rng.dirichlet(np.ones(5))
    lambdas /= lambdas.sum()
    return losses, depths, counts, tuple(lambdas), float(rng.random())


def test_random_histories_stay_in_range():
    rng = np.random.default_rng(1234)
    for _ in range(500):
        n_epochs, n_tasks = int(rng.integers(1, 12)), int(rng.integers(1, 8))
        losses, depths, counts, lambdas, beta = random_case(rng, n_epochs, n_tasks)
        comp = dst_components(losses, depths, counts, lambdas, beta)
        for field in ("P_d", "P_c", "P_u", "P_r", "P_b", "P"):
            arr = getattr(comp, field)
            assert np.all(np.isfinite(arr)), field
            assert np.all((arr >= 0) & (arr <= 1)), field
        assert np.all(np.isfinite(comp.R)) and np.all(np.isfinite(comp.R_prime))
        assert np.all(comp.R_prime >= 0)
        l_b = lambdas[4]
        assert np.all(comp.P >= l_b - 1e-12) and np.all(comp.P <= 1 + 1e-12)
        np.testing.assert_array_equal(comp.P_u[0], 1.0)
        np.testing.assert_array_equal(comp.P_r[0], 1.0)
        np.testing.assert_array_equal(comp.R[0], 0.0)
        np.testing.assert_array_equal(comp.R_prime[0], 0.0)


def test_without_dynamic_weights_p_is_constant_over_epochs():
    rng = np.random.default_rng(7)
    for _ in range(50):
        losses, depths, counts, _, beta = random_case(rng, 6, 4)
        P = dst_probabilities(losses, depths, counts, (0.3, 0.5, 0.0, 0.0, 0.2), beta)
        np.testing.assert_allclose(P, np.broadcast_to(P[0], P.shape), rtol=0, atol=1e-15)


def test_single_epoch_and_single_task():
    comp = dst_components([[3.0, 1.0]], (2, 4), (10, 5))
    np.testing.assert_array_equal(comp.P_u, [[1.0, 1.0]])
    np.testing.assert_array_equal(comp.P_r, [[1.0, 1.0]])
    # One task is its own mean: P_u = P_r = 1 every epoch.
    comp = dst_components([[2.0], [1.0], [1.5], [0.5]], (5,), (9,))
    np.testing.assert_array_equal(comp.P_u, 1.0)
    np.testing.assert_array_equal(comp.P_r, 1.0)
    np.testing.assert_allclose(comp.P, 1.0)


# --- Guards -------------------------------------------------------------------------------------


def test_zero_first_loss_gives_incompleteness_one_and_no_nan():
    # Task 1 starts (and stays) at zero loss: I = 1 by the guard, R = 0 since V[k-1] = 0.
    comp = dst_components([[0.0, 1.0], [0.0, 0.5], [0.0, 0.25]], (1, 1), (1, 1))
    np.testing.assert_array_equal(comp.I[:, 0], 1.0)
    np.testing.assert_array_equal(comp.R[:, 0], 0.0)
    # k=2: I = (1, 1/2), E[I] = 3/4, P_u = (min(1, 4/3), 2/3) = (1, 2/3)
    np.testing.assert_allclose(comp.P_u[1], [1.0, 2 / 3], rtol=1e-14)
    for field in ("I", "P_u", "R", "R_prime", "P_r", "P"):
        assert np.all(np.isfinite(getattr(comp, field))), field


def test_zero_previous_loss_gives_zero_rate_and_no_nan():
    # Task 1 reaches 0 at k=2: I = 0, E[I] = (0 + 1/2)/2 = 1/4, P_u = 0, so R uses the floor:
    # R = 1 / 1e-8 = 1e8. At k=3 its previous loss is 0: R = 0 by the guard, R' keeps
    # 0.9 * 1e8 although the loss went up again.
    comp = dst_components([[1.0, 1.0], [0.0, 0.5], [0.5, 0.25]], (1, 1), (1, 1))
    assert comp.P_u[1, 0] == 0.0
    assert comp.R[1, 0] == pytest.approx(1e8, rel=1e-12)
    assert comp.R[2, 0] == 0.0
    assert comp.R_prime[2, 0] == pytest.approx(0.9e8, rel=1e-12)
    for field in ("I", "P_u", "R", "R_prime", "P_r", "P"):
        assert np.all(np.isfinite(getattr(comp, field))), field
    assert np.all((comp.P >= 0.2) & (comp.P <= 1.0))


def test_all_losses_zero_after_first_epoch_keeps_p_u_one():
    # E[I] = 0 at k=2: P_u = 1 by the guard; each task decreased by 100 %: R = R' = 1, P_r = 1.
    comp = dst_components([[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]], (1, 2), (3, 4))
    np.testing.assert_array_equal(comp.P_u, 1.0)
    np.testing.assert_array_equal(comp.R[1], 1.0)
    np.testing.assert_array_equal(comp.R[2], 0.0)
    np.testing.assert_array_equal(comp.P_r, 1.0)
    assert np.all(np.isfinite(comp.P))


def test_all_rates_negative_gives_zero_r_prime_and_p_r_one():
    # Every loss rises at k=2: R' = 0 for all tasks, E[R'] = 0, so P_r = 1.
    comp = dst_components([[1.0, 1.0], [2.0, 3.0]], (1, 1), (1, 1))
    np.testing.assert_array_equal(comp.R_prime[1], 0.0)
    np.testing.assert_array_equal(comp.P_r[1], 1.0)


# --- Count metric -------------------------------------------------------------------------------


def test_inverse_count_metric_is_eq22():
    # Eq. 22: P'_c = min(c) / c_t = (50/50, 50/75, 50/100) = (1, 2/3, 1/2)
    ratio = dst_components(EX1_LOSSES, EX1_DEPTHS, EX1_COUNTS)
    inverse = dst_components(EX1_LOSSES, EX1_DEPTHS, EX1_COUNTS, count_metric="inverse")
    assert_exact(inverse.P_c, [[1, F(2, 3), F(1, 2)]] * 5, "P_c")
    # Only the l_c term changes: 0.2 * (inverse - ratio) = 0.2 * (1/2, -1/12, -1/2)
    assert_exact(inverse.P - ratio.P, [[F(1, 10), F(-1, 60), F(-1, 10)]] * 5, "P")
    np.testing.assert_array_equal(inverse.P_u, ratio.P_u)
    np.testing.assert_array_equal(inverse.P_r, ratio.P_r)


# --- Bad input ----------------------------------------------------------------------------------

GOOD = dict(losses=[[1.0, 2.0], [0.5, 1.5]], depths=(2, 4), counts=(10, 20))


@pytest.mark.parametrize(
    "override, name",
    [
        (dict(losses=[1.0, 2.0]), "losses"),
        (dict(losses=[[[1.0]]]), "losses"),
        (dict(losses=np.empty((0, 2))), "losses"),
        (dict(losses=np.empty((2, 0))), "losses"),
        (dict(losses=[[1.0, np.nan], [0.5, 1.5]]), "losses"),
        (dict(losses=[[1.0, 2.0], [np.inf, 1.5]]), "losses"),
        (dict(losses=[[1.0, 2.0], [-0.5, 1.5]]), "losses"),
        (dict(losses="abc"), "losses"),
        (dict(depths=(2,)), "depths"),
        (dict(depths=(2, 4, 6)), "depths"),
        (dict(depths=(0, 4)), "depths"),
        (dict(depths=(-1, 4)), "depths"),
        (dict(depths=(np.nan, 4)), "depths"),
        (dict(counts=(10,)), "counts"),
        (dict(counts=(10, -3)), "counts"),
        (dict(counts=(10, np.inf)), "counts"),
        (dict(lambdas=(0.25, 0.25, 0.25, 0.25)), "lambdas"),
        (dict(lambdas=(0.5, 0.5, 0.5, -0.5, 0.0)), "lambdas"),
        (dict(lambdas=(1.5, 0.0, 0.0, 0.0, -0.5)), "lambdas"),
        (dict(lambdas=(0.2, 0.2, 0.2, 0.2, 0.1)), "lambdas"),
        (dict(lambdas=(0.2, 0.2, 0.2, 0.2, np.nan)), "lambdas"),
        (dict(lambdas=0.2), "lambdas"),
        (dict(beta=-0.1), "beta"),
        (dict(beta=1.1), "beta"),
        (dict(beta=np.nan), "beta"),
        (dict(beta="high"), "beta"),
    ],
)
def test_bad_argument_names_it(override, name):
    kwargs = {**GOOD, **override}
    with pytest.raises(ValueError, match=name):
        dst_probabilities(**kwargs)
    with pytest.raises(ValueError, match=name):
        dst_components(**kwargs)


def test_zero_count_names_the_task():
    with pytest.raises(ValueError, match=r"counts\[1\] is 0: task 1 has no labelled training"):
        dst_probabilities(GOOD["losses"], GOOD["depths"], (10, 0))


def test_unknown_count_metric():
    with pytest.raises(ValueError, match="count_metric"):
        dst_components(**GOOD, count_metric="log")


def test_lambdas_within_tolerance_are_accepted():
    # The slack may lift P a hair above 1 before clipping; a Bernoulli draw needs P <= 1.
    P = dst_probabilities(**GOOD, lambdas=(0.2, 0.2, 0.2, 0.2, 0.2 + 5e-7))
    assert np.all(np.isfinite(P)) and np.all(P <= 1.0)


def test_all_problems_reported_at_once():
    with pytest.raises(ValueError) as info:
        dst_probabilities(GOOD["losses"], (0, 4), (10, 0), (0.5, 0.5, 0.5, 0.5, 0.5), 2.0)
    message = str(info.value)
    for name in ("depths", "counts[1]", "lambdas", "beta"):
        assert name in message
