"""Webhook deliveries: signed the Standard Webhooks way (by the `standardwebhooks` package, the
spec's reference implementation), retried with backoff, sent by the API processes (never by a
worker: a worker only pushes a message onto a Redis list).

Written here, because no library does it: the at-least-once outbox over Redis (a delivery moves
to a per-sender processing list while it is sent, and a silent sender's list is put back), the
retry schedule, and the URL policy that keeps webhooks off internal networks.

Redis layout (under the namespace `ns`):
  ns:webhooks:pending                 list: deliveries to send now
  ns:webhooks:retry                   sorted set: deliveries to send again at their score (time)
  ns:webhooks:processing:{sender}     list: what one sender is sending
  ns:webhooks:senders                 sorted set: senders by last heartbeat; the lists of
                                      silent ones go back to pending (at-least-once)
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis
from standardwebhooks.webhooks import Webhook

from service.keys import Keys
from service.settings import Settings

log = logging.getLogger("glassbox.webhooks")

SENDER_SILENT_AFTER_SECONDS = 30.0
USER_AGENT = "glassbox-webhooks/1"


class WebhookRefused(ValueError):
    pass


def tenant_secret(settings: Settings, tenant: str) -> str:
    """The tenant's signing secret, `whsec_<base64>`: derived, so nothing per tenant is stored."""
    key = hmac.new(settings.webhook_secret.encode(), f"glassbox-webhooks:{tenant}".encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(key).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, as the Standard Webhooks spec says."""
    return Webhook(secret).sign(message_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode())


def check_url(url: str, settings: Settings) -> None:
    """Refuse URLs outside the allow-list, and internal addresses unless listed explicitly."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("the webhook URL must be http:// or https:// with a host")
    host = parts.hostname.lower()
    allowed = settings.webhook_allowed_hosts
    if allowed:
        if any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in allowed):
            return
        raise WebhookRefused(f"host {host!r} is not in GLASSBOX_WEBHOOK_ALLOWED_HOSTS ({', '.join(allowed)})")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)}
    except OSError as exc:
        raise WebhookRefused(f"host {host!r} does not resolve: {exc}") from exc
    for address in addresses:
        if not ipaddress.ip_address(address.split("%")[0]).is_global:
            raise WebhookRefused(
                f"host {host!r} resolves to the internal address {address}; internal networks are only "
                "reached when GLASSBOX_WEBHOOK_ALLOWED_HOSTS lists the host"
            )


class WebhookOutbox:
    """What transitions call: queue one delivery (a Redis push, nothing more)."""

    def __init__(self, connection: redis.Redis, settings: Settings):
        self.redis = connection
        self.settings = settings
        self.pending = Keys(settings.namespace).webhooks_pending

    def queue(self, tenant: str, webhook: dict[str, Any], event: str, job: dict[str, Any]) -> None:
        if event not in webhook.get("events", ()):
            return
        body = {"type": f"job.{event}", "timestamp": time.time(), "data": job}
        message = {"id": f"msg_{uuid.uuid4().hex}", "tenant": tenant, "url": webhook["url"], "body": body, "attempt": 0}
        self.redis.lpush(self.pending, json.dumps(message))


class WebhookSender(threading.Thread):
    """Sends queued deliveries until stopped; one per API process."""

    def __init__(self, connection: redis.Redis, settings: Settings):
        super().__init__(name="glassbox-webhooks", daemon=True)
        self.redis = connection
        self.settings = settings
        self.name_in_redis = uuid.uuid4().hex[:12]
        self.keys = Keys(settings.namespace)
        self.pending = self.keys.webhooks_pending
        self.retry = self.keys.webhooks_retry
        self.senders = self.keys.webhook_senders
        self.processing = self.keys.webhooks_processing(self.name_in_redis)
        self.stopped = threading.Event()
        self.http = httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False)

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        last_housekeeping = 0.0
        while not self.stopped.is_set():
            try:
                if time.monotonic() - last_housekeeping > 1.0:
                    last_housekeeping = time.monotonic()
                    self._housekeeping()
                raw = self.redis.blmove(self.pending, self.processing, 1.0, "RIGHT", "LEFT")
                if raw is not None:
                    self._deliver(raw)
                    self.redis.lrem(self.processing, 1, raw)
            except redis.RedisError as exc:
                log.debug("webhooks: redis unavailable: %s", exc)
                self.stopped.wait(1.0)
            except Exception:
                log.exception("webhooks: unexpected error")
                self.stopped.wait(1.0)
        self.http.close()

    def _housekeeping(self) -> None:
        now = time.time()
        self.redis.zadd(self.senders, {self.name_in_redis: now})
        for raw in self.redis.zrangebyscore(self.retry, "-inf", now, start=0, num=100):
            if self.redis.zrem(self.retry, raw):
                self.redis.lpush(self.pending, raw)
        for sender in self.redis.zrangebyscore(self.senders, "-inf", now - SENDER_SILENT_AFTER_SECONDS):
            sender = sender.decode()
            orphaned = self.keys.webhooks_processing(sender)
            while self.redis.lmove(orphaned, self.pending, "RIGHT", "LEFT") is not None:
                pass
            self.redis.zrem(self.senders, sender)

    def _deliver(self, raw: bytes) -> None:
        message = json.loads(raw)
        body = json.dumps(message["body"], separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": message["id"],
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(tenant_secret(self.settings, message["tenant"]), message["id"], timestamp, body),
        }
        outcome = ""
        try:
            check_url(message["url"], self.settings)  # again: DNS may have changed since submit
            response = self.http.post(message["url"], content=body, headers=headers)
            if 200 <= response.status_code < 300:
                return
            outcome = f"HTTP {response.status_code}"
        except WebhookRefused as exc:
            log.warning("webhook %s refused: %s", message["id"], exc)
            return
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        attempt = message["attempt"] + 1
        if attempt >= self.settings.webhook_max_attempts:
            log.warning("webhook %s to %s given up after %d tries (%s)", message["id"], message["url"], attempt, outcome)
            return
        message["attempt"] = attempt
        delay = self.settings.webhook_retry_base_seconds * 2 ** (attempt - 1)
        self.redis.zadd(self.retry, {json.dumps(message): time.time() + delay})
