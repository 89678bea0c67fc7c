"""Small jobs pay only for what they ask (issue 18), through HTTP on a real API, worker and
Redis: a job explaining one row of retail-sample computes that row's attributions, the same as a
job over many rows gives it, and skips the dataset views and the charts unless asked, saying so;
the worker's copy of the encoded dataset gives the same results as reading it afresh; and every
job's summary carries where its time went."""

from __future__ import annotations

import json
import time

import pytest

TABULAR = {"kind": "tabular_attribution", "model": "retail-mlp"}
ROW = 7  # a row of retail-sample, explained alone and among many
MANY = [ROW, *range(100, 159)]  # 60 rows: enough for the dataset views and charts by default
BACKGROUND = {"background": "retail-sample", "size": 20}
STAGES = ("queue_wait_seconds", "load_seconds", "compute_seconds", "artifacts_seconds")


def run(stack, client, body: dict) -> tuple[dict, float]:
    """(the succeeded job, seconds from POST until the client saw it succeeded)."""
    started = time.perf_counter()
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job = stack.wait_status(client, response.json()["id"], {"succeeded", "failed", "canceled"}, timeout=60)
    wall = time.perf_counter() - started
    assert job["status"] == "succeeded", job["error"]
    return job, wall


def tabular(stack, client, params: dict) -> tuple[dict, dict]:
    """(the succeeded job, its result.json)."""
    job, _ = run(stack, client, {**TABULAR, "params": {"dataset": "retail-sample", **params}})
    response = client.get(f"/v1/jobs/{job['id']}/artifacts/result.json")
    assert response.status_code == 200, response.text
    return job, json.loads(response.content)


def artifacts(job: dict) -> dict[str, str]:
    return {a["name"]: a["sha256"] for a in job["result"]["artifacts"]}


def test_the_encoded_dataset_kept_by_the_worker_gives_what_reading_it_afresh_gives(stack):
    """The module's first tabular jobs: the worker reads, checks and encodes retail-sample for
    the first one; the second, identical, finds it all kept and must give the same bytes."""
    client = stack.client()
    params = {"indices": [ROW, 2999], "dataset_views": True, "charts": True}
    first, first_result = tabular(stack, client, params)
    second, second_result = tabular(stack, client, params)
    for name in ("attributions.csv", "waterfall_7.png", "importance.png"):
        assert artifacts(first)[name] == artifacts(second)[name], name
    for key in ("rows", "baseline", "top_rows", "maximizing_input", "global_importance"):
        assert first_result[key] == second_result[key], key
    # a background baseline from the kept table: the same rows, encoded the same way
    background = {"indices": [ROW], "baseline": BACKGROUND, "method": "shapley"}
    assert tabular(stack, client, background)[1]["rows"] == tabular(stack, client, background)[1]["rows"]


@pytest.mark.parametrize(
    "method", [{"method": "integrated_gradients"}, {"method": "shapley", "baseline": BACKGROUND}], ids=["ig", "shapley"]
)
def test_a_one_row_job_gives_the_row_attributions_of_a_big_job_and_skips_the_rest(stack, method):
    client = stack.client()
    big_job, big = tabular(stack, client, {"indices": MANY, **method})
    small_job, small = tabular(stack, client, {"indices": [ROW], **method})

    # the row's attributions, outputs and baseline are those of the same row among 60
    (row,) = small["rows"]
    expected = next(r for r in big["rows"] if r["index"] == ROW)
    assert row["values"] == expected["values"]
    assert row["attributions"] == pytest.approx(expected["attributions"], rel=1e-6, abs=1e-9)
    for key in ("output", "baseline_output"):
        assert row[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-9)
    assert row["residual"] == pytest.approx(expected["residual"], abs=1e-5)  # float32 outputs, batched or not
    assert small["baseline"] == big["baseline"]

    # the big job made the dataset views and charts by default; the small one skipped them and says so
    assert big["skipped"] == {} and len(big["top_rows"]["rows"]) == 9 and "maximizing_input" in big
    assert {"importance.png", "summary.png"} <= set(artifacts(big_job))
    assert set(artifacts(small_job)) == {"attributions.csv", "result.json"}
    assert "top_rows" not in small and "maximizing_input" not in small
    assert set(small["skipped"]) == {"top_rows", "maximizing_input", "charts"}
    assert all("explains 1 row and" in why for why in small["skipped"].values())
    assert '"dataset_views": true' in small["skipped"]["top_rows"] and '"charts": true' in small["skipped"]["charts"]
    assert small["params"]["dataset_views"] is False and small["params"]["charts"] is False
    assert big["params"]["dataset_views"] is True and big["params"]["charts"] is True

    # asked for, the one-row job has them, and its views are the big job's (the same reference rows)
    asked_job, asked = tabular(stack, client, {"indices": [ROW], **method, "dataset_views": True, "charts": True})
    assert asked["skipped"] == {} and asked["rows"] == small["rows"]
    assert asked["top_rows"] == big["top_rows"] and asked["maximizing_input"] == big["maximizing_input"]
    assert {"importance.png", f"waterfall_{ROW}.png"} <= set(artifacts(asked_job))


def test_a_big_job_skips_what_it_is_told_to(stack):
    client = stack.client()
    job, result = tabular(stack, client, {"indices": MANY, "dataset_views": False, "charts": False})
    assert set(artifacts(job)) == {"attributions.csv", "result.json"} and len(result["rows"]) == len(MANY)
    assert set(result["skipped"]) == {"top_rows", "maximizing_input", "charts"}
    assert all("is false" in why for why in result["skipped"].values())


def assert_timings(job: dict, wall: float) -> dict:
    timings = job["result"]["summary"]["timings"]
    assert set(timings) == {*STAGES, "worker_seconds"}
    assert all(value >= 0 for value in timings.values()), timings
    parts = sum(timings[name] for name in STAGES)
    assert parts <= wall, (timings, wall)
    stages = sum(timings[name] for name in STAGES[1:])
    assert stages <= timings["worker_seconds"] + 1e-5, timings
    return timings


def test_every_job_says_where_its_time_went(stack):
    client = stack.client()
    job, wall = run(stack, client, {**TABULAR, "params": {"dataset": "retail-sample", "indices": [ROW]}})
    timings = assert_timings(job, wall)
    assert timings["load_seconds"] > 0 and timings["compute_seconds"] > 0 and timings["artifacts_seconds"] > 0

    # another kind, timed by the worker alone: the lifecycle test kind sleeps 2 x 0.1 s in its
    # job function (compute) and loads nothing
    job, wall = run(stack, client, {"kind": "test-lifecycle", "model": "test-model", "params": {"steps": 2, "step_seconds": 0.1}})
    timings = assert_timings(job, wall)
    assert timings["compute_seconds"] >= 0.2 and timings["load_seconds"] == 0 and timings["artifacts_seconds"] > 0
    assert job["result"]["summary"]["steps"] == 2  # the kind's own summary is kept


def test_an_artifact_cut_short_on_disk_is_refused_not_served_truncated(stack):
    """Artifacts are fsynced in the background (GLASSBOX_ARTIFACT_FLUSH_SECONDS): a crash of the
    machine may leave one shorter than its record says; the download says so instead of sending
    fewer bytes than its Content-Length."""
    client = stack.client()
    job, _ = run(stack, client, {**TABULAR, "params": {"dataset": "retail-sample", "indices": [ROW]}})
    store = stack.blob_store()
    keys = {meta.key.rpartition("/")[2]: meta.key for meta in store.list_blobs(f"artifacts/{job['id']}/")}
    path = store.local_path(keys["attributions.csv"])
    path.write_bytes(path.read_bytes()[:10])
    response = client.get(f"/v1/jobs/{job['id']}/artifacts/attributions.csv")
    assert response.status_code == 404 and response.json()["type"].endswith("/file-gone"), response.text
    assert "run the job again" in response.json()["detail"]
    path.write_bytes(b"")
    assert client.get(f"/v1/jobs/{job['id']}/artifacts/attributions.csv").status_code == 404
    assert client.get(f"/v1/jobs/{job['id']}/artifacts/result.json").status_code == 200
