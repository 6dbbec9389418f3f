"""Prometheus metrics, with prometheus_client.

Two kinds, both under the `digest_` prefix:

- what this process did, counted as it happens: deliveries by outcome, SMTP replies by class, bounces, ingest
  runs and items per source, subscriptions, confirmations, unsubscribes, erasures, web requests by route and
  status; and histograms of SMTP transaction, planning batch, ingest and web request times. A scrape of the web
  app shows its own; a scrape of the worker (``metrics_port``) shows the worker's jobs.
- the store's figures, read at scrape time (digest.store.figures): digests by state and ever sent, waiting and
  the oldest's age, subscribers by status and due, the leader and its lease, each job's last success and
  failures in a row, each source's failures. Every host and process answers the same, and nothing is lost when a
  process exits: the digests sent by `digest send --processes N` (forked senders on any host, each a short-lived
  process nobody scrapes) are counted exactly by ``digest_digests_sent_total``. That is why prometheus_client's
  multiprocess mode is not used: it adds up the processes of one host only, through files on disk that a
  process killed with -9 leaves half written, and cannot see another host's senders; the store sees all.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from digest import clock, logs

# Created outside any registry: each server (the web app, the worker's metrics port) registers them in its own,
# beside its store's figures.
DELIVERIES = Counter(
    "digest_deliveries",
    "Digests this process tried to send, by relay (scheme, host and port; outbox) and outcome",
    ["relay", "outcome"],
    registry=None,
)
PLANNED = Counter("digest_digests_planned", "Digests this process planned", registry=None)
SMTP_REPLIES = Counter(
    "digest_smtp_replies", "SMTP answers to a message, by class (2xx, 4xx, 5xx)", ["class"], registry=None
)
BOUNCES = Counter(
    "digest_bounces",
    "Bounces, hard or soft, by reason (docs/bounces.md), at send (smtp) or from a report (dsn)",
    ["kind", "reason", "via"],
    registry=None,
)
COMPLAINTS = Counter("digest_complaints", "Spam complaints (ARF) matched to a digest of ours", registry=None)
INGEST_RUNS = Counter("digest_ingest_runs", "Source reads, by source and outcome", ["source", "outcome"], registry=None)
INGEST_ITEMS = Counter(
    "digest_ingest_items", "Items read, by source and what became of them", ["source", "result"], registry=None
)
SUBSCRIPTIONS = Counter("digest_subscription_requests", "Subscription requests", ["via"], registry=None)
CONFIRMATIONS = Counter("digest_confirmations", "Subscriptions confirmed", registry=None)
UNSUBSCRIBES = Counter("digest_unsubscribes", "Unsubscribes, by way (one_click, page, cli)", ["via"], registry=None)
ERASURES = Counter("digest_erasures", "Subscribers erased at their request", registry=None)
WEB_REQUESTS = Counter("digest_web_requests", "Web requests, by route and status", ["route", "status"], registry=None)

SMTP_SECONDS = Histogram(
    "digest_smtp_transaction_seconds",
    "Time to hand one message to the SMTP server",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None,
)
PLAN_BATCH_SECONDS = Histogram(
    "digest_plan_batch_seconds",
    "Time to plan one batch of subscribers",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=None,
)
INGEST_SECONDS = Histogram(
    "digest_ingest_seconds",
    "Time to read and store one source",
    ["source"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=None,
)
WEB_SECONDS = Histogram(
    "digest_web_request_seconds",
    "Time to answer a web request, by route",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=None,
)

PROCESS_METRICS = (
    DELIVERIES,
    PLANNED,
    SMTP_REPLIES,
    BOUNCES,
    COMPLAINTS,
    INGEST_RUNS,
    INGEST_ITEMS,
    SUBSCRIPTIONS,
    CONFIRMATIONS,
    UNSUBSCRIBES,
    ERASURES,
    WEB_REQUESTS,
    SMTP_SECONDS,
    PLAN_BATCH_SECONDS,
    INGEST_SECONDS,
    WEB_SECONDS,
)

events = logs.EventLog("digest.metrics")


def reply_class(code: int | None) -> str:
    """``2xx``, ``4xx`` or ``5xx`` (``none`` when the server answered nothing: a dropped connection)."""
    return f"{code // 100}xx" if code and 200 <= code < 600 else "none"


def _timestamp(value: datetime | None) -> float:
    return value.timestamp() if value else 0.0


class StoreFigures(Collector):
    """The store's figures at each scrape (digest.store.figures), one short read-only transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> Iterable[Metric]:
        return []  # read at scrape time only: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        from digest.store.figures import figures

        now = clock.now()
        up = GaugeMetricFamily("digest_store_up", "Whether the store answered this scrape")
        try:
            with self.engine.connect() as connection:
                found = figures(connection, now)
        except SQLAlchemyError as e:
            events("metrics.store_unavailable", 30, error=type(e).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        digests = GaugeMetricFamily("digest_digests", "Digests in the store, by state", labels=["state"])
        for state, count in sorted(found.digests.items()):
            digests.add_metric([state], count)
        yield digests
        sent = CounterMetricFamily(
            "digest_digests_sent", "Digests ever sent, by every process and host (erased subscribers' included)"
        )
        sent.add_metric([], found.sent_ever)
        yield sent
        yield GaugeMetricFamily(
            "digest_digests_waiting", "Digests planned, deferred or being sent", value=found.waiting
        )
        age = (now - found.oldest_waiting).total_seconds() if found.oldest_waiting else 0.0
        yield GaugeMetricFamily(
            "digest_digests_oldest_waiting_seconds", "Age of the oldest digest waiting (0: none)", value=age
        )
        subscribers = GaugeMetricFamily("digest_subscribers", "Subscribers, by status", labels=["status"])
        for status, count in sorted(found.subscribers.items()):
            subscribers.add_metric([status], count)
        yield subscribers
        yield GaugeMetricFamily("digest_subscribers_due", "Subscribers whose digest is due now", value=found.due)
        leader = GaugeMetricFamily("digest_leader", "1 for the worker holding a live lease", labels=["holder"])
        if found.leader:
            leader.add_metric([found.leader], 1)
        yield leader
        yield GaugeMetricFamily(
            "digest_leader_up", "Whether a worker holds a live lease", value=int(bool(found.leader))
        )
        renewed = (now - found.lease_renewed).total_seconds() if found.lease_renewed else 0.0
        yield GaugeMetricFamily(
            "digest_leader_lease_age_seconds", "Seconds since the leader last renewed its lease", value=renewed
        )
        success = GaugeMetricFamily(
            "digest_job_last_success_timestamp_seconds", "When each job last ran well (0: never)", labels=["job_id"]
        )
        failing = GaugeMetricFamily(
            "digest_job_failures_in_a_row", "Runs of each job that failed since its last success", labels=["job_id"]
        )
        for job in found.jobs:
            success.add_metric([job.job], _timestamp(job.last_success))
            failing.add_metric([job.job], job.failures_in_a_row)
        yield success
        yield failing
        from digest.text.links import redact_url

        failures = GaugeMetricFamily(
            "digest_source_failures_in_a_row", "Failed reads of each source since its last success", labels=["source"]
        )
        last_ok = GaugeMetricFamily(
            "digest_source_last_success_timestamp_seconds", "When each source was last read well", labels=["source"]
        )
        for source in found.sources:
            failures.add_metric([redact_url(source.source)], source.failures)
            last_ok.add_metric([redact_url(source.source)], _timestamp(source.last_ok))
        yield failures
        yield last_ok
        yield GaugeMetricFamily(
            "digest_sources_failing", "Sources whose last read failed", value=sum(s.failures > 0 for s in found.sources)
        )
        yield GaugeMetricFamily(
            "digest_webhook_endpoints_disabled",
            "Webhook endpoints disabled after three days of failures",
            value=found.webhooks_disabled,
        )
        yield GaugeMetricFamily(
            "digest_webhook_deliveries_pending",
            "Webhook deliveries waiting for a (next) try",
            value=found.webhooks_pending,
        )
        relay_up = GaugeMetricFamily(
            "digest_relay_up", "1 when the senders last reached this SMTP relay, 0 when it was down", labels=["relay"]
        )
        for relay, up_now, _, _ in found.relays:
            relay_up.add_metric([relay], 1 if up_now else 0)
        yield relay_up


def registry_for(engine: Engine) -> CollectorRegistry:
    """A registry of this process's metrics and the store's figures."""
    from prometheus_client import ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    for metric in PROCESS_METRICS:
        registry.register(metric)
    registry.register(StoreFigures(engine))
    ProcessCollector(registry=registry)
    return registry


def authorized(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries ``Bearer <token>`` (the scheme in any case, RFC 9110 §11.1; the
    token compared in constant time)."""
    if not token or not header:
        return False
    scheme, _, credentials = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode())


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The registry in the format the scraper asked for (Prometheus text, or OpenMetrics)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
