"""Webhooks: real deliveries to a local HTTP server; signatures checked by the Standard Webhooks
reference package's verifier, and the signer against the spec's published test vector."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.webhooks import sign
from tests.conftest import TEST_MODEL, wait_until
from tests.e2e.test_jobs_api import assert_problem


class Receiver:
    """A local HTTP server that records deliveries; answers with `statuses` in turn, then 200."""

    def __init__(self, statuses=(), delay: float = 0.0):
        self.deliveries: list[dict] = []
        self.statuses = list(statuses)
        self.delay = delay
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.deliveries.append({"headers": dict(self.headers), "body": body, "at": time.time()})
                time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    receivers = []

    def make(**kwargs):
        receivers.append(Receiver(**kwargs))
        return receivers[-1]

    yield make
    for r in receivers:
        r.close()


def verify(secret: str, delivery: dict) -> bool:
    """The Standard Webhooks reference verifier: signature and timestamp tolerance."""
    try:
        Webhook(secret).verify(delivery["body"], delivery["headers"], json_parse=False)
        return True
    except WebhookVerificationError:
        return False


def test_the_signature_matches_the_standard_webhooks_test_vector():
    # The example of the Standard Webhooks specification (and of Svix's libraries).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_deliveries_are_signed_and_follow_the_chosen_events(make_stack, receiver):
    stack = make_stack(workers=1, webhook_secret="master-secret", webhook_allowed_hosts="127.0.0.1")
    hook = receiver()
    client = stack.client()
    secret = client.get("/v1/webhook-secret").json()["secret"]
    assert secret.startswith("whsec_") and secret != stack.client(key="key-bob-0123456789").get("/v1/webhook-secret").json()["secret"]
    job = stack.create(client, {"steps": 3}, webhook={"url": hook.url, "events": ["running", "succeeded"]})
    assert job["webhook"]["events"] == ["running", "succeeded"]
    wait_until(lambda: len(hook.deliveries) >= 2, timeout=20, what="two deliveries")
    time.sleep(0.5)
    assert len(hook.deliveries) == 2
    bodies = [json.loads(d["body"]) for d in hook.deliveries]
    assert [b["type"] for b in bodies] == ["job.running", "job.succeeded"]
    assert all(b["data"]["id"] == job["id"] for b in bodies)
    assert bodies[1]["data"]["result"]["artifacts"]
    assert all(verify(secret, d) for d in hook.deliveries)
    tampered = {**hook.deliveries[0], "body": hook.deliveries[0]["body"] + b" "}
    assert not verify(secret, tampered)


def test_failed_deliveries_are_retried_with_backoff_under_the_same_id(make_stack, receiver):
    stack = make_stack(
        workers=1, webhook_secret="m", webhook_allowed_hosts="127.0.0.1", webhook_retry_base_seconds=0.3
    )
    hook = receiver(statuses=[500, 503])
    client = stack.client()
    stack.create(client, {"steps": 1}, webhook={"url": hook.url})
    wait_until(lambda: len(hook.deliveries) >= 3, timeout=30, what="three tries")
    ids = {d["headers"]["webhook-id"] for d in hook.deliveries}
    assert len(ids) == 1
    gaps = [b["at"] - a["at"] for a, b in zip(hook.deliveries, hook.deliveries[1:], strict=False)]
    assert gaps[0] >= 0.25 and gaps[1] >= 0.5  # 0.3 s, then 0.6 s
    time.sleep(1.5)
    assert len(hook.deliveries) == 3  # the third was accepted


def test_a_slow_receiver_never_holds_up_the_worker(make_stack, receiver):
    stack = make_stack(workers=1, webhook_secret="m", webhook_allowed_hosts="127.0.0.1")
    hook = receiver(delay=4.0)
    client = stack.client()
    first = stack.create(client, {"steps": 1}, webhook={"url": hook.url})
    second = stack.create(client, {"steps": 1})
    started = time.monotonic()
    stack.wait_status(client, second["id"], {"succeeded"}, timeout=20)
    assert time.monotonic() - started < 3.0
    assert client.get(f"/v1/jobs/{first['id']}").json()["status"] == "succeeded"


def test_internal_addresses_and_unconfigured_webhooks_are_refused(make_stack, receiver):
    from service.catalogs import ModelCatalog

    def without_worker(**settings):
        stack = make_stack(workers=0, **settings)
        ModelCatalog(stack.redis, stack.settings).put("builtin", TEST_MODEL, {"id": TEST_MODEL})
        return stack

    hook = receiver()
    open_stack = without_worker(webhook_secret="m")  # no allow-list: public addresses only
    client = open_stack.client()
    body = {"kind": "test-lifecycle", "model": TEST_MODEL, "webhook": {"url": hook.url}}
    problem = assert_problem(client.post("/v1/jobs", json=body), 422)
    assert problem["errors"][0]["loc"] == ["body", "webhook", "url"] and "internal address" in problem["detail"]
    assert_problem(client.post("/v1/jobs", json={**body, "webhook": {"url": "ftp://example.com/x"}}), 422)
    listed = without_worker(webhook_secret="m", webhook_allowed_hosts="hooks.example.com")
    problem = assert_problem(listed.client().post("/v1/jobs", json=body), 422)
    assert "not in GLASSBOX_WEBHOOK_ALLOWED_HOSTS" in problem["detail"]
    off = without_worker()
    problem = assert_problem(off.client().post("/v1/jobs", json=body), 422)
    assert "not configured" in problem["detail"]
    assert_problem(off.client().get("/v1/webhook-secret"), 404)
    assert not hook.deliveries
