"""Pairwise interactions, the pure-PyTorch core: Shapley interaction indices (exact and sampled)
and integrated Hessians, against brute force written from the definitions, closed forms,
shapiq, and retail-mlp's documented generating process."""

from __future__ import annotations

import itertools
import math
from functools import cache

import numpy as np
import pytest
import torch
from torch import nn

from worker.core.attribution import NeuronForward, OutputForward
from worker.core.attribution.integrated_hessians import integrated_hessians, log_weight_rule
from worker.core.attribution.interaction_result import global_interactions, pair_indices, strongest_rows
from worker.core.attribution.interactions import INDICES, shapley_interactions
from worker.models.builtin import BUILTIN_MODELS, DATA
from worker.models.tabular import encode_rows, read_csv, variable_groups

# 5 variables, 3 of them categoricals (one-hot groups): the groups, not the columns, are players
GROUPS = [[0, 1, 2], [3], [4, 5], [6, 7, 8, 9], [10]]
WIDTH = 11


@pytest.fixture(scope="module", autouse=True)
def _threads():
    # Small batches: one thread avoids OpenMP's spin-waits on a shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def one_hot_rows(count: int, seed: int) -> torch.Tensor:
    """Rows of the GROUPS layout: one-hot categoricals, normal numerics; float64."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((count, WIDTH))
    for columns in GROUPS:
        if len(columns) > 1:
            rows[np.arange(count), rng.choice(columns, count)] = 1.0
        else:
            rows[:, columns[0]] = rng.normal(0, 1.5, count)
    return torch.from_numpy(rows)


def mlp(activation: type[nn.Module] = nn.Tanh, seed: int = 0, width: int = WIDTH) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(width, 16), activation(), nn.Linear(16, 8), activation(), nn.Linear(8, 2)]
    return nn.Sequential(*layers).double().eval()


class Product(nn.Module):
    """f(x) = product of the chosen columns."""

    def __init__(self, columns: list[int]):
        super().__init__()
        self.columns = columns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.columns].prod(dim=1)


class Additive(nn.Module):
    """f(x) = sum over variables of a nonlinear function of that variable's columns alone."""

    def __init__(self, groups: list[list[int]], seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.groups = groups
        self.weights = [torch.randn(len(g), generator=generator, dtype=torch.float64) for g in groups]

    def parts(self, x: torch.Tensor) -> torch.Tensor:  # [n, V]
        return torch.stack(
            [torch.tanh(2 * x[:, g] @ w) + (x[:, g] @ w) ** 2 for g, w in zip(self.groups, self.weights)], 1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts(x).sum(dim=1)


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


# ----------------------------------------------------------------------------- sampled


@pytest.mark.parametrize("index", INDICES)
def test_the_sampled_estimate_converges_to_the_exact_values_on_ten_variables(index):
    groups = [[i] for i in range(10)]
    forward = OutputForward(mlp(seed=5, width=10), 0)
    x = torch.from_numpy(np.random.default_rng(12).normal(0, 1.5, (4, 10)))
    background = torch.from_numpy(np.random.default_rng(13).normal(0, 1.0, (3, 10)))
    exact = shapley_interactions(forward, x, background, groups, index=index)
    first, second = pair_indices(10)

    def run(budget: int, seed: int = 0):
        result = shapley_interactions(
            forward, x, background, groups, index=index, sampled=True, budget=budget, seed=seed
        )
        error = np.abs(result.interactions - exact.interactions)[:, first, second]
        return result, error

    small, small_error = run(400)
    large, large_error = run(1000)  # 2^10 = 1024 coalitions in all
    assert not small.exact and small.details["coalitions"] <= 400 and large.details["coalitions"] <= 1000
    assert large_error.mean() < 0.6 * small_error.mean(), (small_error.mean(), large_error.mean())
    assert large_error.mean() < 0.25 * np.abs(exact.interactions[:, first, second]).mean()
    # the reported standard errors are the size of the actual errors
    errors = large.interaction_errors[:, first, second]
    assert 0.3 < large_error.mean() / errors.mean() < 1.5
    assert np.mean(large_error <= 3 * errors + 1e-12) > 0.9
    # efficiency: k-SII's permutation samples and FSII's constrained fit keep it exactly; STII's
    # sampled pairs leave a residual of about their errors
    if index == "STII":
        assert 0 < np.abs(large.residuals).max() < 5 * errors.sum(axis=1).max()
        np.testing.assert_allclose(large.main_effects, exact.main_effects, atol=1e-12)  # v(i) - v(0): exact
    else:
        assert np.abs(large.residuals).max() < 1e-12
    # deterministic for a seed; another seed draws other coalitions
    np.testing.assert_array_equal(run(400)[0].interactions, small.interactions)
    assert not np.array_equal(run(400, seed=1)[0].interactions, small.interactions)
    # a budget that covers every coalition is exact
    covered = shapley_interactions(forward, x, background, groups, index=index, sampled=True, budget=1024)
    assert covered.exact
    np.testing.assert_allclose(covered.interactions, exact.interactions, atol=1e-12)


@pytest.mark.parametrize("index", INDICES)
def test_above_twelve_variables_the_sampled_path_runs_and_keeps_additive_pairs_at_zero(index):
    groups = [[i] for i in range(14)]
    model = Additive(groups, seed=2)
    rng = np.random.default_rng(14)
    x, background = torch.from_numpy(rng.normal(0, 1, (3, 14))), torch.from_numpy(rng.normal(0, 1, (2, 14)))
    result = shapley_interactions(model, x, background, groups, index=index, budget=3000)
    assert not result.exact and result.details["coalitions"] <= 3000
    assert np.abs(result.interactions).max() < 1e-9  # every discrete derivative of an additive game is 0
    with torch.no_grad():
        expected = model.parts(x) - model.parts(background).mean(dim=0)
    np.testing.assert_allclose(result.main_effects, expected.numpy(), atol=1e-9)
    with pytest.raises(ValueError, match="too small"):
        shapley_interactions(model, x, background, groups, index=index, budget=100)
    with pytest.raises(ValueError, match="limit is 12 variables"):
        shapley_interactions(model, x, background, groups, index=index, sampled=False)


def test_an_unknown_index_is_refused_with_the_allowed_ones():
    with pytest.raises(ValueError, match="k-SII, STII, FSII"):
        shapley_interactions(Product([0]), torch.zeros(1, 2), torch.zeros(1, 2), [[0], [1]], index="SII")


# ----------------------------------------------------------------------------- integrated Hessians


def test_the_log_weight_rule_integrates_polynomials_exactly():
    for nodes in (1, 3, 16, 64):
        t, w = log_weight_rule(nodes)
        assert np.all((t > 0) & (t < 1)) and np.all(w > 0)
        for degree in range(2 * nodes):  # int_0^1 -ln(t) t^k dt = 1 / (k+1)^2
            assert (w * t**degree).sum() == pytest.approx(1 / (degree + 1) ** 2, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("activation", [nn.Tanh, nn.Softplus])
def test_integrated_hessians_are_complete_and_equal_the_literal_double_integral(activation):
    model = mlp(activation, seed=2)
    forward = OutputForward(model, 0)
    x, background = one_hot_rows(6, 15), one_hot_rows(3, 16)
    result = integrated_hessians(forward, x, background, GROUPS, n_steps=32)
    assert result.details.get("smoothing") is None  # nothing to replace
    difference = np.abs(result.outputs - result.baseline_outputs)
    assert np.abs(result.residuals).max() < 1e-9 * max(1.0, difference.max())
    np.testing.assert_allclose(result.interactions, result.interactions.transpose(0, 2, 1), atol=1e-15)
    # Janizek et al.'s double integral, literally, for one row and one baseline row: the full
    # column Hessian on a 40 x 40 Gauss-Legendre grid over (a, b), then summed over the groups.
    row, base = x[0], background[0]
    d = row - base
    nodes, weights = np.polynomial.legendre.leggauss(40)
    nodes, weights = (nodes + 1) / 2, weights / 2
    gamma = torch.zeros(WIDTH, WIDTH, dtype=torch.float64)

    def scalar(z):
        return forward(z[None])[0]

    for a, wa in zip(nodes, weights):
        for b, wb in zip(nodes, weights):
            point = base + a * b * d
            hessian = torch.autograd.functional.hessian(scalar, point)
            gradient = torch.autograd.functional.jacobian(scalar, point)
            gamma += wa * wb * (a * b * hessian * torch.outer(d, d) + torch.diag(d * gradient))
    grouped = np.array([[float(gamma[np.ix_(gi, gj)].sum()) for gj in GROUPS] for gi in GROUPS])
    single = integrated_hessians(forward, x[:1], background[:1], GROUPS, n_steps=32)
    np.testing.assert_allclose(single.main_effects[0], np.diag(grouped), atol=1e-9)
    off = grouped + grouped.T - 2 * np.diag(np.diag(grouped))
    np.testing.assert_allclose(single.interactions[0], off, atol=1e-9)
    # a background: the mean over its rows
    each = [integrated_hessians(forward, x, background[k : k + 1], GROUPS).interactions for k in range(3)]
    np.testing.assert_allclose(result.interactions, np.mean(each, axis=0), atol=1e-12)


def test_relu_models_get_a_softplus_copy_said_in_the_result_or_are_refused():
    model = mlp(nn.ReLU, seed=4)
    shared = nn.ReLU()  # one instance used twice: both places are replaced
    model[1], model[3] = shared, shared
    forward = OutputForward(model, 0)
    x, background = one_hot_rows(5, 17), one_hot_rows(2, 18)
    result = integrated_hessians(forward, x, background, GROUPS, n_steps=64, softplus_beta=5.0)
    smoothing = result.details["smoothing"]
    assert "2 nn.ReLU" in smoothing["replaced"] and smoothing["softplus_beta"] == 5.0
    assert isinstance(model[1], nn.ReLU) and isinstance(model[3], nn.ReLU)  # the model itself is untouched
    # completeness holds for the smooth copy, whose outputs are reported ...
    assert np.abs(result.residuals).max() < 1e-8
    smooth = mlp(nn.Softplus, seed=4)
    for index in (1, 3):
        smooth[index] = nn.Softplus(beta=5.0)
    with torch.no_grad():
        np.testing.assert_allclose(result.outputs, smooth(x)[:, 0].numpy(), atol=1e-12)
        change = (smooth(torch.cat([x, background]))[:, 0] - model(torch.cat([x, background]))[:, 0]).abs().max()
    # ... and its distance from the model is stated
    assert smoothing["max_abs_output_change"] == pytest.approx(float(change), abs=1e-12) and change > 0
    # the ReLU network itself has no curvature: every pair would read 0 (Hessian-vector products vanish)
    point = x[:1].clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(forward(point).sum(), point, create_graph=True)
    (curvature,) = torch.autograd.grad(
        (gradient * (x[:1] - background[:1])).sum(), point, allow_unused=True, materialize_grads=True
    )
    assert torch.count_nonzero(curvature) == 0
    with pytest.raises(ValueError, match="softplus_beta"):
        integrated_hessians(forward, x, background, GROUPS, softplus_beta=None)
    leaky = mlp(nn.LeakyReLU, seed=4)
    with pytest.raises(ValueError, match="LeakyReLU"):
        integrated_hessians(OutputForward(leaky, 0), x, background, GROUPS)


# ----------------------------------------------------------------------------- rankings


def test_global_interactions_rank_pairs_by_mean_absolute_value():
    interactions = np.zeros((2, 3, 3))
    for row, (ab, ac, bc) in enumerate([(1.0, -3.0, 0.5), (-1.0, 1.0, 0.5)]):
        interactions[row, 0, 1] = interactions[row, 1, 0] = ab
        interactions[row, 0, 2] = interactions[row, 2, 0] = ac
        interactions[row, 1, 2] = interactions[row, 2, 1] = bc
    ranked = global_interactions(interactions, ["a", "b", "c"])
    assert ranked == [
        {"variables": ["a", "c"], "mean_abs": 2.0},
        {"variables": ["a", "b"], "mean_abs": 1.0},
        {"variables": ["b", "c"], "mean_abs": 0.5},
    ]
    assert global_interactions(interactions)[0]["variables"] == [0, 2]
    assert strongest_rows(interactions, (0, 2), 1).tolist() == [0]


# ----------------------------------------------------------------------------- retail-mlp


def test_on_retail_mlp_category_x_season_leads_and_region_pairs_are_near_zero():
    features = BUILTIN_MODELS["retail-mlp"].input["tabular"]["features"]
    model = BUILTIN_MODELS["retail-mlp"].build()
    x = torch.from_numpy(encode_rows(read_csv(DATA / "retail-sample.csv", features), features))
    groups = list(variable_groups(features).values())
    names = [f["name"] for f in features]
    rng = np.random.default_rng(0)
    picks = rng.permutation(len(x))
    explained, background = x[picks[:300]], x[picks[-20:]]
    forward = OutputForward(model, 0)
    result = shapley_interactions(forward, explained, background, groups)  # k-SII, exact (9 variables)
    assert np.abs(result.residuals).max() < 1e-4  # a float32 model: rounding only
    ranked = global_interactions(result.interactions, names)
    top = [set(entry["variables"]) for entry in ranked]
    # the generating process's four interaction terms (retail.py), category x season first
    assert top[0] == {"item_category", "season"}, ranked[:5]
    documented = [{"item_category", other} for other in ("season", "price", "temperature", "holiday_week")]
    assert all(pair in top[:4] for pair in documented), ranked[:6]
    # region has no effect at all in the generating process; what the model gives it is its own
    # fitting error (its region main effect averages under 0.01 log units). Tolerance: mean
    # |pair| <= 0.01 log1p units, i.e. about 1 % of weekly sales and under 4 % of the
    # category x season pair (0.27), below the weakest documented pair (category x holiday, ~0.02).
    region = [entry["mean_abs"] for entry in ranked if "region" in entry["variables"]]
    assert len(region) == 8 and max(region) < 0.01, region
    assert max(region) < 0.5 * min(entry["mean_abs"] for entry in ranked if set(entry["variables"]) in documented)
    # integrated Hessians (softplus copy) find the same leading pair
    hessians = integrated_hessians(forward, explained[:40], background, groups)
    assert set(global_interactions(hessians.interactions, names)[0]["variables"]) == {"item_category", "season"}
    assert np.abs(hessians.residuals).max() < 1e-3
