"""Schedule and leader figures for /metrics, read from Redis at scrape time (so every
replica reports the same runs and lag; only ``gridq_hub_leader`` is per replica)."""

from __future__ import annotations

from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


def schedule_families(schedules: list[dict[str, Any]], leading: bool) -> list[Metric]:
    """``schedules``: ``store.schedules.list()``."""
    runs = CounterMetricFamily(
        "gridq_schedule_runs",
        "Jobs a schedule pushed (ticks and runs now)",
        labels=["schedule"],
    )
    lag = GaugeMetricFamily(
        "gridq_schedule_lag_seconds",
        "Seconds between a schedule's last tick (its time plus jitter) and its push",
        labels=["schedule"],
    )
    for s in schedules:
        runs.add_metric([s["name"]], s["runs"])
        if s["lag"] is not None:
            lag.add_metric([s["name"]], s["lag"])
    leader = GaugeMetricFamily(
        "gridq_hub_leader", "1 on the hub replica that runs periodic work and schedule ticks"
    )
    leader.add_metric([], 1 if leading else 0)
    return [runs, lag, leader]
