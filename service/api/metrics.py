"""Prometheus metrics.

Request counts and latencies are per API process. Job counts, durations and queue depth are
read from Redis at scrape time, so every API replica reports the same deployment-wide figures
and nothing is lost when a process restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.jobstore import JOB_DURATION_BUCKETS, JobStore

log = logging.getLogger("glassbox.metrics")


class JobStatsCollector(Collector):
    def __init__(self, store: JobStore):
        self.store = store

    def collect(self) -> Iterator:
        try:
            stats = self.store.stats()
        except redis.RedisError as exc:
            log.warning("job metrics unavailable: %s", exc)
            return
        jobs = CounterMetricFamily(
            "glassbox_jobs", "Jobs that reached each status, by kind", labels=["kind", "status"]
        )
        for field, count in sorted(stats["jobs"].items()):
            kind, _, status = field.rpartition("|")
            jobs.add_metric([kind, status], count)
        yield jobs
        depth = GaugeMetricFamily("glassbox_queue_depth", "Jobs waiting, by where", labels=["where"])
        depth.add_metric(["rq"], stats["queue_depth"])
        depth.add_metric(["tenant_limit"], stats["waiting"])
        yield depth
        yield GaugeMetricFamily("glassbox_jobs_running", "Jobs running now", value=stats["running"])
        yield GaugeMetricFamily("glassbox_workers_alive", "Workers with a recent heartbeat", value=stats["live_workers"])
        duration = HistogramMetricFamily(
            "glassbox_job_duration_seconds", "Run time of finished jobs, by kind", labels=["kind"]
        )
        kinds = sorted({f.rpartition("|")[0] for f in stats["durations"]})
        for kind in kinds:
            buckets = [
                (str(bound), stats["durations"].get(f"{kind}|{bound}", 0.0)) for bound in JOB_DURATION_BUCKETS
            ]
            buckets.append(("+Inf", stats["durations"].get(f"{kind}|+Inf", 0.0)))
            duration.add_metric([kind], buckets, sum_value=stats["durations"].get(f"{kind}|sum", 0.0))
        yield duration


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(
            "glassbox_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "glassbox_http_request_duration_seconds",
            "HTTP request latency (to the end of the response body)",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )


class RequestMetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware) to keep the per-request cost to a few microseconds."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            # The route template, never the raw path, so that ids do not explode label counts.
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
