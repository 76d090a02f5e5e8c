"""``/metrics`` for Prometheus: the API's own traffic and the site's state, on a registry of
this application only (never the process-global one, so two apps in one test do not mix).

Traffic: requests by route template, method and status; latency by route; refusals by status
(401, 403, 413, 415, 422, 429). State, read from the stores at scrape time: door decisions by
kind and outcome (the recorded events), gallery size, devices online, sync lag (the largest
of current revision minus acknowledged revision over active devices). Nothing personal: route
templates, never paths with ids; counts, never names.

Who may scrape (``docs/api.md``): this host's loopback address when ``[console]
metrics_loopback`` is on (a local Prometheus or agent), anyone else with a token granting
READ_EVENTS (the ``events:read`` scope), sent as ``Authorization: Bearer``.
"""
from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance.ops.filing import LEVEL_RANK, filing_status
from appliance.web import fleet
from appliance.web.services import Services

REFUSAL_STATUSES = frozenset({401, 403, 413, 415, 422, 429})
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNMATCHED = "unmatched"  # the route label of requests no route took (404s): never the raw path
STREAMING_PREFIX = "/api/events/stream"  # its latency is the stream's lifetime: not a request latency
LOOPBACK = frozenset({"127.0.0.1", "::1"})


class SiteCollector(Collector):
    """The site's state, read from the stores at each scrape."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        services = self.services
        with services.stores():
            counts = services.sync.outcome_counts()
            filing = filing_status(services.data)  # unique people with a template
            revision = services.data.biometric.revision
            devices = fleet.devices(services)
        decisions = CounterMetricFamily("appliance_door_events", "Door events and alarms recorded, by kind and outcome",
                                        labels=["type", "kind", "outcome"])
        for (kind_type, kind, outcome), count in sorted(counts.items()):
            decisions.add_metric([kind_type, kind, outcome or "none"], count)
        yield decisions
        yield GaugeMetricFamily("appliance_gallery_subjects", "Subjects with an enrolled template", value=filing.count)
        yield GaugeMetricFamily("appliance_filing_level", "Filing counter: 0 below 80,000 people, 1 prepare the "
                                "filing, 2 at 100,000: file with the provincial CAC", value=LEVEL_RANK[filing.level])
        yield GaugeMetricFamily("appliance_store_revision", "Current revision of the biometric store", value=revision)
        active = [d for d in devices if not d.revoked]
        yield GaugeMetricFamily("appliance_devices", "Provisioned, not revoked door devices", value=len(active))
        yield GaugeMetricFamily("appliance_devices_online", "Devices heard of within two digest periods",
                                value=sum(d.online for d in active))
        yield GaugeMetricFamily("appliance_sync_lag_revisions",
                                "Largest current revision minus acknowledged revision over active devices",
                                value=max((d.lag for d in active), default=0))


class ApiMetrics:
    """The application's registry and its traffic instruments."""

    def __init__(self, services: Services) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("appliance_api_requests", "API and console requests",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("appliance_api_request_seconds", "Time to answer a request", ["route"],
                                 buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.refusals = Counter("appliance_api_refusals", "Requests refused (authentication, role, limits, input)",
                                ["status"], registry=self.registry)
        self.registry.register(SiteCollector(services))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        if not route.startswith(STREAMING_PREFIX):
            self.latency.labels(route).observe(seconds)
        if status in REFUSAL_STATUSES:
            self.refusals.labels(str(status)).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware timing every HTTP request and counting it by its route template."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe(route, scope["method"], status, time.perf_counter() - started)
