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

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service.api.problems import PROBLEM_TYPE_BASE
from tests.conftest import ALICE, BOB, REPO, Stack, wait_until
from tests.reliability.hostile_cases import Row, World, hostile_rows
from tests.reliability.hostile_payloads import MAX_REQUEST_BYTES, MAX_UPLOAD_BYTES, Payloads, build_payloads
from tests.reliability.redis_trace import describe_difference, snapshot

PROBLEM = "application/problem+json"
ARTIFACT = REPO / "test-artifacts" / "hostile_inputs.md"
MEMORY_ROUNDS = 5
RSS_GROWTH_BOUND = 50 * 1024 * 1024


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


@pytest.fixture(scope="module")
def payloads() -> Payloads:
    return build_payloads()


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
