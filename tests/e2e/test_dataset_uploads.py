"""Datasets through HTTP on a real API and worker (file blob store): uploads as a zip, a tar or
tar shards, a CSV, registrations of a folder under an allowed root and of a store prefix; each
read by jobs exactly as its images are (a deconvnet job over the dataset finds the same neurons
as one over the same images sent inline), labels as the layout says, deletes that leave the
store clean and registered sources untouched."""

from __future__ import annotations

import collections
import hashlib
import json

import pytest

from tests.conftest import ALICE, BOB, started_stack, wait_until
from tests.e2e.dataset_files import image_folder, inline, png, tar_of, zip_of
from tests.e2e.test_jobs_api import assert_problem

pytestmark = pytest.mark.slow

IMAGES = image_folder(12)  # shapes-val images as c<class>/<n>.png
DECONVNET = {"layer": "features.3", "top_channels": 2, "top_k": 3}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return tmp_path_factory.mktemp("dataset-root")


@pytest.fixture(scope="module")
def data_stack(redis_url, tmp_path_factory, roots):
    with started_stack(redis_url, tmp_path_factory, env={"OMP_NUM_THREADS": "1"}, dataset_roots=str(roots)) as stack:
        yield stack


def finished(stack, client, job_id: str) -> dict:
    return stack.wait_status(client, job_id, {"succeeded", "failed", "canceled"}, timeout=90)


def deconvnet_items(stack, client, **source) -> list[dict]:
    job = client.post("/v1/jobs", json={"kind": "deconvnet", "model": "shapes-cnn", "params": {**DECONVNET, **source}})
    assert job.status_code == 202, job.text
    done = finished(stack, client, job.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    return json.loads(client.get(f"/v1/jobs/{done['id']}/artifacts/result.json").content)["items"]


def assert_read_like_inline(stack, client, dataset: str, names_in_order: list[str], images: dict[str, bytes]) -> None:
    """The dataset's images, read by the worker through the index, are the images themselves."""
    by_dataset = deconvnet_items(stack, client, dataset=dataset)
    by_inline = deconvnet_items(stack, client, images=[inline({n: images[n]})[0] for n in names_in_order])
    assert by_inline and [{**i, "image_name": None} for i in by_dataset] == by_inline
    assert [i["image_name"] for i in by_dataset] == [names_in_order[i["image_index"]] for i in by_dataset]


def expected_counts(images: dict[str, bytes]) -> dict[str, int]:
    return dict(sorted(collections.Counter(name.split("/")[0] for name in images).items()))


def leftovers(stack, prefix: str) -> list[str]:
    return [b.key for b in stack.blob_store().list_blobs(prefix)]


@pytest.mark.parametrize("layout", ["zip", "tar"])
def test_an_archive_upload_is_indexed_with_its_labels_and_jobs_read_it_exactly(data_stack, layout):
    client = data_stack.client()
    data = zip_of(IMAGES) if layout == "zip" else tar_of(IMAGES)
    created = client.post("/v1/datasets", files={"file": (f"pics.{layout}", data)}, data={"name": f"pics-{layout}"})
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["format"] == layout and record["status"] == "ready" and record["count"] == len(IMAGES)
    assert record["labels"] == sorted({n.split("/")[0] for n in IMAGES})
    assert record["label_counts"] == expected_counts(IMAGES) and record["image_size"] == [64, 64]
    assert record["files"] == [{"name": f"pics.{layout}", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
    assert_read_like_inline(data_stack, client, f"pics-{layout}", sorted(IMAGES), IMAGES)
    prefix = json.loads(data_stack.redis.hget(f"{data_stack.namespace}:datasets:alice", f"pics-{layout}"))["prefix"]
    assert sorted(leftovers(data_stack, prefix)) == [f"{prefix}/data.{layout}", f"{prefix}/index.json.gz"]
    assert client.delete(f"/v1/datasets/pics-{layout}").status_code == 204
    wait_until(lambda: not leftovers(data_stack, prefix), timeout=20, what="the dataset's files to go")


def test_tar_shards_in_one_upload_are_one_dataset_labelled_by_cls_files(data_stack):
    client = data_stack.client()
    samples = {f"{n:03d}": (data, int(name[1])) for n, (name, data) in enumerate(sorted(IMAGES.items()))}
    shards = [{}, {}]
    for key, (data, label) in samples.items():
        shards[int(key) % 2].update({f"{key}.png": data, f"{key}.cls": str(label).encode(), f"{key}.json": b"{}"})
    parts = [("file", (f"train-{i}.tar", tar_of(shard))) for i, shard in enumerate(shards)]
    created = client.post("/v1/datasets", files=parts, data={"name": "wds"})
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["format"] == "tar-shards" and record["count"] == 12 and record["skipped_count"] == 12
    assert [f["name"] for f in record["files"]] == ["train-0.tar", "train-1.tar"]
    labels = collections.Counter(str(label) for _, label in samples.values())
    assert record["label_counts"] == {k: labels[k] for k in sorted(labels, key=int)}
    order = [f"train-{i}.tar/{name}" for i, shard in enumerate(shards) for name in sorted(shard) if name.endswith(".png")]
    flat = {f"train-{i}.tar/{name}": data for i, shard in enumerate(shards) for name, data in shard.items()}
    assert_read_like_inline(data_stack, client, "wds", order, flat)


def test_a_csv_upload_is_read_by_a_tabular_job_like_the_same_builtin_table(data_stack):
    from worker.models.builtin import DATA

    client = data_stack.client()
    table = (DATA / "retail-sample.csv").read_bytes()
    created = client.post("/v1/datasets", files={"file": ("mine.csv", table)})
    assert created.status_code == 201 and created.json()["format"] == "csv", created.text
    outputs = []
    for dataset in ("mine", "retail-sample"):
        params = {"dataset": dataset, "indices": [0, 7]}
        job = client.post("/v1/jobs", json={"kind": "tabular_attribution", "model": "retail-mlp", "params": params})
        done = finished(data_stack, client, job.json()["id"])
        assert done["status"] == "succeeded", done["error"]
        outputs.append(client.get(f"/v1/jobs/{done['id']}/artifacts/attributions.csv").content)
    assert outputs[0] == outputs[1]


def test_a_folder_under_a_root_is_registered_in_place_indexed_by_a_worker_and_left_alone_on_delete(data_stack, roots):
    client = data_stack.client()
    folder = roots / "shapes"
    for name, data in IMAGES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "notes.txt").write_text("not an image")
    answer = client.post("/v1/datasets", json={"source": folder.as_uri(), "description": "in place"})
    assert answer.status_code == 202, answer.text
    pending = answer.json()
    assert pending["id"] == "shapes" and pending["status"] == "pending" and pending["source"] == "registered"
    assert answer.headers["Location"] == "/v1/datasets/shapes" and pending["uri"] == folder.as_uri()
    job = finished(data_stack, client, pending["indexing_job"])
    assert job["status"] == "succeeded" and job["kind"] == "dataset_indexing", job["error"]
    record = client.get("/v1/datasets/shapes").json()
    assert record["status"] == "ready" and record["format"] == "files" and record["count"] == len(IMAGES)
    assert record["label_counts"] == expected_counts(IMAGES) and record["skipped"] == ["notes.txt"]
    assert_read_like_inline(data_stack, client, "shapes", sorted(IMAGES), IMAGES)
    prefix = json.loads(data_stack.redis.hget(f"{data_stack.namespace}:datasets:alice", "shapes"))["prefix"]
    assert leftovers(data_stack, prefix) == [f"{prefix}/index.json.gz"]  # the index only: no copy
    assert client.delete("/v1/datasets/shapes").status_code == 204
    wait_until(lambda: not leftovers(data_stack, prefix), timeout=20, what="the index to go")
    assert all((folder / name).read_bytes() == data for name, data in IMAGES.items())


def test_tar_shards_in_the_store_are_registered_by_their_tenant_only(data_stack):
    client, bob = data_stack.client(ALICE), data_stack.client(BOB)
    store = data_stack.blob_store()
    base = f"sources/alice/{data_stack.namespace}/wds"
    names = sorted(IMAGES)
    shards = [tar_of({n: IMAGES[n] for n in names[:5]}), tar_of({n: IMAGES[n] for n in names[5:]})]
    for number, shard in enumerate(shards):
        store.put_bytes(f"{base}/part-{number}.tar", shard)
    refused = assert_problem(bob.post("/v1/datasets", json={"name": "stolen", "source": f"store:{base}"}), 422)
    assert "store:sources/bob/<path>" in refused["detail"] and refused["errors"][0]["loc"] == ["body", "source"]
    answer = client.post("/v1/datasets", json={"name": "stored", "source": f"store:{base}"})
    assert answer.status_code == 202, answer.text
    assert finished(data_stack, client, answer.json()["indexing_job"])["status"] == "succeeded"
    record = client.get("/v1/datasets/stored").json()
    assert record["format"] == "tar-shards" and record["count"] == 12 and record["labels"] == sorted({n[:2] for n in names})
    order = [f"part-0.tar/{n}" for n in names[:5]] + [f"part-1.tar/{n}" for n in names[5:]]
    flat = {f"part-{0 if i < 5 else 1}.tar/{n}": IMAGES[n] for i, n in enumerate(names)}
    assert_read_like_inline(data_stack, client, "stored", order, flat)
    assert client.delete("/v1/datasets/stored").status_code == 204
    assert sorted(leftovers(data_stack, base)) == [f"{base}/part-0.tar", f"{base}/part-1.tar"]


def test_a_dataset_not_ready_is_refused_at_submit_and_a_bad_source_fails_its_indexing(data_stack, roots):
    client = data_stack.client()
    broken = roots / "broken"
    broken.mkdir()
    (broken / "good.png").write_bytes(png())
    (broken / "bad.png").write_bytes(png()[:40])
    answer = client.post("/v1/datasets", json={"source": broken.as_uri()})
    assert answer.status_code == 202, answer.text
    job = finished(data_stack, client, answer.json()["indexing_job"])
    assert job["status"] == "failed" and job["error"]["type"] == "invalid-dataset"
    record = client.get("/v1/datasets/broken").json()
    assert record["status"] == "failed" and "file 'bad.png'" in record["error"]
    refused = assert_problem(client.post("/v1/jobs", json={"kind": "deconvnet", "model": "shapes-cnn",
                                                            "params": {**DECONVNET, "dataset": "broken"}}), 422)  # fmt: skip
    assert refused["type"].endswith("/dataset-not-ready") and "file 'bad.png'" in refused["detail"]
    direct = assert_problem(client.post("/v1/jobs", json={"kind": "dataset_indexing", "model": "shapes-cnn",
                                                           "params": {"dataset": "broken"}}), 422)  # fmt: skip
    assert "POST /v1/datasets" in direct["detail"]
