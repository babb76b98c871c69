"""``GET /metrics``: the list's and the sends' figures in Prometheus's text format
(prometheus-client), read from the database at each scrape, so every ``digest serve``
process, and every worker that sends, shows the same numbers.

Who may read it: with ``metrics.token`` set, only a request that bears it
(``Authorization: Bearer TOKEN``); without it, only a request from this machine that did
not come through a proxy (a proxy on this machine would make every visitor look local).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from digest.web.site import Site

__all__ = ["MetricsPage"]

# Headers a proxy adds: a request that has one came from elsewhere, whatever its address.
_PROXIED = ("forwarded", "x-forwarded-for", "x-real-ip")


class _Figures:
    """A prometheus-client collector over the store's figures."""

    def __init__(self, site: Site) -> None:
        self._site = site

    def collect(self) -> Iterator[Metric]:
        store = self._site.store
        figures = store.figures.snapshot(now=self._site.clock())
        deliveries = CounterMetricFamily(
            "digest_deliveries",
            "Copies of every issue sent or failed for good, by status.",
            labels=["status"],
        )
        deliveries.add_metric(["sent"], figures.sent)
        deliveries.add_metric(["failed"], figures.failed)
        yield deliveries
        yield GaugeMetricFamily(
            "digest_deliveries_pending",
            "Copies still to send (or to try again).",
            value=figures.pending,
        )
        yield CounterMetricFamily(
            "digest_delivery_retries",
            "Attempts made beyond each copy's first (transient failures tried again).",
            value=figures.retries,
        )
        yield GaugeMetricFamily(
            "digest_send_rate_per_second",
            "Copies sent per second over the last minute.",
            value=figures.sent_last_minute / 60,
        )
        returns = CounterMetricFamily(
            "digest_returns",
            "What came back about an address after a send (bounces, complaints, "
            "unsubscribe mails), by kind.",
            labels=["kind"],
        )
        for kind, count in figures.returns.items():
            returns.add_metric([kind.value], count)
        yield returns
        listed = GaugeMetricFamily(
            "digest_subscribers", "Addresses on the list, by status.", labels=["status"]
        )
        for status, count in figures.subscribers.items():
            listed.add_metric([status.value], count)
        yield listed
        if figures.last_sent_at is not None:
            yield GaugeMetricFamily(
                "digest_last_send_timestamp_seconds",
                "When the last copy was sent (Unix time).",
                value=figures.last_sent_at.timestamp(),
            )
        yield GaugeMetricFamily(
            "digest_scheduler_up",
            "1 while a digest schedule runs on this database, else 0.",
            value=1 if store.scheduler_running() else 0,
        )


class MetricsPage:
    """The ``/metrics`` route."""

    def __init__(self, site: Site) -> None:
        self.site = site
        token = site.settings.metrics.token
        self._token = token.get_secret_value() if token is not None else None
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Figures(site))

    def routes(self) -> list[Route]:
        return [Route("/metrics", self.metrics, methods=["GET"])]

    async def metrics(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        body: bytes = await run_in_threadpool(generate_latest, self._registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    def _refusal(self, request: Request) -> Response | None:
        if self._token is not None:
            given = request.headers.get("authorization", "")
            if hmac.compare_digest(given.encode(), f"Bearer {self._token}".encode()):
                return None
            return PlainTextResponse(
                "metrics.token is set: send it as Authorization: Bearer TOKEN\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="digest metrics"'},
            )
        host = request.client.host if request.client is not None else ""
        if _loopback(host) and not any(name in request.headers for name in _PROXIED):
            return None
        return PlainTextResponse(
            "/metrics answers only this machine; set metrics.token to scrape it from elsewhere\n",
            status_code=403,
        )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
