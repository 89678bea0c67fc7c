"""The table of hostile inputs: one `Row` per request, with the answer it must get (status,
problem type, the names its detail or `errors` must carry, the `loc` of an error).

`hostile_rows` builds the table from what both tenants own (`World`) and the payloads of
tests/reliability/hostile_payloads.py; tests/reliability/test_hostile_inputs.py sends each row
and checks the answer and that nothing was left behind.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import TEST_MODEL
from tests.e2e.test_models_api import zipped
from tests.reliability.hostile_payloads import (
    MAX_REQUEST_BYTES,
    MAX_UPLOAD_BYTES,
    PT2_LAYOUT,
    Payloads,
    png_declaring,
)


@dataclass
class World:
    """What both tenants own before the first hostile request."""

    clients: dict[str, httpx.Client]
    bob_job: str
    bob_model: str = "bob-net"
    bob_dataset: str = "bob-table"
    alice_dataset: str = "alice-table"


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
