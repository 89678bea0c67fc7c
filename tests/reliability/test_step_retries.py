"""A step of a fanned-out job that raises is tried again through RQ's own Retry (its record's
attempts counted, settings.step_retries), on any worker, while the steps after it keep waiting;
out of tries, the whole job fails naming the step."""

from __future__ import annotations

import json


def fanout(stack, client, tmp_path, **params) -> dict:
    body = {"kind": "test-fanout", "model": "test-model", "params": {"steps": 3, "counts": str(tmp_path), **params}}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return stack.wait_status(client, response.json()["id"], {"succeeded", "failed", "canceled"}, timeout=60)


def test_a_step_that_raises_is_tried_again_and_the_merge_waits_for_it(make_stack, tmp_path):
    stack = make_stack(workers=2)
    client = stack.client()
    job = fanout(stack, client, tmp_path, flaky=1, raises=2)  # the default step_retries is 2: three tries
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["summary"]["steps_seen_by_merge"] == ["succeeded"] * 3
    assert (tmp_path / "step-1").read_text() == "3"
    steps = json.loads(stack.redis.hget(f"{stack.namespace}:job:{job['id']}", "fanout"))["shards"]
    assert [client.get(f"/v1/jobs/{s}").json()["attempts"] for s in steps] == [1, 3, 1]


def test_a_step_out_of_tries_fails_the_job_naming_it(make_stack, tmp_path):
    stack = make_stack(workers=1, step_retries=1)
    client = stack.client()
    job = fanout(stack, client, tmp_path, flaky=2, raises=5)
    assert job["status"] == "failed"
    assert "test-fanout-step" in job["error"]["title"] and "flaky step 2" in job["error"]["detail"]
    assert (tmp_path / "step-2").read_text() == "2"  # one try and one retry
