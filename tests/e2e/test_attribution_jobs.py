"""tabular_attribution jobs through HTTP: a real API, worker and Redis, on retail-mlp."""

from __future__ import annotations

import csv
import io
import json

import pytest
from PIL import Image
from safetensors.torch import save as save_safetensors

from tests.conftest import started_stack
from tests.e2e.test_jobs_api import assert_problem
from worker.models.retail import RETAIL_DOCUMENTED_DRIVERS, RETAIL_FEATURES
from worker.models.tabular import TabularMLP

PLUGINS = "tests.plugins.lifecycle,service.kinds.tabular_attribution"
VARIABLES = [f["name"] for f in RETAIL_FEATURES]
ROW = {
    "item_category": "garden", "season": "spring", "region": "north", "store_size": 1800,
    "price": 19.5, "discount": 0.1, "promotion": "yes", "holiday_week": "no", "temperature": 14.0,
}  # fmt: skip


@pytest.fixture(scope="module")
def attribution_stack(redis_url, tmp_path_factory):
    """Like make_stack(plugins=PLUGINS), shared by this module's tests (one worker start)."""
    # One thread: small batches on a shared 2-core machine.
    with started_stack(redis_url, tmp_path_factory, env={"OMP_NUM_THREADS": "1"}, plugins=PLUGINS) as stack:
        yield stack


def submit(client, params: dict, model: str = "retail-mlp"):
    return client.post("/v1/jobs", json={"kind": "tabular_attribution", "model": model, "params": params})


def run(stack, client, params: dict, model: str = "retail-mlp") -> dict:
    response = submit(client, params, model)
    assert response.status_code == 202, response.text
    job = stack.wait_status(client, response.json()["id"], {"succeeded", "failed", "canceled"}, timeout=60)
    assert job["status"] == "succeeded", job["error"]
    return job


def artifact(client, job: dict, name: str) -> bytes:
    response = client.get(f"/v1/jobs/{job['id']}/artifacts/{name}")
    assert response.status_code == 200, response.text
    return response.content


def test_artifact_contract_for_a_few_dataset_rows(attribution_stack):
    client = attribution_stack.client()
    # a few rows make no dataset views and no charts unless asked (tests/e2e/test_small_jobs.py)
    asked = {"dataset_views": True, "charts": True}
    job = run(attribution_stack, client, {"dataset": "retail-sample", "indices": [0, 5, 42], **asked})
    names = {a["name"]: a for a in job["result"]["artifacts"]}
    assert {"attributions.csv", "result.json", "importance.png", "waterfall_0.png", "waterfall_5.png", "waterfall_42.png"} <= set(names)
    assert "summary.png" not in names  # a beeswarm is for many rows
    assert names["attributions.csv"]["content_type"].startswith("text/csv")
    result = json.loads(artifact(client, job, "result.json"))
    assert result["variables"] == VARIABLES and result["method"] == "integrated_gradients"
    assert [row["index"] for row in result["rows"]] == [0, 5, 42]
    for row in result["rows"]:
        assert list(row["attributions"]) == VARIABLES
        total = sum(row["attributions"].values())
        assert abs(row["residual"] - (total - (row["output"] - row["baseline_output"]))) < 1e-6
        assert abs(row["residual"]) <= 0.05 * abs(row["output"] - row["baseline_output"]) + 1e-4
    assert set(result["global_importance"]) == set(VARIABLES) and result["ranking"][0] in RETAIL_DOCUMENTED_DRIVERS[:3]
    params = result["params"]
    assert params["n_steps"] == 100 and params["seed"] == 0 and params["target"] == {"type": "output", "index": 0}
    assert params["baseline"]["type"] == "mean" and params["baseline"]["row"]["item_category"] in RETAIL_FEATURES[0]["categories"]
    assert len(result["top_rows"]["rows"]) == 9 and result["maximizing_input"]["activation"] >= result["top_rows"]["rows"][0]["activation"]
    table = list(csv.reader(io.StringIO(artifact(client, job, "attributions.csv").decode())))
    assert table[0] == ["index", *VARIABLES] and [r[0] for r in table[1:]] == ["0", "5", "42"]
    assert abs(float(table[2][2]) - result["rows"][1]["attributions"][VARIABLES[1]]) < 1e-6
    for name in ("importance.png", "waterfall_5.png"):
        assert Image.open(io.BytesIO(artifact(client, job, name))).format == "PNG"
    assert job["result"]["summary"]["rows"] == 3

    many = run(
        attribution_stack, client,
        {"dataset": "retail-sample", "sample": 40, "method": "kernel_shap", "n_samples": 64,
         "baseline": {"background": "retail-sample", "size": 16}, "charts": True},
    )  # fmt: skip
    listed = {a["name"] for a in many["result"]["artifacts"]}
    assert "summary.png" in listed and not any(n.startswith("waterfall_") for n in listed)
    summary = json.loads(artifact(client, many, "result.json"))
    assert len(summary["rows"]) == 40 and summary["baseline"]["type"] == "background" and summary["baseline"]["size"] == 16
    assert max(abs(r["residual"]) for r in summary["rows"]) < 1e-4  # kernel SHAP enforces efficiency
    assert summary["params"]["n_samples"] == 64


def test_rows_that_cannot_be_encoded_are_a_422_naming_row_and_column(attribution_stack):
    client = attribution_stack.client()
    rows = [
        {**ROW, "price": "cheap"},  # wrong type
        {**ROW, "item_category": "furniture"},  # unknown category
        {k: v for k, v in ROW.items() if k != "season"},  # missing value
        dict(ROW),
    ]
    problem = assert_problem(submit(client, {"rows": rows}), 422)
    located = {tuple(e["loc"]): e["msg"] for e in problem["errors"]}
    assert set(located) == {
        ("body", "params", "rows", 0, "price"),
        ("body", "params", "rows", 1, "item_category"),
        ("body", "params", "rows", 2, "season"),
    }
    assert "row 0, column 'price'" in located[("body", "params", "rows", 0, "price")] and "number" in located[("body", "params", "rows", 0, "price")]
    assert "unknown category 'furniture'" in located[("body", "params", "rows", 1, "item_category")]
    assert "row 2, column 'season': missing value" in located[("body", "params", "rows", 2, "season")]
    assert "row 1, column 'item_category'" in problem["detail"]
    bad_baseline = assert_problem(submit(client, {"rows": [ROW], "baseline": {"row": {**ROW, "discount": None}}}), 422)
    assert bad_baseline["errors"][0]["loc"] == ["body", "params", "baseline", "row", "discount"]
    # other submit-time checks: the target, the model kind, the params
    unknown = assert_problem(submit(client, {"rows": [ROW], "target": {"type": "neuron", "layer": "hidden9", "unit": 0}}), 422)
    assert unknown["errors"][0]["loc"] == ["body", "params", "target", "layer"] and "act1" in unknown["detail"]
    out_of_range = assert_problem(submit(client, {"rows": [ROW], "target": {"type": "neuron", "layer": "act1", "unit": 64}}), 422)
    assert out_of_range["errors"][0]["loc"] == ["body", "params", "target", "unit"] and "0 to 63" in out_of_range["detail"]
    assert "tabular model" in assert_problem(submit(client, {"rows": [ROW]}, model="shapes-cnn"), 422)["detail"]
    assert_problem(submit(client, {"rows": [ROW], "dataset": "retail-sample"}), 422)
    assert_problem(submit(client, {"rows": [ROW], "method": "lime"}), 422)
    # a dataset's columns are checked at submit against its record: explaining every row of a
    # table with an unknown category is a 422 naming the column ...
    lines = [",".join(VARIABLES), ",".join(str(ROW[v]) for v in VARIABLES), ",".join(str({**ROW, "season": "monsoon"}[v]) for v in VARIABLES)]
    uploaded = client.post("/v1/datasets", files={"file": ("odd-retail.csv", "\n".join(lines).encode())})
    assert uploaded.status_code == 201, uploaded.text
    whole = assert_problem(submit(client, {"dataset": "odd-retail"}), 422)
    assert "column 'season'" in whole["detail"] and "'monsoon'" in whole["detail"]
    # ... while rows picked by index are only read on the worker: the job fails, naming row and column
    response = submit(client, {"dataset": "odd-retail", "indices": [1]})
    failed = attribution_stack.wait_status(client, response.json()["id"], {"succeeded", "failed"}, timeout=60)
    assert failed["status"] == "failed" and failed["error"]["type"] == "invalid-rows"
    assert "row 1, column 'season': unknown category 'monsoon'" in failed["error"]["detail"]


def test_exact_shapley_above_the_variable_limit_is_refused(attribution_stack):
    client = attribution_stack.client()
    features = [{"name": f"x{i}", "type": "numeric"} for i in range(13)]
    manifest = {"name": "wide-mlp", "kind": "tabular", "format": "safetensors", "architecture": "tabular-mlp",
                "input": {"tabular": {"features": features}}}  # fmt: skip
    weights = save_safetensors(TabularMLP(13, 1, (4,)).state_dict())
    uploaded = client.post("/v1/models", files={"file": ("w.safetensors", weights)}, data={"manifest": json.dumps(manifest)})
    assert uploaded.status_code == 202, uploaded.text
    problem = assert_problem(submit(client, {"rows": [{f"x{i}": 1.0 for i in range(13)}], "method": "shapley"}, "wide-mlp"), 422)
    assert problem["errors"][0]["loc"] == ["body", "params", "method"]
    assert "13 variables" in problem["detail"] and "limit is 12" in problem["detail"] and "kernel_shap" in problem["detail"]
    # the same model is fine with a sampling method
    assert submit(client, {"rows": [{f"x{i}": 1.0 for i in range(13)}], "method": "kernel_shap"}, "wide-mlp").status_code == 202


def test_a_hidden_neuron_as_target(attribution_stack):
    client = attribution_stack.client()
    rows = [{**ROW, "price": p, "item_category": c} for p in (9.0, 20.0, 40.0) for c in ("grocery", "toys")]
    job = run(
        attribution_stack, client,
        {"rows": rows, "target": {"type": "neuron", "layer": "act2", "unit": 3}, "method": "shapley",
         "baseline": {"background": "retail-sample", "size": 12}, "dataset_views": True},
    )  # fmt: skip
    result = json.loads(artifact(client, job, "result.json"))
    assert result["target"]["type"] == "neuron" and result["target"]["layer"] == "act2" and result["target"]["unit"] == 3
    assert [row["index"] for row in result["rows"]] == list(range(6))
    assert max(abs(row["residual"]) for row in result["rows"]) < 1e-5
    assert len(result["ranking"]) == len(VARIABLES) and result["ranking"][0] in VARIABLES
    assert "neuron act2[3]" in job["result"]["summary"]["target"]
    top = result["top_rows"]["rows"]
    assert result["maximizing_input"]["activation"] >= top[0]["activation"] - 1e-6
    assert result["top_rows"]["source"] == "the 6 inline rows" and len(top) == 6


def test_a_seed_makes_a_job_repeatable(attribution_stack):
    client = attribution_stack.client()
    params = {"dataset": "retail-sample", "sample": 12, "method": "shapley_sampling", "n_samples": 8, "seed": 7,
              "baseline": {"background": "retail-sample", "size": 8}}  # fmt: skip
    first, second = run(attribution_stack, client, params), run(attribution_stack, client, params)
    other = run(attribution_stack, client, {**params, "seed": 8})
    csv_of = {job["id"]: artifact(client, job, "attributions.csv") for job in (first, second, other)}
    assert csv_of[first["id"]] == csv_of[second["id"]]
    assert csv_of[first["id"]] != csv_of[other["id"]]
    shas = [{a["name"]: a["sha256"] for a in job["result"]["artifacts"]}["attributions.csv"] for job in (first, second)]
    assert shas[0] == shas[1]
