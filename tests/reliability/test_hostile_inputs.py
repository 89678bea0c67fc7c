"""Hostile inputs, one table: each is refused with a clear problem document and leaves no trace.

For every row of the table (zip bombs and decompression-bomb images, zip entries that climb out of
their folder, pickles dressed as .pt2, truncated and random model files, bodies that are too big,
streamed, 50,000 levels deep or not JSON, enormous step counts and image sizes, NaN / Infinity /
1e999 in params and CSV cells, ragged CSVs, unicode and control characters in kinds, model ids,
dataset names, headers and path ids, and another tenant's job, model and dataset ids) this proves:

- the answer is the expected 4xx, `application/problem+json` with type, title, status and detail,
  of the expected problem type, and its detail or `errors` names the offending field or entry;
- nothing is left behind: the stack's Redis namespace (job records and indexes, blobs, model and
  dataset catalogs, idempotency keys, job stats) and RQ's queue and registries for it are exactly
  as before, and both tenants' job, model and dataset lists are unchanged;
- the API's memory stays bounded: after a warm-up round, five more rounds of the whole table (its
  largest bodies included) grow the API process's RSS by far less than the bytes they send.

The table and the RSS figures are written to test-artifacts/hostile_inputs.md. One row gets no
problem document: a control character in a header value is refused by uvicorn's HTTP parser
before the app sees the request (a plain-text 400); it still must leave no trace.

Writing this table found four defects, fixed since and now rows of it: a deeply nested model
manifest (500), NaN/Infinity in a manifest (stored), a lone surrogate in job metadata (stored,
then every read of the tenant's jobs a 500), inline deconvnet images not checked for their pixel
count (a decompression bomb reached the worker).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import pickle
import random
import struct
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.problems import PROBLEM_TYPE_BASE
from tests.conftest import ALICE, BOB, REPO, TEST_MODEL, Stack, wait_until
from tests.test_models_api import zipped

PROBLEM = "application/problem+json"
MAX_REQUEST_BYTES = 262_144  # big enough that a 50,000-deep JSON body (100 kB) is parsed, not cut off
MAX_UPLOAD_BYTES = 4_000_000
ARTIFACT = REPO / "test-artifacts" / "hostile_inputs.md"
MEMORY_ROUNDS = 5
RSS_GROWTH_BOUND = 50 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The layout of a torch.export.save archive (the names the API looks at, and a few more).
PT2_LAYOUT = {
    "archive/archive_format": b"pt2",
    "archive/archive_version": b"0",
    "archive/byteorder": b"little",
    "archive/models/model.json": b"{}",
    "archive/data/weights/model_weights_config.json": b'{"config": {}}',
    "archive/data/constants/model_constants_config.json": b'{"config": {}}',
    "archive/data/weights/weight_0": bytes(4096),
}


# ---- the stack and what is already in it --------------------------------------------------


@pytest.fixture(scope="module")
def hostile_stack(redis_url, tmp_path_factory) -> Iterator[Stack]:
    stack = Stack(
        redis_url,
        tmp_path_factory.mktemp("logs"),
        max_request_bytes=MAX_REQUEST_BYTES,
        max_upload_bytes=MAX_UPLOAD_BYTES,
    )
    stack.start_api()
    # One worker: a row that queued a job would see it run, and leave a record either way.
    stack.start_worker()
    yield stack
    stack.stop()


@dataclass
class World:
    """What both tenants own before the first hostile request."""

    clients: dict[str, httpx.Client]
    bob_job: str
    bob_model: str = "bob-net"
    bob_dataset: str = "bob-table"
    alice_dataset: str = "alice-table"


@pytest.fixture(scope="module")
def world(hostile_stack) -> Iterator[World]:
    from safetensors.torch import save as save_safetensors

    from worker.models.shapes import ShapesCNN

    stack = hostile_stack
    alice, bob = stack.client(ALICE), stack.client(BOB)
    table = b"city,temp\nParis,12.5\nOslo,-3\n"
    for client, name in ((alice, "alice-table"), (bob, "bob-table")):
        created = client.post("/v1/datasets", files={"file": (f"{name}.csv", table)})
        assert created.status_code == 201, created.text
    manifest = {
        "name": "bob-net", "kind": "image", "format": "safetensors", "architecture": "shapes-cnn",
        "input": {"image": {"size": [64, 64], "channels": 3}},
    }  # fmt: skip
    weights = save_safetensors(ShapesCNN().state_dict())
    uploaded = bob.post(
        "/v1/models", files={"file": ("w.safetensors", weights)}, data={"manifest": json.dumps(manifest)}
    )
    assert uploaded.status_code == 202, uploaded.text
    jobs = [(bob, uploaded.json()["inspection_job"])]
    jobs += [(c, stack.create(c, {"steps": 1, "step_seconds": 0})["id"]) for c in (alice, bob)]
    for client, job_id in jobs:
        assert stack.wait_status(client, job_id, {"succeeded", "failed"}, timeout=90)["status"] == "succeeded"
    clients = {"alice": alice, "bob": bob}
    # Settled: RQ has dropped the finished jobs and nothing changes between two looks.
    wait_until(
        lambda: snapshot(stack, clients) == snapshot(stack, clients, pause=0.5), timeout=30, what="a settled stack"
    )
    yield World(clients=clients, bob_job=jobs[-1][1])
    alice.close()
    bob.close()


# ---- the trace a request could leave ---------------------------------------------------------


def _dump(connection, key: bytes) -> Any:
    kind = connection.type(key).decode()
    if kind == "string":
        return kind, sha256(connection.get(key) or b"").hexdigest()
    if kind == "hash":
        return kind, sorted(connection.hgetall(key).items())
    if kind == "list":
        return kind, connection.lrange(key, 0, -1)
    if kind == "set":
        return kind, sorted(connection.smembers(key))
    if kind == "zset":
        return kind, connection.zrange(key, 0, -1, withscores=True)
    return kind, None  # "none": expired between SCAN and TYPE


def redis_state(stack: Stack) -> dict[str, Any]:
    """Every key of the stack's namespace and of RQ's bookkeeping for its queue, by content.

    Left out, because they change by themselves while nothing is requested:
      - `{ns}:workers`: the workers' heartbeat times (a sorted set rewritten every 0.5 s);
      - `rq:workers:{queue}`, `rq:worker:*`, `rq:workers`, `rq:clean_registries:{queue}`,
        `rq:clean_groups`: RQ's worker registrations, heartbeats and housekeeping markers.
    There is nothing else to leave out: request metrics are Prometheus counters inside the API
    process (not in Redis), and the service keeps no rate-limit windows.
    Kept, among the rest: `{ns}:job:*`, `{ns}:tenant:*` (job index, waiting list, active set),
    `{ns}:tenants*`, `{ns}:idem:*`, `{ns}:artifact:*`, `{ns}:blob:*`, `{ns}:models:*`,
    `{ns}:datasets:*`, `{ns}:stats:*`, `{ns}:webhooks:*`; and for RQ `rq:queue:{queue}`, its
    registries (`rq:wip:`, `rq:finished:`, `rq:failed:`, `rq:deferred:`, `rq:scheduled:`,
    `rq:canceled:` + queue) and every `rq:job:*` whose origin is the queue.
    """
    ns, queue, connection = stack.namespace, stack.settings.queue_name, stack.redis
    state: dict[str, Any] = {}
    for key in connection.scan_iter(match=f"{ns}:*", count=1000):
        if key.decode() != f"{ns}:workers":
            state[key.decode()] = _dump(connection, key)
    for key in connection.scan_iter(match="rq:*", count=1000):
        name = key.decode()
        if name.startswith("rq:job:"):
            if connection.hget(key, "origin") != queue.encode():
                continue
        elif not name.endswith(f":{queue}") or name.startswith(("rq:workers:", "rq:clean_registries:")):
            continue
        state[name] = _dump(connection, key)
    state["rq:queues holds the queue"] = connection.sismember("rq:queues", f"rq:queue:{queue}")
    return state


def api_lists(clients: dict[str, httpx.Client]) -> dict[str, Any]:
    lists = {}
    for tenant, client in clients.items():
        for path in ("/v1/jobs?page_size=200", "/v1/models", "/v1/datasets"):
            response = client.get(path)
            assert response.status_code == 200, (tenant, path, response.text[:300])
            lists[f"{tenant} {path}"] = response.json()
    return lists


def snapshot(stack: Stack, clients: dict[str, httpx.Client], pause: float = 0) -> dict[str, Any]:
    time.sleep(pause)
    return {"redis": redis_state(stack), "lists": api_lists(clients)}


def describe_difference(before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = []
    for part in ("redis", "lists"):
        old, new = before[part], after[part]
        lines += [f"{part}: added {k}" for k in sorted(set(new) - set(old))]
        lines += [f"{part}: removed {k}" for k in sorted(set(old) - set(new))]
        lines += [f"{part}: changed {k}" for k in sorted(set(old) & set(new)) if old[k] != new[k]]
    return "; ".join(lines) or "no difference"


# ---- hostile payloads ----------------------------------------------------------------------------


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels: some 70 bytes, no real pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


def zip_bomb(entry_bytes: int) -> bytes:
    """One entry of `entry_bytes` zeros, written in blocks (never whole in memory)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("zeros.png", "w", force_zip64=True) as entry:
            block = bytes(1 << 20)
            for _ in range(entry_bytes >> 20):
                entry.write(block)
    return buffer.getvalue()


class Harmless:
    """Pickles to a call of print: what a hostile checkpoint would do with os.system."""

    def __reduce__(self):
        return (print, ("a pickle was loaded",))


@dataclass(frozen=True)
class Payloads:
    bomb: bytes
    many_entry_bomb: bytes
    raw_pickle: bytes
    text_pickle: bytes
    torch_checkpoint: bytes
    safetensors: bytes
    random_bytes: bytes
    huge_json: bytes
    oversized_upload: bytes
    streamed_upload: bytes
    streamed_upload_type: str


@pytest.fixture(scope="module")
def payloads() -> Payloads:
    import torch
    from safetensors.torch import save as save_safetensors

    checkpoint = io.BytesIO()
    torch.save({"weight": torch.zeros(4, 4)}, checkpoint)
    random_bytes = bytearray(random.Random(20240601).randbytes(MAX_UPLOAD_BYTES - 100_000))
    random_bytes[0] = 0x42  # neither a pickle's PROTO opcode nor a zip's "PK"
    streamed = httpx.Request("POST", "http://glassbox/v1/datasets", files={"file": ("big.csv", b"a,b\n" * 1_125_000)})
    return Payloads(
        bomb=zip_bomb(200 << 20),
        many_entry_bomb=zipped({f"z{i:02d}.png": bytes(900_000) for i in range(60)}),
        raw_pickle=pickle.dumps(Harmless(), protocol=4),
        text_pickle=pickle.dumps(Harmless(), protocol=0),
        torch_checkpoint=checkpoint.getvalue(),
        safetensors=save_safetensors({"weight": torch.zeros(256)}),
        random_bytes=bytes(random_bytes),
        huge_json=b'{"kind": "test-lifecycle", "model": "test-model", "metadata": {"x": "' + b"a" * (4 << 20) + b'"}}',
        oversized_upload=b"a,b\n" * 1_125_000,
        streamed_upload=streamed.read(),
        streamed_upload_type=streamed.headers["content-type"],
    )


# ---- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    input: str
    method: str
    path: str
    status: int
    slug: str  # the problem type, after PROBLEM_TYPE_BASE
    body: str = ""  # what the request carries, for the report
    names: tuple[str, ...] = ()  # each must appear in the detail or in `errors`
    loc: tuple[str | int, ...] = ()  # some error's `loc` starts with it
    request: dict[str, Any] = field(default_factory=dict)  # httpx arguments
    stream: Callable[[], Iterator[bytes]] | None = None  # a body sent without Content-Length
    raw_headers: dict[str, bytes] | None = None  # sent with http.client, which lets any byte but CR/LF through
    tenant: str = "alice"

    @property
    def problem(self) -> bool:
        return self.raw_headers is None


def chunks(data: bytes, size: int = 65_536) -> Callable[[], Iterator[bytes]]:
    return lambda: (data[i : i + size] for i in range(0, len(data), size))


def dataset(filename: str, data: bytes, **form: str) -> dict[str, Any]:
    return {"files": {"file": (filename, data)}, "data": form or None}


def manifest(**changes: Any) -> str:
    body = {
        "name": "hostile-model",
        "kind": "image",
        "format": "exported_program",
        "input": {"image": {"size": [16, 16]}},
    }
    return json.dumps({**body, **changes})


SAFETENSORS_MANIFEST = manifest(format="safetensors", architecture="shapes-cnn")


def model(filename: str, data: bytes, manifest_text: str | None = None) -> dict[str, Any]:
    return {"files": {"file": (filename, data)}, "data": {"manifest": manifest_text or manifest()}}


def job(kind: str, model_id: str = "shapes-cnn", **params: Any) -> dict[str, Any]:
    return {"json": {"kind": kind, "model": model_id, "params": params}}


def raw_job(text: str) -> dict[str, Any]:
    """A job body with literals the json module will not write (NaN, Infinity, 1e999)."""
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


CHANNEL = {"type": "channel", "layer": "features.0", "units": [0]}
DECONV = {"layer": "features.0", "dataset": "shapes-val"}
ACTMAX_NAN = '{"kind": "activation_maximization", "model": "shapes-cnn", "params": {"objective": %s, %s}}'


def hostile_rows(world: World, p: Payloads) -> list[Row]:
    bob_job = world.bob_job
    pt2_cut = zipped(PT2_LAYOUT)
    deep = (
        b'{"kind": "test-lifecycle", "model": "test-model", "metadata": {"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}"
    )
    return [
        # -- datasets: bombs and paths
        Row("zip bomb: one entry of 200 MiB of zeros", "POST", "/v1/datasets", 422, "invalid-upload",
            f"multipart file=bomb.zip ({len(p.bomb):,} B compressed)", ("'zeros.png'", "zip bomb"),
            ("body", "file"), dataset("bomb.zip", p.bomb)),
        Row("zip bomb: 60 entries of 900 kB, each under the per-entry guard", "POST", "/v1/datasets", 422,
            "invalid-upload", "multipart file=many.zip", ("expands too much",), ("body", "file"),
            dataset("many.zip", p.many_entry_bomb)),
        Row("PNG declaring 6000x6000 px (36 Mpx) in a zip", "POST", "/v1/datasets", 422, "invalid-upload",
            "multipart file=pixels.zip", ("'huge.png'", "6000x6000", "decompression bomb"), ("body", "file"),
            dataset("pixels.zip", zipped({"huge.png": png_declaring(6000, 6000)}))),
        Row("PNG declaring 100000x100000 px in a zip", "POST", "/v1/datasets", 422, "invalid-upload",
            "multipart file=pixels.zip", ("'huge.png'", "decompression bomb"), ("body", "file"),
            dataset("pixels.zip", zipped({"huge.png": png_declaring(100_000, 100_000)}))),
        Row("zip entry `../evil.png`", "POST", "/v1/datasets", 422, "invalid-upload", "multipart file=evil.zip",
            ("'../evil.png'", "unsafe path"), ("body", "file"), dataset("evil.zip", zipped({"../evil.png": png_declaring(4, 4)}))),
        Row("zip entry `a/../../evil.png`", "POST", "/v1/datasets", 422, "invalid-upload", "multipart file=evil.zip",
            ("'a/../../evil.png'", "unsafe path"), ("body", "file"),
            dataset("evil.zip", zipped({"ok.png": png_declaring(4, 4), "a/../../evil.png": png_declaring(4, 4)}))),
        Row("zip entry with an absolute path `/etc/cron.d/evil.png`", "POST", "/v1/datasets", 422, "invalid-upload",
            "multipart file=evil.zip", ("'/etc/cron.d/evil.png'", "unsafe path"), ("body", "file"),
            dataset("evil.zip", zipped({"/etc/cron.d/evil.png": png_declaring(4, 4)}))),
        Row("zip entry with backslashes `imgs\\..\\..\\evil.png`", "POST", "/v1/datasets", 422, "invalid-upload",
            "multipart file=evil.zip", ("evil.png", "unsafe path"), ("body", "file"),
            dataset("evil.zip", zipped({"imgs\\..\\..\\evil.png": png_declaring(4, 4)}))),
        Row("file named .zip that is no zip", "POST", "/v1/datasets", 422, "invalid-upload", "multipart file=fake.zip",
            ("not a zip archive",), ("body", "file"), dataset("fake.zip", b"not a zip at all")),
        # -- datasets: CSV cells and shape
        Row("CSV with a NaN cell", "POST", "/v1/datasets", 422, "invalid-upload", "multipart file=nan.csv",
            ("row 2, column 'b'", "'nan'", "finite"), ("body", "file"), dataset("nan.csv", b"a,b\n1,2\n3,nan\n")),
        Row("CSV with an inf cell", "POST", "/v1/datasets", 422, "invalid-upload", "multipart file=inf.csv",
            ("row 1, column 'a'", "'inf'"), ("body", "file"), dataset("inf.csv", b"a,b\ninf,2\n")),
        Row("CSV with a -Infinity cell", "POST", "/v1/datasets", 422, "invalid-upload", "multipart file=minf.csv",
            ("row 2, column 'b'", "'-Infinity'"), ("body", "file"), dataset("minf.csv", b"a,b\n1,2\n3,-Infinity\n")),
        Row("CSV with a 1e999 cell", "POST", "/v1/datasets", 422, "invalid-upload", "multipart file=big.csv",
            ("row 1, column 'b'", "'1e999'"), ("body", "file"), dataset("big.csv", b"a,b\n1,1e999\n")),
        Row("ragged CSV (a row with fewer fields)", "POST", "/v1/datasets", 422, "invalid-upload",
            "multipart file=ragged.csv", ("row 2 (line 3) has 1 fields; the header has 2",), ("body", "file"),
            dataset("ragged.csv", b"a,b\n1,2\n3\n")),
        Row("CSV with one 200 kB field", "POST", "/v1/datasets", 422, "invalid-upload", "multipart file=wide.csv",
            ("field larger than field limit",), ("body", "file"), dataset("wide.csv", b"a,b\n1," + b"x" * 200_000 + b"\n")),
        Row("CSV with 2001 columns", "POST", "/v1/datasets", 422, "invalid-upload", "multipart file=cols.csv",
            ("2001 columns",), ("body", "file"),
            dataset("cols.csv", ",".join(f"c{i}" for i in range(2001)).encode() + b"\n" + b"1," * 2000 + b"1\n")),
        Row("CSV that is not UTF-8", "POST", "/v1/datasets", 422, "invalid-upload", "multipart file=latin1.csv",
            ("not UTF-8",), ("body", "file"), dataset("latin1.csv", b"city\nS\xe3o Paulo\n")),
        # -- datasets: names and request shape
        Row("dataset name with NUL", "POST", "/v1/datasets", 422, "validation-error", "multipart name='ev\\x00il'",
            ("body.name",), ("body", "name"), dataset("a.csv", b"a\n1\n", name="ev\x00il")),
        Row("dataset name with a right-to-left override and an emoji", "POST", "/v1/datasets", 422,
            "validation-error", "multipart name='e\\u202elive\\U0001f4a5'", ("body.name",), ("body", "name"),
            dataset("a.csv", b"a\n1\n", name="e\u202elive\U0001f4a5")),
        Row("dataset named like a built-in (`shapes-val`)", "POST", "/v1/datasets", 409, "dataset-exists",
            "multipart file=shapes-val.csv", ("'shapes-val'",), (), dataset("shapes-val.csv", b"a\n1\n")),
        Row("dataset name the tenant already uses", "POST", "/v1/datasets", 409, "dataset-exists",
            f"multipart file={world.alice_dataset}.csv", (f"'{world.alice_dataset}'",), (),
            dataset(f"{world.alice_dataset}.csv", b"a\n1\n")),
        Row("JSON body where multipart is expected", "POST", "/v1/datasets", 422, "validation-error",
            "application/json", ("body.file",), ("body", "file"), {"json": {"file": "x"}}),
        Row("multipart without a boundary", "POST", "/v1/datasets", 400, "http-error", "multipart/form-data, no boundary",
            ("boundary",), (), {"content": b"abc", "headers": {"content-type": "multipart/form-data"}}),
        Row("upload over max_upload_bytes (Content-Length)", "POST", "/v1/datasets", 413, "payload-too-large",
            f"multipart file=big.csv ({len(p.oversized_upload):,} B)", (f"{MAX_UPLOAD_BYTES} bytes",), (),
            dataset("big.csv", p.oversized_upload)),
        Row("upload over max_upload_bytes, streamed without Content-Length", "POST", "/v1/datasets", 413,
            "payload-too-large", "chunked multipart", (f"{MAX_UPLOAD_BYTES} bytes",), (),
            {"headers": {"content-type": p.streamed_upload_type}}, stream=chunks(p.streamed_upload)),
        # -- models: pickles, truncations, noise
        Row("raw pickle (protocol 4) named model.pt2", "POST", "/v1/models", 422, "pickled-upload",
            "multipart file=model.pt2", ("pickled checkpoint", "torch.export.save"), ("body", "file"),
            model("model.pt2", p.raw_pickle)),
        Row("torch.save checkpoint (zip holding data.pkl) named model.pt2", "POST", "/v1/models", 422,
            "pickled-upload", "multipart file=model.pt2", ("torch.save",), ("body", "file"),
            model("model.pt2", p.torch_checkpoint)),
        Row(".pt2 archive (archive_format pt2) holding a pickled data.pkl", "POST", "/v1/models", 422,
            "pickled-upload", "multipart file=model.pt2", ("pickle",), ("body", "file"),
            model("model.pt2", zipped({**PT2_LAYOUT, "archive/data.pkl": p.raw_pickle}))),
        Row("text pickle (protocol 0) named model.pt2", "POST", "/v1/models", 422, "invalid-upload",
            "multipart file=model.pt2", ("not a safetensors file",), ("body", "file"), model("model.pt2", p.text_pickle)),
        Row(".pt2 archive cut in half", "POST", "/v1/models", 422, "invalid-upload", "multipart file=model.pt2",
            ("cannot be read",), ("body", "file"), model("model.pt2", pt2_cut[: len(pt2_cut) // 2])),
        Row("safetensors file missing its last 100 bytes", "POST", "/v1/models", 422, "invalid-upload",
            "multipart file=w.safetensors", ("'weight'", "truncated"), ("body", "file"),
            model("w.safetensors", p.safetensors[:-100], SAFETENSORS_MANIFEST)),
        Row("safetensors file cut inside its header", "POST", "/v1/models", 422, "invalid-upload",
            "multipart file=w.safetensors", ("truncated",), ("body", "file"),
            model("w.safetensors", p.safetensors[:20], SAFETENSORS_MANIFEST)),
        Row("3.9 MB of random bytes", "POST", "/v1/models", 422, "invalid-upload",
            f"multipart file=model.pt2 ({len(p.random_bytes):,} B)", ("not a safetensors file",), ("body", "file"),
            model("model.pt2", p.random_bytes)),
        Row("empty model file", "POST", "/v1/models", 422, "invalid-upload", "multipart file=model.pt2 (0 B)",
            ("empty",), ("body", "file"), model("model.pt2", b"")),
        Row("model name with control characters", "POST", "/v1/models", 422, "invalid-manifest",
            "manifest name='ev\\x00i\\x1bl'", ("manifest.name",), ("body", "manifest", "name"),
            model("model.pt2", p.raw_pickle, manifest(name="ev\x00i\x1bl"))),
        Row("manifest that is not JSON", "POST", "/v1/models", 422, "validation-error", "manifest='{not json'",
            ("not JSON",), ("body", "manifest"), model("model.pt2", p.raw_pickle, "{not json")),
        Row("manifest nested 50,000 levels deep", "POST", "/v1/models", 422, "validation-error",
            "manifest='[' x 50000 + ']' x 50000", ("nested too deeply",), ("body", "manifest"),
            model("model.pt2", p.raw_pickle, "[" * 50_000 + "]" * 50_000)),
        Row("NaN, Infinity and 1e999 in a manifest", "POST", "/v1/models", 422, "invalid-manifest",
            "manifest input.image.mean=[NaN, Infinity, 1e999]", ("numbers must be finite",), ("body", "manifest"),
            model("w.safetensors", p.raw_pickle, SAFETENSORS_MANIFEST.replace(
                '"size": [16, 16]', '"size": [64, 64], "mean": [NaN, Infinity, 1e999]'))),
        # -- job bodies
        Row("JSON body of 4 MiB (Content-Length)", "POST", "/v1/jobs", 413, "payload-too-large",
            f"application/json ({len(p.huge_json):,} B)", (f"{MAX_REQUEST_BYTES} bytes",), (),
            {"content": p.huge_json, "headers": {"content-type": "application/json"}}),
        Row("JSON body of 1 MiB streamed without Content-Length", "POST", "/v1/jobs", 413, "payload-too-large",
            "chunked application/json", (f"{MAX_REQUEST_BYTES} bytes",), (),
            {"headers": {"content-type": "application/json"}}, stream=chunks(b" " * (1 << 20))),
        Row("JSON nested 50,000 levels deep", "POST", "/v1/jobs", 400, "http-error",
            f"application/json ({len(deep):,} B)", ("parsing the body",), (),
            {"content": deep, "headers": {"content-type": "application/json"}}),
        Row("a 5001-digit integer for steps", "POST", "/v1/jobs", 400, "http-error", "application/json",
            ("parsing the body",), (), raw_job(ACTMAX_NAN % (json.dumps(CHANNEL), '"steps": 1' + "0" * 5000))),
        Row("body that is not JSON", "POST", "/v1/jobs", 422, "validation-error", "application/json '{not json'",
            ("JSON decode error",), ("body",), {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        Row("wrong content type (text/plain)", "POST", "/v1/jobs", 415, "unsupported-media-type", "text/plain",
            ("'text/plain'",), (), {"content": b"kind=deconvnet", "headers": {"content-type": "text/plain"}}),
        Row("wrong content type (form)", "POST", "/v1/jobs", 415, "unsupported-media-type",
            "application/x-www-form-urlencoded", ("'application/x-www-form-urlencoded'",), (), {"data": {"kind": "deconvnet"}}),
        # -- enormous work for the real kinds
        Row("activation_maximization: 10^9 steps", "POST", "/v1/jobs", 422, "invalid-params", "steps=1000000000",
            ("params.steps", "4096"), ("body", "params", "steps"), job("activation_maximization", objective=CHANNEL, steps=10**9)),
        Row("activation_maximization: 10^6 px images", "POST", "/v1/jobs", 422, "invalid-params", "size=1000000",
            ("params.size", "512"), ("body", "params", "size"), job("activation_maximization", objective=CHANNEL, size=10**6)),
        Row("activation_maximization: 10^6 images per unit", "POST", "/v1/jobs", 422, "invalid-params",
            "images_per_unit=1000000", ("images_per_unit", "16"), ("body", "params", "images_per_unit"),
            job("activation_maximization", objective=CHANNEL, images_per_unit=10**6)),
        Row("activation_maximization: 10,000 units", "POST", "/v1/jobs", 422, "invalid-params",
            "objective.units=[0..9999]", ("objective.units", "64"), ("body", "params", "objective", "units"),
            job("activation_maximization", objective={**CHANNEL, "units": list(range(10_000))})),
        Row("deconvnet: top_k 10^6", "POST", "/v1/jobs", 422, "invalid-params", "top_k=1000000",
            ("params.top_k", "64"), ("body", "params", "top_k"),
            job("deconvnet", layer="features.0", dataset="shapes-val", top_k=10**6)),
        Row("deconvnet: batch_size 10^9", "POST", "/v1/jobs", 422, "invalid-params", "batch_size=1000000000",
            ("params.batch_size", "1024"), ("body", "params", "batch_size"),
            job("deconvnet", layer="features.0", dataset="shapes-val", batch_size=10**9)),
        Row("deconvnet: channel 10^9", "POST", "/v1/jobs", 422, "unit-out-of-range", "channels=[1000000000]",
            ("1000000000", "features.0"), ("body", "params", "channels", 0),
            job("deconvnet", layer="features.0", dataset="shapes-val", channels=[10**9])),
        Row("deconvnet: 65 inline images", "POST", "/v1/jobs", 422, "invalid-params", "images=[65 x 1x1 PNG]",
            ("params.images", "64"), ("body", "params", "images"),
            job("deconvnet", layer="features.0", images=[base64.b64encode(png_declaring(1, 1)).decode()] * 65)),
        Row("timeout_seconds 10^12", "POST", "/v1/jobs", 422, "limit-exceeded", "timeout_seconds=10^12",
            ("3600",), ("body", "timeout_seconds"),
            {"json": {"kind": "test-lifecycle", "model": TEST_MODEL, "timeout_seconds": 10**12}}),
        # -- non-finite numbers in params
        Row("NaN in params", "POST", "/v1/jobs", 422, "validation-error", "params.lr=NaN", ("params.lr is nan",),
            ("body", "params"), raw_job(ACTMAX_NAN % (json.dumps(CHANNEL), '"lr": NaN'))),
        Row("Infinity in params", "POST", "/v1/jobs", 422, "validation-error", "params.objective.softmax_weight=-Infinity",
            ("params.objective.softmax_weight is -inf",), ("body", "params"),
            raw_job(ACTMAX_NAN % ('{"type": "class", "units": [0], "softmax_weight": -Infinity}', '"steps": 8'))),
        Row("1e999 in params", "POST", "/v1/jobs", 422, "validation-error", "params.lr=1e999", ("params.lr is inf",),
            ("body", "params"), raw_job(ACTMAX_NAN % (json.dumps(CHANNEL), '"lr": 1e999'))),
        Row("NaN inside a direction vector", "POST", "/v1/jobs", 422, "validation-error",
            "params.objective.vector=[1, NaN]", ("params.objective.vector[1] is nan",), ("body", "params"),
            raw_job(ACTMAX_NAN % ('{"type": "direction", "layer": "features.0", "vector": [1, NaN]}', '"steps": 8'))),
        Row("a lone surrogate in metadata", "POST", "/v1/jobs", 422, "validation-error", 'metadata.x="\\ud800"',
            ("lone surrogate",), ("body", "metadata"),
            raw_job('{"kind": "test-lifecycle", "model": "test-model", "metadata": {"x": "\\ud800"}}')),
        Row("a lone surrogate in a metadata key", "POST", "/v1/jobs", 422, "validation-error",
            'metadata."\\udfff"=1', ("lone surrogate",), ("body", "metadata"),
            raw_job('{"kind": "test-lifecycle", "model": "test-model", "metadata": {"\\udfff": 1}}')),
        Row("a lone surrogate in the kind", "POST", "/v1/jobs", 422, "validation-error", 'kind="de\\ud800conv"',
            ("lone surrogate",), ("body", "kind"), raw_job('{"kind": "de\\ud800conv", "model": "shapes-cnn"}')),
        Row("deconvnet: an inline PNG declaring 100000x100000 px", "POST", "/v1/jobs", 422, "invalid-params",
            "images=[PNG header of 10^10 px]", ("decompression bomb",), ("body", "params", "images"),
            job("deconvnet", layer="features.0", top_k=1,
                images=[base64.b64encode(png_declaring(100_000, 100_000)).decode()])),
        # -- unicode and control characters in names, headers and ids
        Row("kind with NUL and a right-to-left override", "POST", "/v1/jobs", 422, "unknown-kind",
            "kind='de\\x00conv\\u202enet'", ("unknown job kind",), ("body", "kind"),
            {"json": {"kind": "de\x00conv\u202enet", "model": "shapes-cnn"}}),
        Row("kind of 1,000 emoji", "POST", "/v1/jobs", 422, "unknown-kind", "kind='\\U0001f4a5' x 1000",
            ("unknown job kind",), ("body", "kind"), {"json": {"kind": "\U0001f4a5" * 1000, "model": "shapes-cnn"}}),
        Row("model id with NUL", "POST", "/v1/jobs", 422, "unknown-model", "model='shapes-cnn\\x00'",
            ("unknown model", "shapes-cnn\\x00"), ("body", "model"), job("deconvnet", "shapes-cnn\x00", **DECONV)),
        Row("model id with a zero-width joiner", "POST", "/v1/jobs", 422, "unknown-model", "model='shapes\\u200dcnn'",
            ("unknown model",), ("body", "model"), job("deconvnet", "shapes\u200dcnn", **DECONV)),
        Row("model id of 100,000 characters", "POST", "/v1/jobs", 422, "validation-error", "model='x' x 100000",
            ("body.model", "200"), ("body", "model"), job("deconvnet", "x" * 100_000, **DECONV)),
        Row("torchvision model with a 20-digit seed", "POST", "/v1/jobs", 422, "invalid-model",
            "model='torchvision/resnet18?weights=random&seed=' + '9' x 20", ("seed",), ("body", "model"),
            job("deconvnet", "torchvision/resnet18?weights=random&seed=" + "9" * 20, **DECONV)),
        Row("Idempotency-Key of 300 characters", "POST", "/v1/jobs", 422, "validation-error",
            "header Idempotency-Key='k' x 300", ("idempotency-key", "255"), ("header", "idempotency-key"),
            {"json": {"kind": "test-lifecycle", "model": TEST_MODEL}, "headers": {"Idempotency-Key": "k" * 300}}),
        Row("empty Idempotency-Key", "POST", "/v1/jobs", 422, "validation-error", "header Idempotency-Key=''",
            ("idempotency-key",), ("header", "idempotency-key"),
            {"json": {"kind": "test-lifecycle", "model": TEST_MODEL}, "headers": {"Idempotency-Key": ""}}),
        Row("Idempotency-Key with NUL and an ANSI escape", "POST", "/v1/jobs", 400, "(none: uvicorn answers text/plain)",
            "header Idempotency-Key=b'retry\\x00\\x1b[2J', a valid job body",
            raw_headers={"Idempotency-Key": b"retry\x00\x1b[2J", "Content-Type": b"application/json"},
            request={"content": json.dumps({"kind": "test-lifecycle", "model": TEST_MODEL}).encode()}),
        Row("API key with non-ASCII bytes", "GET", "/v1/jobs", 401, "unauthorized",
            "header Authorization='Bearer ключ' (UTF-8)", ("not valid",), (),
            {"headers": {"Authorization": "Bearer ключ".encode()}}),
        Row("page_token of NUL characters", "GET", "/v1/jobs?page_token=%00%00%00%00", 422, "validation-error",
            "query", ("page token",), ("query", "page_token")),
        Row("job id `%00`", "GET", "/v1/jobs/%00", 404, "job-not-found", "", ("'\\x00'",)),
        Row("job id `%2e%2e`", "GET", "/v1/jobs/%2e%2e", 404, "job-not-found", "", ("'..'",)),
        Row("job id `..%2f..%2fetc%2fpasswd`", "GET", "/v1/jobs/..%2f..%2fetc%2fpasswd", 404, "not-found"),
        Row("cancel job `%00`", "POST", "/v1/jobs/%00/cancel", 404, "job-not-found", "", ("'\\x00'",)),
        Row("delete job `%2e%2e`", "DELETE", "/v1/jobs/%2e%2e", 404, "job-not-found", "", ("'..'",)),
        Row("events of job `%00`", "GET", "/v1/jobs/%00/events", 404, "job-not-found", "", ("'\\x00'",)),
        Row("artifact name `%00`", "GET", f"/v1/jobs/{bob_job}/artifacts/%00", 422, "validation-error", "",
            ("path.name",), ("path", "name")),
        Row("model id `..%2f..%2fetc%2fpasswd`", "GET", "/v1/models/..%2f..%2fetc%2fpasswd", 404, "model-not-found",
            "", ("'../../etc/passwd'",)),
        Row("delete model `%00`", "DELETE", "/v1/models/%00", 404, "model-not-found", "", ("'\\x00'",)),
        Row("dataset id `%2e%2e`", "GET", "/v1/datasets/%2e%2e", 404, "dataset-not-found", "", ("'..'",)),
        Row("delete dataset `%00`", "DELETE", "/v1/datasets/%00", 404, "dataset-not-found", "", ("'\\x00'",)),
        # -- another tenant's ids (all of bob's, asked for by alice)
        Row("another tenant's job", "GET", f"/v1/jobs/{bob_job}", 404, "job-not-found", "", (bob_job,)),
        Row("another tenant's job's artifact", "GET", f"/v1/jobs/{bob_job}/artifacts/result.json", 404,
            "job-not-found", "", (bob_job,)),
        Row("another tenant's job's events", "GET", f"/v1/jobs/{bob_job}/events", 404, "job-not-found", "", (bob_job,)),
        Row("cancel another tenant's job", "POST", f"/v1/jobs/{bob_job}/cancel", 404, "job-not-found", "", (bob_job,)),
        Row("delete another tenant's job", "DELETE", f"/v1/jobs/{bob_job}", 404, "job-not-found", "", (bob_job,)),
        Row("another tenant's model", "GET", f"/v1/models/{world.bob_model}", 404, "model-not-found", "",
            (world.bob_model,)),
        Row("delete another tenant's model", "DELETE", f"/v1/models/{world.bob_model}", 404, "model-not-found", "",
            (world.bob_model,)),
        Row("a job on another tenant's model", "POST", "/v1/jobs", 422, "unknown-model", f"model='{world.bob_model}'",
            (world.bob_model,), ("body", "model"), job("deconvnet", world.bob_model, layer="features.0", dataset="shapes-val")),
        Row("another tenant's dataset", "GET", f"/v1/datasets/{world.bob_dataset}", 404, "dataset-not-found", "",
            (world.bob_dataset,)),
        Row("a job on another tenant's dataset", "POST", "/v1/jobs", 422, "unknown-dataset",
            f"params.dataset='{world.bob_dataset}'", (world.bob_dataset,), ("body", "params", "dataset"),
            job("tabular_attribution", "retail-mlp", dataset=world.bob_dataset)),
        Row("a table job on an image dataset", "POST", "/v1/jobs", 422, "wrong-dataset-kind",
            "params.baseline.background='shapes-val'", ("shapes-val", "table"), ("body", "params", "baseline", "background"),
            job("tabular_attribution", "retail-mlp", dataset="retail-sample", baseline={"background": "shapes-val"})),
        Row("delete another tenant's dataset", "DELETE", f"/v1/datasets/{world.bob_dataset}", 404,
            "dataset-not-found", "", (world.bob_dataset,)),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def rows(world, payloads) -> list[Row]:
    table = hostile_rows(world, payloads)
    assert len({r.input for r in table}) == len(table), "row names are unique"
    return table


# ---- sending and checking ------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


def send(stack: Stack, world: World, row: Row) -> tuple[Answer, int]:
    """The answer, and the bytes of body sent."""
    if row.raw_headers is not None:
        content = row.request["content"]
        connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        try:
            connection.putrequest(row.method, row.path)
            token = ALICE if row.tenant == "alice" else BOB
            connection.putheader("Authorization", f"Bearer {token}")
            for name, value in row.raw_headers.items():
                connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(content)))
            connection.endheaders(content)
            response = connection.getresponse()
            return Answer(response.status, response.getheader("content-type") or "", response.read()), len(content)
        finally:
            connection.close()
    client = world.clients[row.tenant]
    sent = 0
    arguments = dict(row.request)
    if row.stream is not None:

        def counted(chunks: Iterator[bytes]) -> Iterator[bytes]:
            nonlocal sent
            for chunk in chunks:
                sent += len(chunk)
                yield chunk

        arguments["content"] = counted(row.stream())
    request = client.build_request(row.method, row.path, **arguments)
    if row.stream is None:
        sent = len(request.read())
    response = client.send(request)
    return Answer(response.status_code, response.headers.get("content-type", ""), response.content), sent


def check_answer(row: Row, answer: Answer) -> None:
    where = f"{row.input}: {answer.status} {answer.body[:600]!r}"
    assert answer.status == row.status, where
    if not row.problem:
        # Refused by uvicorn's HTTP parser: the app never saw the request.
        assert answer.content_type.startswith("text/plain"), where
        return
    assert answer.content_type.startswith(PROBLEM), where
    problem = json.loads(answer.body)
    assert {"type", "title", "status", "detail"} <= set(problem), where
    assert problem["status"] == row.status and problem["title"], where
    assert problem["type"] == PROBLEM_TYPE_BASE + row.slug, where
    text = problem["detail"] + " " + json.dumps(problem.get("errors") or [], ensure_ascii=True)
    for name in row.names:
        assert name in text, f"{row.input}: {name!r} not named in {text[:600]!r}"
    if row.loc:
        locs = [tuple(e["loc"][: len(row.loc)]) for e in problem.get("errors") or []]
        assert row.loc in locs, f"{row.input}: no error at {row.loc}: {locs}"


def api_rss(stack: Stack) -> int:
    assert stack.api is not None and stack.api.poll() is None, "the API process is alive"
    for line in Path(f"/proc/{stack.api.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/<pid>/status")


# ---- the report --------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


@pytest.fixture(scope="module")
def report() -> Iterator[dict[str, Any]]:
    collected: dict[str, Any] = {"rows": [], "memory": None}
    yield collected
    lines = [
        "# Hostile inputs",
        "",
        "Written by `tests/reliability/test_hostile_inputs.py`. Every input was answered as below, and left no",
        "trace: the stack's Redis namespace, RQ's queue and registries for it, and both tenants' job, model",
        "and dataset lists were identical before and after it.",
        "",
        "| input | request | status | problem type | trace left |",
        "|---|---|---|---|---|",
    ]
    for entry in collected["rows"]:
        lines.append(
            "| " + " | ".join(_cell(str(entry[k])) for k in ("input", "request", "status", "type", "trace")) + " |"
        )
    memory = collected["memory"]
    if memory:
        mib = 1024 * 1024
        lines += [
            "",
            "## Memory of the API",
            "",
            f"- RSS before the warm-up round: {memory['start'] / mib:.1f} MiB",
            f"- RSS after a warm-up round of the table: {memory['warm'] / mib:.1f} MiB",
            f"- RSS after each of {memory['rounds']} more rounds: "
            + ", ".join(f"{r / mib:.1f}" for r in memory["per_round"])
            + " MiB",
            f"- growth after the warm-up: {memory['growth'] / mib:+.2f} MiB (bound: {memory['bound'] / mib:.1f} MiB, "
            "the smaller of 50 MiB and a quarter of the bytes sent)",
            f"- bytes of body sent in those {memory['rounds']} rounds: {memory['sent'] / mib:.1f} MiB "
            f"({memory['requests']} requests)",
        ]
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text("\n".join(lines) + "\n")


# ---- the tests -------------------------------------------------------------------------------------


def test_hostile_inputs_get_a_clear_problem_and_leave_no_trace(hostile_stack, world, rows, report):
    before = snapshot(hostile_stack, world.clients)
    for row in rows:
        answer, sent = send(hostile_stack, world, row)
        check_answer(row, answer)
        after = snapshot(hostile_stack, world.clients)
        assert after == before, f"{row.input} left a trace: {describe_difference(before, after)}"
        problem_type = PROBLEM_TYPE_BASE + row.slug if row.problem else row.slug
        request = f"`{row.method} {row.path}`" + (f" {row.body}" if row.body else "")
        report["rows"].append(
            {"input": row.input, "request": f"{request}, {sent:,} B sent" if sent else request,
             "status": answer.status, "type": problem_type, "trace": "none"}
        )  # fmt: skip


def test_memory_of_the_api_stays_bounded(hostile_stack, world, rows, report):
    def one_round() -> int:
        total = 0
        for row in rows:
            answer, sent = send(hostile_stack, world, row)
            assert answer.status == row.status, (row.input, answer.status, answer.body[:300])
            total += sent
        return total

    before = snapshot(hostile_stack, world.clients)
    start = api_rss(hostile_stack)
    one_round()
    warm = api_rss(hostile_stack)
    sent, per_round = 0, []
    for _ in range(MEMORY_ROUNDS):
        sent += one_round()
        per_round.append(api_rss(hostile_stack))
    end = per_round[-1]
    growth = end - warm
    bound = min(RSS_GROWTH_BOUND, sent // 4)
    mib = 1024 * 1024
    print(
        f"API RSS: {start / mib:.1f} MiB at start, {warm / mib:.1f} MiB after the warm-up round, "
        f"{end / mib:.1f} MiB after {MEMORY_ROUNDS} more rounds: growth {growth / mib:+.2f} MiB (bound {bound / mib:.1f}); "
        f"sent {sent / mib:.1f} MiB of bodies in {MEMORY_ROUNDS * len(rows)} requests; "
        f"after each round: {', '.join(f'{r / mib:.1f}' for r in per_round)} MiB"
    )
    report["memory"] = {
        "start": start, "warm": warm, "end": end, "growth": growth, "bound": bound, "sent": sent,
        "rounds": MEMORY_ROUNDS, "requests": MEMORY_ROUNDS * len(rows), "per_round": per_round,
    }  # fmt: skip
    assert growth < bound, f"RSS grew {growth / mib:.1f} MiB over {MEMORY_ROUNDS} rounds (bound {bound / mib:.1f} MiB)"
    after = snapshot(hostile_stack, world.clients)
    assert after == before, f"the repeated rounds left a trace: {describe_difference(before, after)}"
