"""The ``llm/status`` body: every process's scheduler, the window's aggregates, the store.

The store's ``losses`` are the writers' loss rows (``llm_store_losses``) of the retention window,
whatever ``window`` asks: a loss stays on the status card after the process that saw it exited.

Served by ``GET {api}/llm/status`` and pushed to websocket clients as ``llm.status`` (window 1h).
The shape is in docs/contracts/http-apis.md.
"""

from __future__ import annotations

import time
from typing import Any

from admin_flask.params import WINDOWS_MS
from admin_flask.serialize import iso, percentiles
from exporter import queries

SERIES_BUCKETS = 24
DEFAULT_RETENTION_DAYS = 7
DAY_MS = 86_400_000


def status_body(window: str, *, stale_after_s: float, retention_days: float | None) -> dict[str, Any]:
    """The status for ``window`` (``1h``, ``24h`` or ``7d``), as of now."""
    now = time.time_ns() // 1_000_000
    window_ms = WINDOWS_MS[window]
    snapshots = queries.scheduler_snapshots(int(stale_after_s * 1000), now, include_stale=True)
    aggregates = queries.status_aggregates(window_ms, now_ms=now)
    series = queries.status_series(window_ms, buckets=SERIES_BUCKETS, now_ms=now)
    summary = queries.store_summary()
    losses = queries.store_losses(now - round((retention_days or DEFAULT_RETENTION_DAYS) * DAY_MS))
    return {
        "now": iso(now),
        "window": window,
        "schedulers": [_scheduler(row, now) for row in snapshots],
        "aggregates": {
            "since": iso(aggregates["since_ms"]),
            "until": iso(aggregates["until_ms"]),
            "total": aggregates["total"],
            "ended": aggregates["ended"],
            "counts": aggregates["counts"],
            "error_rate": aggregates["error_rate"],
            "wait_ms": percentiles(aggregates["wait_ms"]),
            "first_token_ms": percentiles(aggregates["first_token_ms"]),
            "duration_ms": percentiles(aggregates["duration_ms"]),
            "tokens": aggregates["tokens"],
            "retries": aggregates["retries"],
            "series": [
                {
                    "start": iso(bucket["start_ms"]),
                    "calls": bucket["calls"],
                    "failed": bucket["failed"],
                    "p95_duration_ms": bucket["p95_duration_ms"],
                }
                for bucket in series
            ],
        },
        "store": {
            "engine": summary["engine"],
            "calls": summary["calls"],
            "oldest_call_at": iso(summary["oldest_call_ms"]),
            "retention_days": retention_days,
            "writers": _writers(snapshots),
            "losses": {
                "dropped_records": losses["dropped_records"],
                "dropped_calls": losses["dropped_calls"],
                "episodes": losses["episodes"],
                "files_replaced": losses["files_replaced"],
                "items": [_loss(row) for row in losses["items"]],
            },
        },
    }


def _scheduler(row: dict[str, Any], now: int) -> dict[str, Any]:
    min_interval = row.get("min_interval")
    return {
        "process": row["process"],
        "scheduler": row["scheduler"],
        "live": bool(row["live"]),
        "heartbeat_at": iso(row["heartbeat_at"]),
        "heartbeat_age_ms": max(0, now - row["heartbeat_at"]),
        "queue_depth": row["queue_depth"],
        "in_flight": row["in_flight"],
        "max_concurrency": row["max_concurrency"],
        "min_interval_ms": None if min_interval is None else round(min_interval * 1000),
        "max_queue": row["max_queue"],
        "dispatched": row["dispatched_total"],
        "last_dispatch_at": iso(row["last_dispatch_at"]),
        "oldest_wait_ms": row["oldest_wait_ms"],
        "waiting": [
            {
                "call_id": waiter.get("call_id"),
                "source": waiter.get("source"),
                "since": iso(waiter.get("since")),
            }
            for waiter in row.get("waiting") or ()
            if isinstance(waiter, dict)
        ],
        "store_dropped": row["store_dropped"],
        "store_last_error": row["store_last_error"],
    }


def _loss(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "process": row["process"],
        "kind": row["kind"],
        "started_at": iso(row["started_at"]),
        "ended_at": iso(row["ended_at"]),
        "records": row["records"],
        "calls": row["calls"],
        "reason": row["reason"],
    }


def _writers(snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per process: its writer's dropped records and last error (from its snapshot rows)."""
    writers: dict[str, dict[str, Any]] = {}
    for row in snapshots:  # newest heartbeat first
        writer = writers.setdefault(
            row["process"], {"process": row["process"], "dropped": 0, "last_error": None, "live": False}
        )
        writer["dropped"] = max(writer["dropped"], row["store_dropped"] or 0)
        writer["last_error"] = writer["last_error"] or row["store_last_error"]
        writer["live"] = writer["live"] or bool(row["live"])
    return list(writers.values())
