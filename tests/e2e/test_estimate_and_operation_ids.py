"""POST /v1/jobs/estimate (what a job will cost, said before it runs) and clean operation ids
(a client generated from openapi/openapi.json has `create_job`, not `create_job_v1_jobs_post`)."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from service.kinds import cost
from tests.conftest import ALICE, REPO, TEST_MODEL

DECONVNET = {"kind": "deconvnet", "model": "shapes-cnn", "params": {"layer": "features.6", "dataset": "shapes-val"}}
ACTMAX = {"kind": "activation_maximization", "model": "shapes-cnn", "params": {"objective": {"type": "class", "units": [0]}}}
TABULAR = {"kind": "tabular_attribution", "model": "retail-mlp", "params": {"dataset": "retail-sample", "indices": [0]}}


def with_params(body: dict, **params) -> dict:
    return {**body, "params": {**body["params"], **params}}


BAD_BODIES = {
    "unknown kind": {"kind": "nope", "model": "shapes-cnn"},
    "missing kind": {"model": "shapes-cnn"},
    "extra top-level field": {**DECONVNET, "colour": "red"},
    "unknown param": with_params(DECONVNET, bogus=1),
    "unknown model": {**DECONVNET, "model": "no-such-model"},
    "malformed model ref": {**DECONVNET, "model": "torchvision/resnet50?weights=sometimes"},
    "unknown layer": with_params(DECONVNET, layer="features.99"),
    "channel out of range": with_params(DECONVNET, channels=[999]),
    "unknown dataset": with_params(DECONVNET, dataset="no-such-dataset"),
    "dataset of the wrong kind": with_params(DECONVNET, dataset="retail-sample"),
    "actmax on a tabular model": {**ACTMAX, "model": "retail-mlp"},
    "actmax steps over the limit": with_params(ACTMAX, steps=10**6),
    "unknown class label": with_params(ACTMAX, objective={"type": "class", "units": ["no such class"]}),
    "tabular row that cannot be encoded": {
        "kind": "tabular_attribution",
        "model": "retail-mlp",
        "params": {"rows": [{"category": "not a category"}]},
    },
    "timeout over the service's": {**DECONVNET, "timeout_seconds": 10**7},
    "webhook on a service without webhooks": {**DECONVNET, "webhook": {"url": "https://hooks.example.com/x"}},
}


def problem_without_instance(response) -> dict:
    body = response.json()
    body.pop("instance", None)
    return body


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_estimate_refuses_exactly_what_create_refuses(stack, case):
    client = stack.client()
    created = client.post("/v1/jobs", json=BAD_BODIES[case])
    estimated = client.post("/v1/jobs/estimate", json=BAD_BODIES[case])
    assert created.status_code == 422, created.text
    assert estimated.status_code == created.status_code
    assert estimated.headers["content-type"] == created.headers["content-type"] == "application/problem+json"
    assert problem_without_instance(estimated) == problem_without_instance(created)


def test_estimate_refuses_bodies_that_are_not_json_like_create(stack):
    client = stack.client()
    for content, content_type in [("{not json", "application/json"), ("kind=deconvnet", "text/plain")]:
        headers = {"Content-Type": content_type}
        created = client.post("/v1/jobs", content=content, headers=headers)
        estimated = client.post("/v1/jobs/estimate", content=content, headers=headers)
        assert created.status_code in (415, 422)
        assert estimated.status_code == created.status_code
        assert problem_without_instance(estimated) == problem_without_instance(created)
    assert stack.client(key=None).post("/v1/jobs/estimate", json=DECONVNET).status_code == 401


def test_estimate_answers_the_contract_and_creates_nothing(stack):
    client = stack.client()
    before = client.get("/v1/jobs", params={"page_size": 200}).json()["items"]
    for body in (DECONVNET, ACTMAX, TABULAR, {"kind": "model_inspection", "model": "shapes-cnn"}):
        response = client.post("/v1/jobs/estimate", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert set(answer) == {"kind", "seconds", "basis"} and answer["kind"] == body["kind"]
        assert set(answer["seconds"]) == {"cpu", "gpu"}
        assert isinstance(answer["seconds"]["cpu"], float) and answer["seconds"]["cpu"] > 0
        assert answer["seconds"]["gpu"] is None if cost.GPU is None else answer["seconds"]["gpu"] > 0
        assert answer["basis"]
    assert client.get("/v1/jobs", params={"page_size": 200}).json()["items"] == before
    # A kind without a cost model (the tests' plugin kind) runs, but is not estimated.
    plain = client.post("/v1/jobs/estimate", json={"kind": "test-lifecycle", "model": TEST_MODEL})
    assert plain.status_code == 404 and plain.json()["type"].endswith("no-estimate")


def cpu_seconds(client, body: dict) -> float:
    response = client.post("/v1/jobs/estimate", json=body)
    assert response.status_code == 200, response.text
    return response.json()["seconds"]["cpu"]


def test_estimates_grow_with_the_work_as_the_cost_model_says(stack):
    client = stack.client()
    # Activation maximization is affine in steps (a fixed part plus the same cost per step)...
    s64, s128, s256 = (cpu_seconds(client, with_params(ACTMAX, steps=n)) for n in (64, 128, 256))
    assert s64 < s128 < s256
    assert (s256 - s128) == pytest.approx(2 * (s128 - s64), rel=0.01)
    # ... and grows with the batch, and with the layer the forward pass stops at.
    ten = with_params(ACTMAX, objective={"type": "class", "units": list(range(10))})
    assert cpu_seconds(client, ten) > cpu_seconds(client, ACTMAX)
    early = with_params(ACTMAX, objective={"type": "channel", "layer": "features.1", "units": [0]})
    assert cpu_seconds(client, early) < cpu_seconds(client, ACTMAX)
    # Deconvnet grows with the projections; tabular attribution with the rows and the method's evaluations.
    assert cpu_seconds(client, with_params(DECONVNET, top_k=2)) < cpu_seconds(client, DECONVNET)
    assert cpu_seconds(client, with_params(DECONVNET, top_channels=16)) > cpu_seconds(client, DECONVNET)
    few, many = ({"kind": "tabular_attribution", "model": "retail-mlp", "params": {"dataset": "retail-sample", "sample": n, "method": "kernel_shap"}} for n in (20, 200))
    assert cpu_seconds(client, few) < cpu_seconds(client, many)
    assert cpu_seconds(client, with_params(many, method="saliency")) < cpu_seconds(client, many)
    # A torchvision model no job has loaded has no recorded layers: the basis says what is assumed.
    resnet = client.post("/v1/jobs/estimate", json={**ACTMAX, "model": "torchvision/resnet50?weights=random&seed=0"}).json()
    assert "not recorded" in resnet["basis"] and resnet["seconds"]["cpu"] > cpu_seconds(client, ACTMAX)


def worker_seconds(stack, client, body: dict) -> float:
    job = client.post("/v1/jobs", json=body).json()
    done = stack.wait_status(client, job["id"], {"succeeded", "failed"}, timeout=300)
    assert done["status"] == "succeeded", done["error"]
    return (datetime.fromisoformat(done["finished_at"]) - datetime.fromisoformat(done["started_at"])).total_seconds()


def test_estimates_compare_as_the_jobs_own_durations_do(stack):
    """The estimates of two small real jobs, against the jobs' own durations (worker started_at
    to finished_at). Not in absolute seconds: the rates are those of an idle 2-core CPU, and on
    a shared test box the same job runs several times slower when other processes compete (8x
    was seen), which says nothing about the cost model. Their ratio is what the model claims
    and what competing load leaves nearly alone: an optimization of 48 steps against a
    deconvnet of 6 projections must compare as the estimates say, within a factor of 5 (a
    missing term or a wrong unit is off by 10x and more). Each job runs twice, alternately, and
    the faster run counts: an estimate assumes a warm worker (the first job of a kind pays
    one-time imports)."""
    client = stack.client()
    jobs = [with_params(ACTMAX, steps=48), with_params(DECONVNET, top_channels=2, top_k=3)]
    estimates = [cpu_seconds(client, body) for body in jobs]
    runs = [[worker_seconds(stack, client, body) for body in jobs] for _ in range(2)]
    measured = [min(times) for times in zip(*runs)]
    claimed, seen = estimates[0] / estimates[1], measured[0] / measured[1]
    assert claimed / 5 <= seen <= claimed * 5, f"estimates {estimates}, measured {measured}"


# ----------------------------------------------------------------------------------- operation ids

EXPECTED_OPERATIONS = {
    "jobs": {"create_job", "estimate_job", "list_jobs", "get_job", "cancel_job", "delete_job", "get_job_events",
             "get_artifact", "list_kinds", "get_webhook_secret"},
    "models": {"list_models", "get_model", "upload_model", "delete_model"},
    "datasets": {"list_datasets", "get_dataset", "upload_dataset", "delete_dataset"},
    "indexes": {"list_indexes", "get_index", "delete_index"},
    "health": {"livez", "readyz", "metrics"},
}


def test_every_operation_id_is_camel_case_and_unique():
    document = json.loads((REPO / "openapi" / "openapi.json").read_text())
    ids = [operation["operationId"] for path in document["paths"].values() for operation in path.values()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", i) for i in ids), ids


@pytest.fixture(scope="module")
def generated_client(tmp_path_factory) -> Path:
    """A client generated by openapi-python-client from the committed openapi/openapi.json."""
    folder = tmp_path_factory.mktemp("client")
    generator = Path(sys.executable).parent / "openapi-python-client"
    run = subprocess.run(
        [str(generator), "generate", "--path", str(REPO / "openapi" / "openapi.json"), "--meta", "none",
         "--output-path", str(folder / "glassbox_generated")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return folder


def test_generated_client_names_its_functions_after_the_operation_ids(generated_client):
    api = generated_client / "glassbox_generated" / "api"
    modules = {tag.name: {p.stem for p in tag.glob("*.py")} - {"__init__"} for tag in api.iterdir() if tag.is_dir()}
    assert modules == EXPECTED_OPERATIONS


def test_generated_client_creates_a_job_and_reads_it(stack, generated_client, monkeypatch):
    monkeypatch.syspath_prepend(str(generated_client))
    package = importlib.import_module("glassbox_generated")
    create_job = importlib.import_module("glassbox_generated.api.jobs.create_job")
    get_job = importlib.import_module("glassbox_generated.api.jobs.get_job")
    estimate_job = importlib.import_module("glassbox_generated.api.jobs.estimate_job")
    models = importlib.import_module("glassbox_generated.models")
    client = package.AuthenticatedClient(base_url=stack.base_url, token=ALICE)

    estimate = estimate_job.sync(client=client, body=models.JobCreate.from_dict(DECONVNET))
    assert estimate.kind == "deconvnet" and estimate.seconds.cpu > 0
    body = models.JobCreate.from_dict({"kind": "test-lifecycle", "model": TEST_MODEL, "params": {"steps": 1}})
    created = create_job.sync_detailed(client=client, body=body)
    assert created.status_code == 202, created.content
    job_id = created.parsed.id
    stack.wait_status(stack.client(), job_id, {"succeeded"})
    job = get_job.sync(job_id, client=client)
    assert job.id == job_id and job.status.value == "succeeded" and job.kind == "test-lifecycle"
