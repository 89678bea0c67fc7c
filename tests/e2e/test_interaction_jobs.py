"""Interaction attribution through HTTP (a real API, worker and Redis) on retail-mlp: pairwise
Shapley interactions and integrated Hessians of an output and of a hidden neuron, checked
against the core run again here, against exact Shapley values, and against the documented
generating process of retail-mlp's data (worker/models/retail.py)."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict

import numpy as np
import pytest
import torch

from tests.conftest import started_stack
from tests.e2e.test_jobs_api import assert_problem
from tests.worker.core.interaction_games import one_torch_thread
from worker.core.attribution import OutputForward
from worker.core.attribution.interactions import shapley_interactions
from worker.models.builtin import BUILTIN_MODELS, DATA
from worker.models.retail import RETAIL_FEATURES
from worker.models.tabular import encode_rows, read_csv, variable_groups

PLUGINS = "tests.plugins.lifecycle,service.kinds.tabular_attribution"
VARIABLES = [f["name"] for f in RETAIL_FEATURES]
# The generating process's interactions: item_category with season, price elasticity, holiday
# and temperature (worker/models/retail.py); region has no effect at all.
DOCUMENTED_PAIRS = [{"item_category", other} for other in ("season", "price", "holiday_week", "temperature")]


@pytest.fixture(scope="module")
def interaction_stack(redis_url, tmp_path_factory):
    # One thread: small batches on a shared 2-core machine.
    with started_stack(redis_url, tmp_path_factory, env={"OMP_NUM_THREADS": "1"}, plugins=PLUGINS) as stack:
        yield stack


def submit(client, params: dict):
    return client.post("/v1/jobs", json={"kind": "tabular_attribution", "model": "retail-mlp", "params": params})


def run(stack, client, params: dict) -> tuple[dict, dict]:
    """(the succeeded job, its result.json)."""
    response = submit(client, params)
    assert response.status_code == 202, response.text
    job = stack.wait_status(client, response.json()["id"], {"succeeded", "failed", "canceled"}, timeout=120)
    assert job["status"] == "succeeded", job["error"]
    return job, json.loads(artifact(client, job, "result.json"))


def artifact(client, job: dict, name: str) -> bytes:
    response = client.get(f"/v1/jobs/{job['id']}/artifacts/{name}")
    assert response.status_code == 200, response.text
    return response.content


def pair_values(row: dict) -> dict[frozenset, float]:
    return {frozenset(entry["variables"]): entry["value"] for entry in row["interactions"]}


def assert_efficient(rows: list[dict], tolerance: float) -> None:
    """Main effects plus each pair once add up to output - baseline_output, up to `residual`,
    and the residual itself is within `tolerance`."""
    for row in rows:
        assert len(row["interactions"]) == len(VARIABLES) * (len(VARIABLES) - 1) // 2
        total = sum(row["main_effects"].values()) + sum(e["value"] for e in row["interactions"])
        assert total - (row["output"] - row["baseline_output"]) == pytest.approx(row["residual"], abs=1e-9)
        assert abs(row["residual"]) <= tolerance
        # the per-variable attributions: main effect plus half of each of the variable's pairs
        for name in VARIABLES:
            half = sum(e["value"] for e in row["interactions"] if name in e["variables"]) / 2
            assert row["attributions"][name] == pytest.approx(row["main_effects"][name] + half, abs=1e-9)


def encoded(indices: list[int]) -> torch.Tensor:
    table = read_csv(DATA / "retail-sample.csv", RETAIL_FEATURES)
    return torch.from_numpy(encode_rows([table[i] for i in indices], RETAIL_FEATURES))


def test_k_sii_of_the_output_adds_up_equals_the_core_and_finds_the_documented_pairs(interaction_stack):
    """Exact k-SII of log sales over 300 rows against a 20-row background.

    Ground truth tolerance: retail-mlp was fitted to data with noise of sd 0.12 (log units) and
    learned small spurious region effects from it, so region's pairs are not 0 but fit noise.
    Every pair with region must stay under 5 % of the strongest pair's mean |interaction| (that is
    about 0.01 log units, 1 % of sales, a tenth of the data's noise); measured: about 2.5 %. The
    four documented pairs must be the four strongest."""
    client = interaction_stack.client()
    background = {"background": "retail-sample", "size": 20}
    job, result = run(
        interaction_stack, client,
        {"dataset": "retail-sample", "sample": 300, "method": "shapley_interactions", "baseline": background},
    )  # fmt: skip
    rows = result["rows"]
    assert len(rows) == 300 and result["params"]["index"] == "k-SII" and result["interactions"]["exact"] is True
    assert result["interactions"]["computation"] == {"estimator": "exact", "coalitions": 512}
    assert_efficient(rows, tolerance=1e-5)  # float rounding: the model computes in float32

    # the core, run again here on the same rows and background rows, gives the same values
    model = BUILTIN_MODELS["retail-mlp"].build()
    groups = list(variable_groups(RETAIL_FEATURES).values())
    indices = [row["index"] for row in rows]
    with one_torch_thread():
        again = shapley_interactions(
            OutputForward(model, 0), encoded(indices), encoded(result["baseline"]["indices"]), groups
        )
    for k, row in enumerate(rows):
        assert [row["main_effects"][v] for v in VARIABLES] == pytest.approx(again.main_effects[k], abs=1e-6)
        pairs = pair_values(row)
        for a in range(len(VARIABLES)):
            for b in range(a + 1, len(VARIABLES)):
                assert pairs[frozenset((VARIABLES[a], VARIABLES[b]))] == pytest.approx(
                    again.interactions[k, a, b], abs=1e-6
                )

    # ground truth: the documented pairs lead, region's pairs are near zero
    ranked = result["global_interactions"]
    assert [e["mean_abs"] for e in ranked] == sorted((e["mean_abs"] for e in ranked), reverse=True)
    assert {frozenset(e["variables"]) for e in ranked[:4]} == {frozenset(p) for p in DOCUMENTED_PAIRS}
    assert set(ranked[0]["variables"]) == {"item_category", "season"}
    for entry in ranked:
        if "region" in entry["variables"]:
            assert entry["mean_abs"] < 0.05 * ranked[0]["mean_abs"], entry
    means = {frozenset(e["variables"]): e["mean_abs"] for e in ranked}
    column = [abs(pair_values(row)[frozenset(("item_category", "season"))]) for row in rows]
    assert means[frozenset(("item_category", "season"))] == pytest.approx(np.mean(column), rel=1e-9)

    # the pair view: the mean pair value per (category, season) cell, as the rows give it
    pair = result["pair"]
    assert pair["variables"] == ["item_category", "season"] and "largest" in pair["chosen"]
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row, value in zip(rows, (pair_values(r)[frozenset(("item_category", "season"))] for r in rows)):
        cells[(row["values"]["item_category"], row["values"]["season"])].append(value)
    view = {(c["values"]["item_category"], c["values"]["season"]): c for c in pair["view"]["cells"]}
    assert set(view) == set(cells)
    for key, values in cells.items():
        assert view[key]["rows"] == len(values) and view[key]["mean_interaction"] == pytest.approx(np.mean(values))
    # garden sells most in spring and least in winter (SEASON_EFFECT +0.60 and -0.90)
    assert view[("garden", "spring")]["mean_interaction"] > 0.1 > -0.1 > view[("garden", "winter")]["mean_interaction"]

    # interactions.csv: one line per row and pair, the same values
    table = list(csv.reader(io.StringIO(artifact(client, job, "interactions.csv").decode())))
    assert table[0] == ["index", "variable_a", "variable_b", "interaction"] and len(table) == 1 + 300 * 36
    first = {(line[1], line[2]): float(line[3]) for line in table[1:37]}
    assert table[1][0] == str(rows[0]["index"]) and first == pytest.approx(
        {tuple(e["variables"]) if tuple(e["variables"]) in first else tuple(reversed(e["variables"])): e["value"]
         for e in rows[0]["interactions"]}, abs=1e-8,
    )  # fmt: skip
    names = {a["name"] for a in job["result"]["artifacts"]}
    assert {
        "interactions.png",
        "pair_view.png",
        f"interactions_row_{rows[0]['index']}.png",
        "main_effects.csv",
    } <= names
    assert "summary.png" not in names and not any(n.startswith("waterfall_") for n in names)
    assert job["result"]["summary"]["top_pair"] == ["item_category", "season"]

    # k-SII's per-variable attributions are the Shapley values: an exact `shapley` job agrees
    _, shapley = run(
        interaction_stack, client,
        {"dataset": "retail-sample", "indices": indices[:20], "method": "shapley", "baseline": background},
    )  # fmt: skip
    for mine, theirs in zip(rows[:20], shapley["rows"]):
        assert mine["index"] == theirs["index"]
        assert mine["attributions"] == pytest.approx(theirs["attributions"], abs=1e-6)


def test_a_hidden_neuron_names_its_pair_and_the_rows_where_it_is_strongest(interaction_stack):
    """Neuron act2[3] of retail-mlp responds to item category and season together (its k-SII
    pair is five times the next one on these rows)."""
    client = interaction_stack.client()
    job, result = run(
        interaction_stack, client,
        {"dataset": "retail-sample", "sample": 60, "method": "shapley_interactions", "top_k": 5,
         "target": {"type": "neuron", "layer": "act2", "unit": 3}},
    )  # fmt: skip
    rows = result["rows"]
    assert result["target"]["type"] == "neuron" and len(rows) == 60
    assert_efficient(rows, tolerance=1e-5)
    pair = result["pair"]
    assert pair["variables"] == result["global_interactions"][0]["variables"]
    assert set(pair["variables"]) == {"item_category", "season"}
    key = frozenset(pair["variables"])
    expected = sorted(rows, key=lambda r: -abs(pair_values(r)[key]))[:5]
    assert [r["index"] for r in pair["strongest_rows"]] == [r["index"] for r in expected]
    for shown, row in zip(pair["strongest_rows"], expected):
        assert shown["interaction"] == pytest.approx(pair_values(row)[key], abs=1e-12)
        assert shown["values"] == {v: row["values"][v] for v in pair["variables"]}
    assert "neuron act2[3]" in job["result"]["summary"]["target"]


def test_integrated_hessians_are_complete_and_a_sampled_estimate_states_its_errors(interaction_stack):
    client = interaction_stack.client()
    job, result = run(
        interaction_stack, client, {"dataset": "retail-sample", "sample": 30, "method": "integrated_hessians"}
    )
    rows = result["rows"]
    assert result["params"]["n_steps"] == 32 and result["interactions"]["index"] == "integrated_hessians"
    # completeness (the quadrature's error; ReLUs are softplus(20) in a copy, as the details say)
    scale = np.mean([abs(r["output"] - r["baseline_output"]) for r in rows])
    assert_efficient(rows, tolerance=1e-3 * scale)
    assert "Softplus" in result["interactions"]["computation"]["smoothing"]["replaced"]
    assert set(result["global_interactions"][0]["variables"]) == {"item_category", "season"}
    assert result["interactions"]["model_evaluations"]["gradient_rows"] > 0

    # k-SII under a budget smaller than the 512 coalitions: sampled, with a standard error per value
    job, result = run(
        interaction_stack, client,
        {"dataset": "retail-sample", "sample": 8, "method": "shapley_interactions", "n_samples": 200,
         "pair": ["season", "item_category"]},
    )  # fmt: skip
    how = result["interactions"]
    assert how["exact"] is False and how["computation"]["budget"] == 200 and how["computation"]["permutations"] >= 2
    assert result["params"]["n_samples"] == 200
    for row in result["rows"]:
        assert all(entry["std_error"] >= 0 for entry in row["interactions"])
        assert set(row["main_effect_std_errors"]) == set(VARIABLES)
    assert_efficient(result["rows"], tolerance=1e-5)  # k-SII is efficient for every permutation (float32 model)
    assert all("mean_std_error" in e for e in result["global_interactions"])
    assert result["pair"]["variables"] == ["season", "item_category"] and "asked" in result["pair"]["chosen"]
    header = artifact(client, job, "interactions.csv").decode().splitlines()[0]
    assert header == "index,variable_a,variable_b,interaction,std_error"


def test_misplaced_interaction_params_are_422_naming_the_field(interaction_stack):
    client = interaction_stack.client()
    row = {"dataset": "retail-sample", "indices": [0]}
    cases = [
        ({**row, "index": "STII"}, ["body", "params", "index"], "shapley_interactions only"),
        (
            {**row, "method": "shapley_interactions", "pair": ["season", "colour"]},
            ["body", "params", "pair", 1],
            "'colour'",
        ),
        ({**row, "method": "integrated_hessians", "n_steps": 300}, ["body", "params", "n_steps"], "at most 256"),
        ({**row, "method": "shapley_interactions", "n_steps": 10}, ["body", "params", "n_steps"], "n_samples"),
        ({**row, "method": "shapley_interactions", "n_samples": 20}, ["body", "params", "n_samples"], "at least 144"),
        ({**row, "method": "shapley_interactions", "index": "SII"}, ["body", "params", "index"], "k-SII"),
    ]
    for params, loc, words in cases:
        problem = assert_problem(submit(client, params), 422)
        assert problem["errors"][0]["loc"] == loc, (params, problem)
        assert words in problem["detail"], (params, problem["detail"])
