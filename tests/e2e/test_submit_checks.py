"""What can be known at submit is a 422 at submit; what the service assumes is said; HTTP details.

Through HTTP against a real API and worker: tables whose columns do not fit the model, uploads
without normalization, idempotent replays, HEAD, unknown parameter names, zip entries that are
not images, and the 404 of an artifact of a job that does not exist.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from safetensors.torch import save as save_safetensors

from tests.conftest import BOB, TEST_MODEL
from tests.e2e.test_jobs_api import assert_problem
from tests.e2e.test_models_api import exported_archive, manifest, png, upload, zipped
from worker.models.builtin import DATA
from worker.models.retail import RETAIL_FEATURES


@pytest.fixture(scope="module")
def checks_stack(redis_url, tmp_path_factory):
    from tests.conftest import started_stack

    # A private torch hub cache: no pretrained weights are found.
    with started_stack(redis_url, tmp_path_factory, env={"TORCH_HOME": str(tmp_path_factory.mktemp("torch-home"))}) as stack:
        yield stack


# ---- tables against the model's variables ------------------------------------------------


def retail_rows() -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((DATA / "retail-sample.csv").read_text())))[:40]


def csv_bytes(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def upload_table(client, name: str, rows: list[dict[str, str]]) -> dict:
    response = client.post("/v1/datasets", files={"file": (f"{name}.csv", csv_bytes(rows))}, data={"name": name})
    assert response.status_code == 201, response.text
    return response.json()


def submit(client, params: dict, model: str = "retail-mlp"):
    return client.post("/v1/jobs", json={"kind": "tabular_attribution", "model": model, "params": params})


def test_a_table_that_does_not_fit_the_model_is_a_422_at_submit_naming_the_column(checks_stack):
    client = checks_stack.client()
    variables = [f["name"] for f in RETAIL_FEATURES]
    assert "region" in variables and "price" in variables and "item_category" in variables

    without_region = [{k: v for k, v in row.items() if k != "region"} for row in retail_rows()]
    upload_table(client, "no-region", without_region)
    for params, loc in [
        ({"dataset": "no-region"}, ["body", "params", "dataset"]),
        ({"dataset": "no-region", "indices": [0, 1]}, ["body", "params", "dataset"]),
        ({"dataset": "retail-sample", "sample": 5, "baseline": {"background": "no-region", "size": 10}},
         ["body", "params", "baseline", "background"]),
    ]:  # fmt: skip
        problem = assert_problem(submit(client, params), 422)
        assert problem["type"].endswith("/incompatible-dataset")
        assert problem["errors"][0]["loc"] == loc
        assert "missing columns: region" in problem["detail"]

    # A numeric variable whose column holds no number at all: no row can be read.
    words = [{**row, "price": "cheap"} for row in retail_rows()]
    upload_table(client, "word-prices", words)
    problem = assert_problem(submit(client, {"dataset": "word-prices", "indices": [3]}), 422)
    assert "column 'price': holds no numbers" in problem["detail"]

    # One unreadable row: explaining every row would fail, explaining the others works.
    one_bad = retail_rows()
    one_bad[2] = {**one_bad[2], "price": "n/a"}
    one_bad[5] = {**one_bad[5], "item_category": "furniture"}
    upload_table(client, "one-bad", one_bad)
    whole = assert_problem(submit(client, {"dataset": "one-bad", "method": "saliency"}), 422)
    assert "column 'price': holds values that are not numbers: ['n/a']" in whole["detail"]
    assert "column 'item_category'" in whole["detail"] and "'furniture'" in whole["detail"]
    chosen = submit(client, {"dataset": "one-bad", "indices": [0, 1, 3], "method": "saliency"})
    assert chosen.status_code == 202, chosen.text
    done = checks_stack.wait_status(client, chosen.json()["id"], {"succeeded", "failed"}, timeout=90)
    assert done["status"] == "succeeded", done["error"]

    past_the_end = assert_problem(submit(client, {"dataset": "one-bad", "indices": [0, 40]}), 422)
    assert past_the_end["errors"][0]["loc"] == ["body", "params", "indices", 1]
    assert "40 rows (0 to 39)" in past_the_end["detail"]
    # The built-in pair still fits.
    fits = submit(client, {"dataset": "retail-sample", "sample": 3, "method": "saliency"})
    assert fits.status_code == 202, fits.text


# ---- normalization of uploaded image models ------------------------------------------------


def test_an_upload_without_mean_and_std_gets_the_weights_own_or_a_warning(checks_stack):
    import torchvision

    client = checks_stack.client()
    architecture = "squeezenet1_1"
    transforms = torchvision.models.get_model_weights(architecture).DEFAULT.transforms()
    torch.manual_seed(0)
    weights = save_safetensors(torchvision.models.get_model(architecture, weights=None).state_dict())
    body = json.dumps({
        "name": "my-squeeze", "kind": "image", "format": "safetensors",
        "architecture": f"torchvision/{architecture}", "input": {"image": {"size": [64, 64]}},
    })  # fmt: skip
    response = upload(client, "my-squeeze", weights, body, "w.safetensors")
    assert response.status_code == 202, response.text
    image = response.json()["input"]["image"]
    assert image["mean"] == pytest.approx(list(transforms.mean)) and image["std"] == pytest.approx(list(transforms.std))
    [said] = response.json()["warnings"]
    assert f"torchvision/{architecture}" in said and "mean and std not given" in said
    done = checks_stack.wait_status(client, response.json()["inspection_job"], {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", done["error"]
    record = client.get("/v1/models/my-squeeze").json()
    assert record["status"] == "ready" and record["warnings"] == [said]
    assert record["input"]["image"]["mean"] == image["mean"]

    bare = upload(client, "bare-net", exported_archive(), manifest("bare-net", input={"image": {"size": [16, 16]}}))
    assert bare.status_code == 202, bare.text
    assert "mean" not in bare.json()["input"]["image"]
    [warning] = bare.json()["warnings"]
    assert "no mean and no std" in warning and "without that normalization" in warning
    assert client.get("/v1/models/bare-net").json()["warnings"] == [warning]

    given = upload(client, "given-net", exported_archive(), manifest("given-net"))
    assert given.status_code == 202 and given.json()["warnings"] == []


# ---- HTTP details ------------------------------------------------------------------------------


def test_retry_after_is_sent_only_while_the_job_is_unfinished(checks_stack):
    client = checks_stack.client()
    body = {"kind": "test-lifecycle", "model": TEST_MODEL, "params": {"steps": 1}}
    first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "finished-replay"})
    assert first.status_code == 202 and first.headers["Retry-After"] == "1"
    checks_stack.wait_status(client, first.json()["id"], {"succeeded"})
    replay = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "finished-replay"})
    assert replay.status_code == 202 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["status"] == "succeeded" and "Retry-After" not in replay.headers

    slow = {**body, "params": {"steps": 200, "step_seconds": 0.05}}
    running = client.post("/v1/jobs", json=slow, headers={"Idempotency-Key": "running-replay"})
    replay = client.post("/v1/jobs", json=slow, headers={"Idempotency-Key": "running-replay"})
    assert replay.json()["status"] in ("queued", "running") and replay.headers["Retry-After"] == "1"
    client.post(f"/v1/jobs/{running.json()['id']}/cancel")


def test_head_answers_with_the_headers_of_get_and_no_body(checks_stack):
    client = checks_stack.client()
    job = checks_stack.create(client, {"steps": 1, "artifact_bytes": 3000})
    done = checks_stack.wait_status(client, job["id"], {"succeeded"})
    url = next(a for a in done["result"]["artifacts"] if a["name"] == "payload.bin")["url"]
    got, head = client.get(url), client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(got.content)) == "3000"
    for name in ("ETag", "Content-Type", "Cache-Control", "Content-Disposition"):
        assert head.headers[name] == got.headers[name], name
    assert client.head(url, headers={"If-None-Match": got.headers["ETag"]}).status_code == 304
    for path in (f"/v1/jobs/{job['id']}", "/v1/models/shapes-cnn", "/v1/datasets", "/v1/kinds"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"" and head.headers["Content-Length"] == str(len(got.content)), path
    missing = client.head(f"/v1/jobs/{job['id']}/artifacts/none.bin")
    assert missing.status_code == 404 and missing.content == b""
    assert client.head(url, headers={"Authorization": f"Bearer {BOB}"}).status_code == 404


def test_an_artifact_of_a_job_that_does_not_exist_is_job_not_found(checks_stack):
    client = checks_stack.client()
    nothing = assert_problem(client.get("/v1/jobs/01nosuchjob0000000000000000/artifacts/result.json"), 404)
    assert nothing["type"].endswith("/job-not-found") and "has no artifact" not in nothing["detail"]
    job = checks_stack.create(client, {"steps": 1})
    checks_stack.wait_status(client, job["id"], {"succeeded"})
    absent = assert_problem(client.get(f"/v1/jobs/{job['id']}/artifacts/none.bin"), 404)
    assert absent["type"].endswith("/artifact-not-found") and "'none.bin'" in absent["detail"]
    # Another tenant's job is no job at all to bob, artifact or not.
    bobs = assert_problem(checks_stack.client(BOB).get(f"/v1/jobs/{job['id']}/artifacts/result.json"), 404)
    assert bobs["type"].endswith("/job-not-found")
    slow = checks_stack.create(client, {"steps": 200, "step_seconds": 0.05})
    unfinished = assert_problem(client.get(f"/v1/jobs/{slow['id']}/artifacts/result.json"), 404)
    assert unfinished["type"].endswith("/artifact-not-found") and "only a succeeded job" in unfinished["detail"]
    client.post(f"/v1/jobs/{slow['id']}/cancel")


def test_an_unknown_parameter_name_is_answered_with_the_allowed_names(checks_stack):
    client = checks_stack.client()
    typo = assert_problem(
        client.post("/v1/jobs", json={"kind": "deconvnet", "model": "shapes-cnn", "params": {"layr": "features.6"}}), 422
    )
    error = next(e for e in typo["errors"] if e["loc"] == ["body", "params", "layr"])
    allowed = error["msg"].split("allowed: ")[1].split(", ")
    schema = next(k for k in client.get("/v1/kinds").json() if k["name"] == "deconvnet")["params_schema"]
    assert allowed == list(schema["properties"])  # every name, in the documented order
    nested = assert_problem(
        submit(client, {"dataset": "retail-sample", "target": {"type": "neuron", "layer": "act1", "unit": 0, "uint": 1}}), 422
    )
    error = next(e for e in nested["errors"] if e["loc"][-1] == "uint")
    assert error["msg"].endswith("'uint'; allowed: type, layer, unit")
    in_body = assert_problem(client.post("/v1/jobs", json={"kind": "test-lifecycle", "model": TEST_MODEL, "param": {}}), 422)
    error = next(e for e in in_body["errors"] if e["loc"] == ["body", "param"])
    assert error["msg"].endswith("'param'; allowed: kind, model, params, metadata, timeout_seconds, webhook")
    in_manifest = assert_problem(upload(client, "typo-net", b"x", manifest("typo-net", architecure="x")), 422)
    error = next(e for e in in_manifest["errors"] if e["loc"] == ["body", "manifest", "architecure"])
    assert "architecture" in error["msg"].split("allowed: ")[1].split(", ")


# ---- zip entries that are not images ---------------------------------------------------------


def test_zip_entries_that_are_not_images_are_skipped_and_listed(checks_stack):
    client = checks_stack.client()
    entries = {
        "b.png": png(colour=(0, 0, 255)),
        "README.txt": b"these are my pictures",
        "a.png": png(),
        "__MACOSX/._a.png": b"\x00\x05\x16\x07resource fork",
        ".DS_Store": b"Bud1\x00\x00",
        "labels.csv": b"name,label\na.png,red\n",
        "scan": png(colour=(0, 255, 0)),  # a PNG by its bytes, whatever its name
    }
    response = client.post("/v1/datasets", files={"file": ("mixed.zip", zipped(entries))}, data={"name": "mixed"})
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["count"] == 3
    assert record["skipped"] == ["README.txt", "__MACOSX/._a.png", ".DS_Store", "labels.csv"]
    assert record["skipped_count"] == 4 and client.get("/v1/datasets/mixed").json()["skipped"] == record["skipped"]
    job = client.post("/v1/jobs", json={"kind": "deconvnet", "model": "shapes-cnn", "params": {
        "layer": "features.0", "dataset": "mixed", "channels": [0], "top_k": 3}})  # fmt: skip
    assert job.status_code == 202, job.text
    done = checks_stack.wait_status(client, job.json()["id"], {"succeeded", "failed"}, timeout=90)
    assert done["status"] == "succeeded", done["error"]
    result = json.loads(client.get(f"/v1/jobs/{job.json()['id']}/artifacts/result.json").content)
    assert {item["image_name"] for item in result["items"]} <= {"a.png", "b.png", "scan"}

    many = {f"notes/{i:02d}.txt": b"x" for i in range(25)} | {"only.png": png()}
    listed = client.post("/v1/datasets", files={"file": ("many.zip", zipped(many))}, data={"name": "many"}).json()
    assert listed["skipped"] == [f"notes/{i:02d}.txt" for i in range(20)] and listed["skipped_count"] == 25


def test_an_image_named_entry_that_is_not_an_image_is_refused_plainly(checks_stack):
    client = checks_stack.client()
    archive = zipped({"good.png": png(), "photo.jpg": b"this is not a jpeg at all"})
    problem = assert_problem(client.post("/v1/datasets", files={"file": ("bad.zip", archive)}), 422)
    assert "'photo.jpg' is not a PNG or JPEG image" in problem["detail"]
    assert "<_io" not in problem["detail"] and " at 0x" not in problem["detail"]
    nothing = assert_problem(client.post("/v1/datasets", files={"file": ("text.zip", zipped({"README.md": b"# hi"}))}), 422)
    assert "holds no PNG or JPEG images" in nothing["detail"] and "'README.md'" in nothing["detail"]
