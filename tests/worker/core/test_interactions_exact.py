"""Exact Shapley interaction indices (k-SII, STII, FSII) of the pure-PyTorch core, against brute
force written from the definitions, closed forms, additive models and shapiq."""

from __future__ import annotations

import itertools
import math
from functools import cache

import numpy as np
import pytest
import torch

from tests.worker.core.interaction_games import GROUPS, WIDTH, Additive, Product, mlp, one_hot_rows, one_torch_thread
from worker.core.attribution import NeuronForward, OutputForward
from worker.core.attribution.integrated_hessians import integrated_hessians
from worker.core.attribution.interaction_result import pair_indices
from worker.core.attribution.interactions import INDICES, shapley_interactions


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


# ----------------------------------------------------------------------------- brute force


def value_function(f, x: torch.Tensor, background: torch.Tensor, groups):
    """v(S) = mean over background rows b of f(x on the columns of S's variables, b elsewhere)."""

    @cache
    def v(coalition: frozenset) -> float:
        mixed = background.clone()
        for variable in coalition:
            mixed[:, groups[variable]] = x[groups[variable]]
        with torch.no_grad():
            return float(f(mixed).double().mean())

    return lambda members: v(frozenset(members))


def discrete_derivative(v, S: set, i: int, j: int) -> float:
    return v(S | {i, j}) - v(S | {i}) - v(S | {j}) + v(S)


def subsets(items):
    return itertools.chain.from_iterable(itertools.combinations(items, size) for size in range(len(items) + 1))


def brute_force(v, n: int, index: str) -> tuple[np.ndarray, np.ndarray]:
    """(main effects [n], pairs [n, n]) from the textbook definitions, coalition by coalition."""
    f = math.factorial
    pairs = np.zeros((n, n))
    main = np.zeros(n)
    if index == "FSII":
        # Tsai et al. 2023: argmin over order-2 Phi of sum_S mu(S) (v(S) - sum_{T in S, |T|<=2} Phi(T))^2,
        # mu(S) = (n-1) / (C(n,s) s (n-s)), with v(0) and v(N) matched exactly (infinite weight):
        # solved here as an equality-constrained least squares through its KKT system.
        terms = [()] + [(i,) for i in range(n)] + list(itertools.combinations(range(n), 2))
        rows, targets, weights = [], [], []
        for S in subsets(range(n)):
            if 0 < len(S) < n:
                rows.append([float(set(T) <= set(S)) for T in terms])
                targets.append(v(set(S)))
                weights.append((n - 1) / (math.comb(n, len(S)) * len(S) * (n - len(S))))
        A, y, w = np.array(rows), np.array(targets), np.array(weights)
        C = np.array([[1.0] + [0.0] * (len(terms) - 1), [1.0] * len(terms)])
        d = np.array([v(set()), v(set(range(n)))])
        kkt = np.block([[2 * A.T @ (w[:, None] * A), C.T], [C, np.zeros((2, 2))]])
        solution = np.linalg.solve(kkt, np.concatenate([2 * A.T @ (w * y), d]))[: len(terms)]
        for T, value in zip(terms, solution):
            if len(T) == 1:
                main[T[0]] = value
            elif len(T) == 2:
                pairs[T] = pairs[T[::-1]] = value
        return main, pairs
    for i, j in itertools.combinations(range(n), 2):
        rest = [k for k in range(n) if k not in (i, j)]
        total = 0.0
        for S in subsets(rest):
            s = len(S)
            if index == "k-SII":  # Grabisch's SII: (n-s-2)! s! / (n-1)!
                weight = f(n - s - 2) * f(s) / f(n - 1)
            else:  # STII (Sundararajan et al. 2020), top order k = 2: (k/n) / C(n-1, s)
                weight = 2 / n / math.comb(n - 1, s)
            total += weight * discrete_derivative(v, set(S), i, j)
        pairs[i, j] = pairs[j, i] = total
    for i in range(n):
        if index == "STII":  # below the top order, the effect of the variable alone
            main[i] = v({i}) - v(set())
        else:  # k-SII order 2: Shapley value minus half of the variable's SII pairs
            others = [k for k in range(n) if k != i]
            shapley = sum(f(len(S)) * f(n - len(S) - 1) / f(n) * (v(set(S) | {i}) - v(set(S))) for S in subsets(others))
            main[i] = shapley - 0.5 * pairs[i].sum()
    return main, pairs


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("index", INDICES)
def test_exact_indices_equal_the_brute_force_definitions_with_a_categorical_group(index):
    forward = OutputForward(mlp(seed=1), 1)
    x, background = one_hot_rows(3, 1), one_hot_rows(4, 2)
    result = shapley_interactions(forward, x, background, GROUPS, index=index)
    assert result.exact and result.main_effects.shape == (3, 5) and result.interactions.shape == (3, 5, 5)
    for row in range(len(x)):
        main, pairs = brute_force(value_function(forward, x[row], background, GROUPS), len(GROUPS), index)
        np.testing.assert_allclose(result.main_effects[row], main, atol=1e-12)
        np.testing.assert_allclose(result.interactions[row], pairs, atol=1e-12)
    np.testing.assert_array_equal(result.interactions, result.interactions.transpose(0, 2, 1))
    assert np.all(np.diagonal(result.interactions, axis1=1, axis2=2) == 0)
    # efficiency: main effects + pairs (each once) = f(x) - E_b f(b), to float rounding
    assert np.abs(result.residuals).max() < 1e-13
    with torch.no_grad():
        expected = forward(x) - forward(background).mean()
    np.testing.assert_allclose(result.outputs - result.baseline_outputs, expected.numpy(), atol=1e-15)


@pytest.mark.parametrize("index", INDICES)
def test_an_additive_model_has_exactly_zero_pairs_and_its_parts_as_main_effects(index):
    model = Additive(GROUPS)
    x, background = one_hot_rows(6, 3), one_hot_rows(5, 4)
    result = shapley_interactions(model, x, background, GROUPS, index=index)
    assert np.abs(result.interactions).max() < 1e-12
    with torch.no_grad():
        expected = model.parts(x) - model.parts(background).mean(dim=0)
    np.testing.assert_allclose(result.main_effects, expected.numpy(), atol=1e-12)


def test_the_product_of_two_variables_gives_the_textbook_values():
    # f = a * b (columns 0, 1; a third variable c is ignored), baseline 0. Coalition values:
    # v(0) = v(a) = v(b) = 0, v(ab) = ab, so the Moebius transform is m({a, b}) = ab and zero elsewhere.
    # k-SII: pair = SII = sum over S without a, b of (n-s-2)! s!/(n-1)! * ab = ab (the weights of a
    # distribution); main_a = Shapley value ab/2 minus half the pair = 0.
    # STII: main = v(a) - v(0) = 0; pair = m({a, b}) / C(2, 2) = ab.
    # FSII: the order-2 model Phi(ab) = ab, Phi(a) = Phi(b) = 0 fits every v(S) exactly: residual 0.
    # So all three agree: pair ab, main effects 0.
    groups = [[0], [1], [2]]
    model = Product([0, 1])
    x = torch.tensor([[2.0, 3.0, 5.0], [-1.5, 4.0, 1.0]], dtype=torch.float64)
    zero = torch.zeros(1, 3, dtype=torch.float64)
    ab = (x[:, 0] * x[:, 1]).numpy()
    for index in INDICES:
        result = shapley_interactions(model, x, zero, groups, index=index)
        np.testing.assert_allclose(result.interactions[:, 0, 1], ab, atol=1e-12, err_msg=index)
        assert np.abs(result.main_effects).max() < 1e-12 and np.abs(result.interactions[:, :, 2]).max() < 1e-12
    # f = a * b * c tells them apart: only m({a, b, c}) = abc is non-zero (r = 3).
    # k-SII: pair = SII = m(abc) / (r - 1) = abc/2 each; main = (1/r - 1/2) abc = -abc/6.
    # STII: main = m(i) = 0; the top order takes m(abc) shared by its C(3, 2) pairs: abc/3 each.
    # FSII (Tsai et al.'s Theorem 19, l = 2, r = 3): pair = 6/(r(r+1)) abc = abc/2,
    # main = -2(r-2)/(r(r+1)) abc = -abc/6 (here the same as k-SII). Each sums to abc.
    abc = (x[:, 0] * x[:, 1] * x[:, 2]).numpy()
    expected = {"k-SII": (-1 / 6, 1 / 2), "STII": (0.0, 1 / 3), "FSII": (-1 / 6, 1 / 2)}
    for index, (main, pair) in expected.items():
        result = shapley_interactions(Product([0, 1, 2]), x, zero, groups, index=index)
        np.testing.assert_allclose(result.main_effects, main * abc[:, None].repeat(3, 1), atol=1e-12, err_msg=index)
        first, second = pair_indices(3)
        np.testing.assert_allclose(result.interactions[:, first, second], pair * abc[:, None].repeat(3, 1), atol=1e-12)
    # integrated Hessians of f = ab from 0: G_ab = ab int int a b da db = ab/4 (twice: the pair is ab/2),
    # G_aa = a int int b(t) ... = a * (b/4) = ab/4 = G_bb (the path x' + t d at t = a b).
    result = integrated_hessians(model, x, zero, groups, n_steps=2)
    np.testing.assert_allclose(result.interactions[:, 0, 1], ab / 2, atol=1e-12)
    np.testing.assert_allclose(result.main_effects[:, :2], np.stack([ab / 4, ab / 4], 1), atol=1e-12)


@pytest.mark.parametrize("index", INDICES)
def test_exact_values_agree_with_shapiq_on_a_random_mlp(index):
    shapiq = pytest.importorskip("shapiq")  # the bench dependency group
    owner = np.zeros(WIDTH, dtype=int)
    for variable, columns in enumerate(GROUPS):
        owner[columns] = variable
    forward = OutputForward(mlp(seed=7), 0)
    x, background = one_hot_rows(2, 8), one_hot_rows(6, 9)
    result = shapley_interactions(forward, x, background, GROUPS, index=index)
    for row in range(len(x)):

        def game(coalitions: np.ndarray, row: int = row) -> np.ndarray:
            columns = torch.from_numpy(np.asarray(coalitions, dtype=bool)[:, owner])
            mixed = torch.where(columns[:, None, :], x[row][None, None, :], background[None])
            with torch.no_grad():
                return forward(mixed.reshape(-1, WIDTH)).reshape(len(columns), -1).mean(dim=1).numpy()

        values = shapiq.ExactComputer(game, n_players=len(GROUPS))(index, order=2)
        for members, position in values.interaction_lookup.items():
            if len(members) == 1:
                ours = result.main_effects[row, members[0]]
            elif len(members) == 2:
                ours = result.interactions[row, members[0], members[1]]
            else:
                continue  # the empty set: shapiq's baseline value v(0)
            # shapiq's FSII holds v(0) and v(N) with a large weight rather than exactly: 1e-9
            assert ours == pytest.approx(values.values[position], abs=1e-9), (index, members)


def test_a_neuron_target_and_float32_models_work_and_stay_efficient():
    model = mlp(seed=3).float()
    x, background = one_hot_rows(5, 10).float(), one_hot_rows(3, 11).float()
    result = shapley_interactions(NeuronForward(model, "1", 4), x, background, GROUPS)
    scale = np.abs(result.outputs - result.baseline_outputs).max()
    assert np.abs(result.residuals).max() < 1e-5 * max(scale, 1.0)
    assert result.details["estimator"] == "exact" and result.details["coalitions"] == 32
