"""Tabular attribution, the pure-PyTorch core (worker/core/attribution) and its row checks."""

from __future__ import annotations

import io
import itertools
import math
import subprocess
import sys
from functools import cache

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from service.kinds.tabular_checks import check_tabular_attribution, row_problems
from service.kinds.tabular_params import MAX_EXACT_SHAPLEY_VARIABLES, TabularAttributionParams
from service.validation import InvalidRequest
from worker.core.attribution import METHODS, NeuronForward, OutputForward, explain
from worker.core.attribution.charts import beeswarm_png, importance_png, waterfall_png
from worker.core.attribution.extremes import maximize, observed_domain, top_rows
from worker.core.attribution.kernel_shap import kernel_coalitions
from worker.models import retail
from worker.models.builtin import BUILTIN_MODELS, DATA
from worker.models.tabular import encode_rows, read_csv, variable_groups

FEATURES = [
    {"name": "color", "type": "categorical", "categories": ["red", "green", "blue"]},
    {"name": "size", "type": "numeric", "mean": 10.0, "std": 2.0},
    {"name": "code", "type": "categorical", "categories": ["1", "2"]},
    {"name": "weight", "type": "numeric", "mean": 5.0, "std": 1.5},
    {"name": "shape", "type": "categorical", "categories": ["round", "square", "star", "flat"]},
    {"name": "age", "type": "numeric"},
]
GROUPS = list(variable_groups(FEATURES).values())
WIDTH = sum(len(g) for g in GROUPS)  # 3 + 1 + 2 + 1 + 4 + 1 = 12


@pytest.fixture(scope="module", autouse=True)
def _threads():
    # Small batches: one thread avoids OpenMP's spin-waits on a shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_rows(count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "color": str(rng.choice(["red", "green", "blue"])),
            "size": float(rng.normal(10, 2)),
            "code": str(rng.choice(["1", "2"])),
            "weight": float(rng.normal(5, 1.5)),
            "shape": str(rng.choice(["round", "square", "star", "flat"])),
            "age": float(rng.normal(0, 1)),
        }
        for _ in range(count)
    ]


def encoded(rows: list[dict]) -> torch.Tensor:
    return torch.from_numpy(encode_rows(rows, FEATURES))


def small_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(WIDTH, 16), nn.Tanh(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)).eval()


def brute_force_shapley(f, x: torch.Tensor, background: torch.Tensor) -> np.ndarray:
    """The Shapley formula written out: for every variable i and every coalition S of the other
    variables, weight |S|! (M-|S|-1)! / M! times v(S + i) - v(S), with
    v(S) = mean over background rows b of f(x on the variables of S, b elsewhere)."""
    m = len(GROUPS)

    def v(coalition: tuple[int, ...]) -> float:
        total = 0.0
        for b in background:
            z = b.clone()
            for j in coalition:
                z[GROUPS[j]] = x[GROUPS[j]]
            total += float(f(z[None]).detach()[0])
        return total / len(background)

    phi = np.zeros(m)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for coalition in itertools.combinations(others, size):
                phi[i] += weight * (v(tuple(sorted(coalition + (i,)))) - v(coalition))
    return phi


# ----------------------------------------------------------------------------- gradients


def test_integrated_gradients_of_a_linear_model_is_x_minus_baseline_times_w_per_variable():
    torch.manual_seed(1)
    model = nn.Linear(WIDTH, 1)
    w = model.weight.detach()[0].double()
    x, baseline = encoded(random_rows(6, 1)), encoded(random_rows(1, 2))
    forward = OutputForward(model, 0)
    expected = np.stack([((x - baseline).double()[:, g] * w[g]).sum(dim=1).numpy() for g in GROUPS], axis=1)
    for n_steps in (1, 7, 100):
        result = explain(forward, "integrated_gradients", x, baseline, GROUPS, n_steps=n_steps)
        np.testing.assert_allclose(result.attributions, expected, atol=1e-5)
        assert np.abs(result.residuals).max() < 1e-5
    # a one-hot categorical is one variable: its columns' (x - b) * w summed
    color = GROUPS[0]
    assert result.attributions.shape == (6, len(FEATURES))
    np.testing.assert_allclose(result.attributions[:, 0], ((x - baseline)[:, color].double() * w[color]).sum(1), atol=1e-6)
    # against a background, the mean over its rows; DeepLift agrees on a linear model
    background = encoded(random_rows(4, 3))
    mean_expected = np.mean(
        [np.stack([((x - b).double()[:, g] * w[g]).sum(dim=1).numpy() for g in GROUPS], axis=1) for b in background], axis=0
    )
    for method in ("integrated_gradients", "deeplift", "kernel_shap", "shapley"):
        # kernel_shap with a budget above 2^M - 2 coalitions: all of them (the job kind's default here)
        got = explain(forward, method, x, background, GROUPS, n_samples=2 ** len(GROUPS)).attributions
        np.testing.assert_allclose(got, mean_expected, atol=1e-5, err_msg=method)
    # input x gradient: the zero reference of the encoded space
    ixg = explain(forward, "input_x_gradient", x, baseline, GROUPS).attributions
    np.testing.assert_allclose(ixg, np.stack([(x.double()[:, g] * w[g]).sum(1).numpy() for g in GROUPS], 1), atol=1e-5)


@cache
def builtin(model_id: str):
    dataset = {"retail-mlp": "retail-sample", "diabetes-mlp": "diabetes"}[model_id]
    features = BUILTIN_MODELS[model_id].input["tabular"]["features"]
    rows = read_csv(DATA / f"{dataset}.csv", features)
    return BUILTIN_MODELS[model_id].build(), features, rows, torch.from_numpy(encode_rows(rows, features))


@pytest.mark.parametrize("model_id", ["retail-mlp", "diabetes-mlp"])
def test_completeness_holds_within_the_reported_residual_on_the_mlps(model_id):
    model, features, rows, x = builtin(model_id)
    groups = list(variable_groups(features).values())
    forward = OutputForward(model, 0)
    baseline = x[:1] * 0 + x.mean(dim=0, keepdim=True)
    result = explain(forward, "integrated_gradients", x[:60], baseline, groups, n_steps=100)
    with torch.no_grad():
        outputs = model(x[:60])[:, 0].double().numpy()
        reference = float(model(baseline)[0, 0])
    gap = result.attributions.sum(axis=1) - (outputs - reference)
    np.testing.assert_allclose(result.residuals, gap, atol=1e-4)  # the residual it reports is the real one
    difference = np.abs(outputs - reference)
    assert np.median(np.abs(gap) / np.maximum(difference, 1e-3 * difference.mean())) < 0.01
    for method in ("deeplift", "kernel_shap", "shapley_sampling"):  # complete by construction
        exact = explain(forward, method, x[:20], baseline, groups, n_samples=30)
        assert np.abs(exact.residuals).max() < 1e-3 * max(1.0, np.abs(exact.outputs).max()), method


# ----------------------------------------------------------------------------- Shapley


def test_exact_shapley_equals_the_brute_force_formula_on_a_nonlinear_model():
    model = small_mlp(0)
    forward = OutputForward(model, 1)
    x, background = encoded(random_rows(3, 4)), encoded(random_rows(3, 5))
    result = explain(forward, "shapley", x, background, GROUPS)
    for i in range(len(x)):
        np.testing.assert_allclose(result.attributions[i], brute_force_shapley(forward, x[i], background), atol=2e-6)
    assert np.abs(result.residuals).max() < 1e-5


def test_kernel_shap_and_shapley_sampling_converge_to_exact_shapley():
    model = small_mlp(3)
    forward = OutputForward(model, 0)
    x, background = encoded(random_rows(16, 6)), encoded(random_rows(5, 7))
    exact = explain(forward, "shapley", x, background, GROUPS).attributions
    scale = np.abs(exact).mean()

    def error(method: str, n: int) -> float:
        errors = [
            np.abs(explain(forward, method, x, background, GROUPS, n_samples=n, seed=s).attributions - exact).mean()
            for s in range(2)
        ]
        return float(np.mean(errors)) / scale

    kernel = [error("kernel_shap", n) for n in (14, 30, 62)]  # 62 = 2^6 - 2: every coalition
    assert kernel[0] > kernel[1] > kernel[2] and kernel[2] < 1e-5, kernel
    sampling = [error("shapley_sampling", n) for n in (2, 16, 128)]
    assert sampling[0] > sampling[1] > sampling[2] and sampling[2] < 0.08, sampling
    assert sampling[0] / sampling[2] > 4  # about sqrt(64) = 8 for independent permutations


def test_kernel_coalitions_follow_the_shap_scheme():
    masks, weights = kernel_coalitions(6, 62, seed=0)
    assert len(masks) == 62 and len({m.tobytes() for m in masks}) == 62  # all, each once
    sizes = masks.sum(axis=1)
    for size in range(1, 6):  # the Shapley kernel: (M - 1) / (C(M, s) s (M - s)), normalized
        kernel = 5 / (math.comb(6, size) * size * (6 - size))
        np.testing.assert_allclose(weights[sizes == size] / weights[sizes == 1][0], kernel / (5 / (6 * 5)))
    few, few_weights = kernel_coalitions(9, 100, seed=0)
    assert len(few) == 100 and set(few.sum(axis=1)[:18]) == {1, 8}  # sizes 1 and 8 enumerated first
    assert len({m.tobytes() for m in few}) == 100
    assert abs(few_weights.sum() - 1.0) < 1e-9


def test_a_categorical_moves_as_one_variable_and_grouped_attributions_sum():
    # f ignores the colour of valid rows (exactly one column hot) but not of half-switched ones
    class Penalty(nn.Module):
        def forward(self, x):
            return 10.0 * (x[:, GROUPS[0]].sum(dim=1) - 1.0) ** 2 + x[:, GROUPS[1][0]] + x[:, GROUPS[4]] @ torch.tensor([0.0, 1.0, 2.0, 3.0])

    forward = Penalty()
    x, baseline = encoded(random_rows(8, 8)), encoded([{**random_rows(1, 9)[0], "color": "red", "shape": "round"}])
    for method in ("feature_ablation", "shapley_sampling", "kernel_shap", "shapley"):
        phi = explain(forward, method, x, baseline, GROUPS, n_samples=50).attributions
        np.testing.assert_allclose(phi[:, 0], 0.0, atol=1e-5, err_msg=method)  # colour: no effect
        shape_gain = (x[:, GROUPS[4]] @ torch.tensor([0.0, 1.0, 2.0, 3.0])).double().numpy()
        np.testing.assert_allclose(phi[:, 4], shape_gain, atol=1e-5, err_msg=method)  # the whole category switch
    # gradient methods: a variable's attribution is the sum of its columns' (Captum, ungrouped)
    from captum.attr import IntegratedGradients

    model = small_mlp(2)
    forward = OutputForward(model, 0)
    columns = IntegratedGradients(forward).attribute(x, baselines=baseline, n_steps=100).detach().double()
    grouped = explain(forward, "integrated_gradients", x, baseline, GROUPS, n_steps=100).attributions
    np.testing.assert_allclose(grouped, np.stack([columns[:, g].sum(1).numpy() for g in GROUPS], 1), atol=1e-6)


def test_exact_shapley_is_refused_above_the_variable_limit():
    wide = [{"name": f"v{i}", "type": "numeric"} for i in range(MAX_EXACT_SHAPLEY_VARIABLES + 1)]
    groups = [[i] for i in range(len(wide))]
    forward = OutputForward(nn.Linear(len(wide), 1), 0)
    with pytest.raises(ValueError, match="limit is 12 variables"):  # the limit the job kind passes
        explain(
            forward, "shapley", torch.zeros(1, len(wide)), torch.zeros(1, len(wide)), groups,
            max_variables=MAX_EXACT_SHAPLEY_VARIABLES,
        )  # fmt: skip
    record = {"id": "wide", "kind": "tabular", "input": {"tabular": {"features": wide}}, "layers": None}
    params = TabularAttributionParams.model_validate({"rows": [{f"v{i}": 1 for i in range(13)}], "method": "shapley"})
    with pytest.raises(InvalidRequest) as caught:
        check_tabular_attribution(params, record)
    assert caught.value.slug == "too-many-variables" and "13 variables" in caught.value.detail and "limit is 12" in caught.value.detail


def test_sampling_methods_are_deterministic_for_a_seed():
    forward = OutputForward(small_mlp(4), 0)
    x, background = encoded(random_rows(5, 10)), encoded(random_rows(6, 11))
    for method in ("gradient_shap", "shapley_sampling", "kernel_shap"):
        a = explain(forward, method, x, background, GROUPS, n_samples=20, seed=3).attributions
        b = explain(forward, method, x, background, GROUPS, n_samples=20, seed=3).attributions
        c = explain(forward, method, x, background, GROUPS, n_samples=20, seed=4).attributions
        np.testing.assert_array_equal(a, b, err_msg=method)
        assert not np.array_equal(a, c), method


# ----------------------------------------------------------------------------- retail-mlp


def test_on_retail_mlp_the_documented_drivers_lead_and_region_is_last():
    model, features, rows, x = builtin("retail-mlp")
    groups = list(variable_groups(features).values())
    names = [f["name"] for f in features]
    rng = np.random.default_rng(0)
    explained = x[rng.choice(len(x), 150, replace=False)]
    background = x[rng.choice(len(x), 25, replace=False)]
    result = explain(OutputForward(model, 0), "shapley", explained, background, groups)
    importance = dict(zip(names, np.abs(result.attributions).mean(axis=0)))
    ranking = sorted(names, key=lambda n: -importance[n])
    documented = retail.RETAIL_DOCUMENTED_DRIVERS
    assert ranking[:3] == documented[:3], ranking
    assert ranking[-1] in retail.RETAIL_IRRELEVANT and importance["region"] < 0.05 * importance[ranking[0]], importance
    assert set(ranking[:-1]) == set(documented)
    # each documented driver lands within two places of its documented rank
    assert all(abs(ranking.index(name) - rank) <= 2 for rank, name in enumerate(documented)), ranking


def test_the_variables_driving_a_hidden_neuron_are_reported():
    model, features, rows, x = builtin("retail-mlp")
    groups = list(variable_groups(features).values())
    names = [f["name"] for f in features]
    sample = x[:400]
    with torch.no_grad():
        hidden = model.act1(model.hidden1(sample))
    unit = int(hidden.std(dim=0).argmax())  # the liveliest neuron of act1
    baseline = sample.mean(dim=0, keepdim=True)
    # pre-activation hidden1[unit] is linear in the input: IG must be (x - b) . W1[unit] per variable
    w = model.hidden1.weight.detach()[unit].double()
    pre = explain(NeuronForward(model, "hidden1", unit), "integrated_gradients", sample[:50], baseline, groups)
    expected = np.stack([((sample[:50] - baseline).double()[:, g] * w[g]).sum(1).numpy() for g in groups], 1)
    np.testing.assert_allclose(pre.attributions, expected, atol=1e-5)
    # the post-ReLU neuron: the methods agree on which variables drive it
    forward = NeuronForward(model, "act1", unit)
    background = sample[::40]
    rankings = {}
    for method in ("shapley", "kernel_shap", "integrated_gradients", "shapley_sampling", "deeplift"):
        result = explain(forward, method, sample[:40], background, groups, n_samples=50, n_steps=50)
        assert np.abs(result.residuals).max() < 0.05 * max(1e-3, np.abs(result.outputs - result.baseline_outputs).mean()), method
        importance = np.abs(result.attributions).mean(axis=0)
        rankings[method] = [names[j] for j in np.argsort(-importance)]
    for method, ranking in rankings.items():
        assert ranking[:3] == rankings["shapley"][:3], (method, rankings)
    # a variable with no weight into the neuron would get nothing: zero one out and see
    model_copy = type(model)(model.n_inputs, model.n_outputs, model.hidden_sizes).eval()
    model_copy.load_state_dict(model.state_dict())
    top = names.index(rankings["shapley"][0])
    with torch.no_grad():
        model_copy.hidden1.weight[unit, groups[top]] = 0.0
    muted = explain(NeuronForward(model_copy, "act1", unit), "shapley", sample[:40], background, groups)
    assert np.abs(muted.attributions[:, top]).max() < 1e-6
    assert rankings["shapley"][0] != [names[j] for j in np.argsort(-np.abs(muted.attributions).mean(0))][0]


# ----------------------------------------------------------------------------- views, charts, checks


def test_top_rows_and_the_maximizing_input_stay_in_the_observed_domain():
    model, features, rows, x = builtin("retail-mlp")
    groups = list(variable_groups(features).values())
    forward = NeuronForward(model, "act2", 3)
    positions, values = top_rows(forward, x, 9)
    assert len(positions) == 9 and np.all(np.diff(values) <= 0)
    with torch.no_grad():
        assert abs(float(forward(x).max()) - values[0]) < 1e-6
    domain = observed_domain(features, rows)
    best = maximize(forward, domain, groups, [rows[p] for p in positions[:3]])
    assert best["activation"] >= values[0] - 1e-6
    for f in features:
        value = best["values"][f["name"]]
        if f["type"] == "numeric":
            low, high = domain.ranges[f["name"]]
            assert low <= value <= high
        else:
            assert value in domain.categories[f["name"]]
    with torch.no_grad():
        again = float(forward(torch.from_numpy(encode_rows([best["values"]], features)))[0])
    assert abs(again - best["activation"]) < 1e-4


def test_charts_are_pngs():
    names = [f["name"] for f in FEATURES]
    phi = np.random.default_rng(0).normal(size=(40, len(names)))
    for data in (
        importance_png(names, np.abs(phi).mean(0).tolist(), title="t", subtitle="a\nb"),
        waterfall_png(names, phi[0].tolist(), random_rows(1, 0)[0], output=1.0, baseline_output=0.5, title="w"),
        beeswarm_png(names, phi, [np.linspace(0, 1, 40).tolist() if f["type"] == "numeric" else [i % 2] * 40 for i, f in enumerate(FEATURES)],
                     [f["type"] for f in FEATURES], [f.get("categories") for f in FEATURES], title="b"),  # fmt: skip
    ):
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.size[0] >= 600


@pytest.mark.parametrize(
    "cell, words",
    [
        ({"color": "purple"}, "unknown category"),
        ({"code": 1.5}, "unknown category"),
        ({"code": True}, "unknown category"),
        ({"color": None}, "missing value"),
        ({"size": ""}, "missing value"),
        ({"size": float("nan")}, "missing value"),
        ({"size": "large"}, "expected a finite number"),
        ({"size": True}, "expected a finite number"),
        ({"size": [1.0]}, "expected a finite number"),
        ({"size": float("inf")}, "expected a finite number"),
    ],
)
def test_the_torch_free_row_check_agrees_with_encode_rows(cell, words):
    good = random_rows(2, 12)
    bad = [good[0], {**good[1], **cell}]
    problems = row_problems(bad, FEATURES)
    column = next(iter(cell))
    assert [(row, col) for row, col, _ in problems] == [(1, column)]
    assert words in problems[0][2] and f"row 1, column {column!r}" in problems[0][2]
    with pytest.raises(ValueError, match=f"row 1, column '{column}'"):
        encode_rows(bad, FEATURES)
    assert row_problems(good + [{**good[0], "code": 2, "size": "7.5"}], FEATURES) == []  # what encodes passes


def test_the_service_side_does_not_import_torch():
    code = "import sys, service.kinds.tabular_attribution; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(DATA.parent.parent.parent))


def test_every_method_runs_on_a_neuron_target_and_reports_per_variable():
    model = small_mlp(5)
    x, background = encoded(random_rows(4, 13)), encoded(random_rows(3, 14))
    forward = NeuronForward(model, "3", 2)  # the ReLU after the second Linear
    for method in METHODS:
        result = explain(forward, method, x, background, GROUPS, n_samples=16, n_steps=32)
        assert result.attributions.shape == (4, len(FEATURES)) and np.isfinite(result.attributions).all(), method
