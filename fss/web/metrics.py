"""GET /metrics: Prometheus text format, read from the store and the broker at scrape time.

Nothing is counted inside the process: a custom collector runs a few aggregate queries per
scrape, so every `fss web` replica reports the same numbers and a restart loses nothing.
Each app gets its own CollectorRegistry (none is global, nothing is created at import).

Metrics (see docs/api.md):
- fss_runs_total{job_name,status}: Success from the groups' run_count (monotonic), Fail from
  the failed tasks the store holds (retention prunes them after 7 days by default).
- fss_dispatch_lateness_seconds, fss_run_duration_seconds: histograms over finished tasks
  planned within the last hour (a sliding window; use histogram_quantile without rate()).
- fss_tasks{status}: None, Scheduler, Working, Fail are the tasks the store holds; Success is
  the successful runs ever recorded (the groups' run_count, as /api/v1/overview shows it):
  counting ~all rows of the task table on every scrape is what made /metrics slow.
- fss_groups{enabled}, fss_clients_online, fss_scheduler_nodes_alive,
  fss_event_queue_depth, fss_client_queue_depth{client_id}, fss_broker_up.
- fss_alerts_total{rule}: alerts raised (one per open/resolve cycle: repeats while open count
  up the alert, not this), counted from the alert rows the store holds (pruning old resolved
  alerts lowers it); fss_alerts_open{rule}: open now.
- fss_alert_deliveries_total{target,outcome}: delivery attempts by target name and outcome
  (sent | failed), counted from alert_attempt.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from fss.naming import EVENTS_QUEUE, client_queue
from fss.store import alert_console, views
from fss.store import metrics as store_metrics
from fss.web.auth import Viewer
from fss.web.context import Context, WebContext

router = APIRouter()

# Histograms look at tasks planned within this window.
HISTOGRAM_WINDOW = timedelta(hours=1)
REGISTRY_ATTRIBUTE = "metrics_registry"


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics (text format 0.0.4) from the store and the broker",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(request: Request, context: Context, _: Viewer) -> Response:
    # A sync route: FastAPI runs it in the thread pool, so the queries do not block the loop.
    return Response(generate_latest(registry_of(request, context)), media_type=CONTENT_TYPE_LATEST)


def registry_of(request: Request, context: WebContext) -> CollectorRegistry:
    """The app's own registry, made on the first scrape."""
    registry: CollectorRegistry | None = getattr(request.app.state, REGISTRY_ATTRIBUTE, None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StoreCollector(context))
        setattr(request.app.state, REGISTRY_ATTRIBUTE, registry)
    return registry


class StoreCollector(Collector):
    def __init__(self, context: WebContext) -> None:
        self._context = context

    def collect(self) -> Iterator[Metric]:
        context = self._context
        now = context.clock.now()
        alive_since = now - timedelta(seconds=context.settings.client_timeout_s)
        planned_since = now - HISTOGRAM_WINDOW
        with context.engine.connect() as conn:
            # The same queries as /api/v1/overview, so the page and the metrics agree.
            statuses = views.tasks_by_status(conn)
            online = views.count_live_clients(conn, alive_since)
            groups = store_metrics.groups_by_enabled(conn)
            successes = store_metrics.successes_by_job(conn)
            failures = store_metrics.failures_by_job(conn)
            client_ids = store_metrics.client_ids(conn)
            nodes = store_metrics.nodes_alive(conn, alive_since)
            lateness, duration = store_metrics.finished_histograms(conn, planned_since)
            alerts = alert_console.alert_counts(conn)
            deliveries = alert_console.delivery_counts(conn)
        depths = context.queue_depths.depths(
            [EVENTS_QUEUE, *(client_queue(c) for c in client_ids)]
        )

        yield runs_total(successes, failures)
        yield histogram(
            "fss_dispatch_lateness_seconds",
            "Seconds from planned start to dispatch, finished tasks planned in the last hour.",
            lateness,
        )
        yield histogram(
            "fss_run_duration_seconds",
            "Run time of finished tasks planned in the last hour.",
            duration,
        )
        tasks = GaugeMetricFamily(
            "fss_tasks",
            "Tasks held in the store by status; Success: successful runs ever (run_count).",
            labels=["status"],
        )
        for status, number in statuses.items():
            tasks.add_metric([status], number)
        yield tasks
        enabled = GaugeMetricFamily("fss_groups", "Task groups.", labels=["enabled"])
        for flag, number in groups.items():
            enabled.add_metric(["true" if flag else "false"], number)
        yield enabled
        yield GaugeMetricFamily(
            "fss_clients_online", "Clients with a heartbeat within client_timeout_s.",
            value=online,
        )
        yield GaugeMetricFamily(
            "fss_scheduler_nodes_alive", "Scheduler nodes with a heartbeat within "
            "client_timeout_s.", value=nodes,
        )
        yield from queue_metrics(depths, client_ids)
        yield from alert_metrics(alerts, deliveries)


def runs_total(successes: dict[str, int], failures: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(
        "fss_runs", "Finished runs by job name and status.", labels=["job_name", "status"]
    )
    for job in sorted(set(successes) | set(failures)):
        family.add_metric([job, "Success"], successes.get(job, 0))
        family.add_metric([job, "Fail"], failures.get(job, 0))
    return family


def alert_metrics(
    alerts: dict[str, tuple[int, int]], deliveries: dict[tuple[str, str], int]
) -> Iterator[Metric]:
    raised = CounterMetricFamily("fss_alerts", "Alerts raised, by rule.", labels=["rule"])
    opened = GaugeMetricFamily("fss_alerts_open", "Alerts open now, by rule.", labels=["rule"])
    for rule in sorted(alerts):
        total, open_now = alerts[rule]
        raised.add_metric([rule], total)
        opened.add_metric([rule], open_now)
    yield raised
    yield opened
    attempts = CounterMetricFamily(
        "fss_alert_deliveries", "Alert delivery attempts by target and outcome (sent, failed).",
        labels=["target", "outcome"],
    )
    for (target, outcome), number in sorted(deliveries.items()):
        attempts.add_metric([target, outcome], number)
    yield attempts


def histogram(name: str, documentation: str, data: store_metrics.Histogram) -> Metric:
    buckets: list[tuple[str, float]] = [
        (format_bound(bound), count) for bound, count in zip(data.bounds, data.buckets, strict=True)
    ]
    buckets.append(("+Inf", data.count))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=data.total)


def format_bound(bound: float) -> str:
    return repr(float(bound))


def queue_metrics(depths: dict[str, int | None], client_ids: Iterable[str]) -> Iterator[Metric]:
    """Queue depths; a broker that cannot be reached gives fss_broker_up 0 and no depths."""
    event_depth = depths.get(EVENTS_QUEUE)
    yield GaugeMetricFamily(
        "fss_broker_up", "1 when the broker answered; 0 when it could not be reached (a "
        "failed attempt is not retried for a few seconds, so the scrape does not wait).",
        value=0 if event_depth is None else 1,
    )
    event = GaugeMetricFamily("fss_event_queue_depth", "Event messages waiting for a recorder.")
    if event_depth is not None:
        event.add_metric([], event_depth)
    yield event
    per_client = GaugeMetricFamily(
        "fss_client_queue_depth", "Orders waiting in each registered client's queue.",
        labels=["client_id"],
    )
    for client_id in client_ids:
        depth = depths.get(client_queue(client_id))
        if depth is not None:
            per_client.add_metric([client_id], depth)
    yield per_client
