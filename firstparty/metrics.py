"""Metrics shared across processes, rendered in the Prometheus text format.

Every process (each HTTP worker, the writer) writes a small JSON snapshot of its own numbers to
`<data_dir>/metrics/<name>.json` about once a second; `/metrics`, served by whichever worker
gets the request, sums the counters of all snapshots and takes the gauges from the writer's.
A restarted worker writes under a new name, so counters never go backwards while the server
runs; the server clears the folder when it starts. Labels carry reasons and states only: no
IP address, user agent or identifier ever becomes a label.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WRITER = "writer"
# Seconds; chosen around the writer's cycle (0.1 s) and a healthy insert (10-500 ms).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (10, 100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000)


def metrics_dir(data_dir: Path) -> Path:
    return data_dir / "metrics"


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts, "sum": self.total, "count": self.count}


def write_snapshot(directory: Path, name: str, snapshot: Mapping[str, Any]) -> None:
    """Replace `<name>.json` atomically (no fsync: metrics need not survive a power cut)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{name}.json"
    tmp = directory / f".{name}.json.tmp"
    tmp.write_text(json.dumps({**snapshot, "updated_at": time.time()}))
    os.replace(tmp, target)


def read_snapshots(directory: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    try:
        paths = sorted(directory.glob("*.json"))
    except OSError:
        return out
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # replaced while we read it: the next scrape sees it
        if isinstance(data, dict):
            out[path.stem] = data
    return out


def clear(directory: Path) -> None:
    if directory.is_dir():
        for path in directory.glob("*.json"):
            path.unlink(missing_ok=True)


# name -> (type, help). Counters are summed over every snapshot.
COUNTERS = {
    "firstparty_events_accepted_total": "Events accepted and durably spooled (202).",
    "firstparty_events_dropped_total": "Well-formed events dropped on purpose, by reason.",
    "firstparty_redactions_total": (
        "Personal data redacted from paths, referrers, props and event names, by kind."
    ),
    "firstparty_spool_rejected_total": "Requests answered 503 because the spool reached its quota.",
    "firstparty_requests_unavailable_total": (
        "Requests answered 503 because a pipeline step failed (e.g. the store did not answer)."
    ),
    "firstparty_spool_fsyncs_total": "Spool fsyncs (group commits) by the HTTP workers.",
    "firstparty_writer_rows_total": "Events inserted into the store by the writer.",
    "firstparty_writer_batches_total": "Batches inserted into the store by the writer.",
    "firstparty_writer_insert_errors_total": "Failed insert attempts (retried with backoff).",
    "firstparty_spool_quarantined_bytes_total": "Corrupt spool bytes moved to quarantine.",
}
GAUGES = {
    "firstparty_spool_bytes": "Bytes in the spool (open and sealed segments).",
    "firstparty_spool_segments": "Segments in the spool.",
    "firstparty_oldest_unflushed_event_age_seconds": "Age of the oldest event not yet stored.",
    "firstparty_writer_healthy": "1 when the writer's last insert attempt succeeded.",
    "firstparty_writer_consecutive_errors": "Insert attempts failed in a row.",
    "firstparty_writer_catching_up": (
        "1 while a writer in the idle class that fell behind gets more CPU (engine priority idle)."
    ),
    "firstparty_workers": "HTTP worker processes reporting metrics recently.",
}
HISTOGRAMS = {
    "firstparty_writer_batch_rows": ("Rows per inserted batch.", SIZE_BUCKETS),
    "firstparty_writer_flush_seconds": ("Time to insert one batch.", LATENCY_BUCKETS),
}


def _label_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    parts = []
    for key, value in sorted(labels.items()):
        escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        parts.append(f'{key}="{escaped}"')
    return "{" + ",".join(parts) + "}"


def _number(value: float) -> str:
    return (
        repr(float(value))
        if isinstance(value, float) and not value.is_integer()
        else str(int(value))
    )


def render(snapshots: Mapping[str, Mapping[str, Any]], now: float | None = None) -> str:
    """Sum the snapshots into the Prometheus text exposition format (version 0.0.4)."""
    now = time.time() if now is None else now
    counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = {n: {} for n in COUNTERS}
    histograms: dict[str, dict[str, Any]] = {}
    for snap in snapshots.values():
        for name, series in snap.get("counters", {}).items():
            if name not in counters:
                continue
            for item in series:
                key = tuple(sorted(item.get("labels", {}).items()))
                counters[name][key] = counters[name].get(key, 0) + float(item["value"])
        for name, hist in snap.get("histograms", {}).items():
            if name not in HISTOGRAMS:
                continue
            into = histograms.setdefault(
                name, {"counts": [0] * len(HISTOGRAMS[name][1]), "sum": 0.0, "count": 0}
            )
            into["counts"] = [a + b for a, b in zip(into["counts"], hist["counts"], strict=True)]
            into["sum"] += hist["sum"]
            into["count"] += hist["count"]
    writer = snapshots.get(WRITER, {})
    gauges: dict[str, float] = {name: 0.0 for name in GAUGES}
    gauges.update({k: float(v) for k, v in writer.get("gauges", {}).items() if k in GAUGES})
    gauges["firstparty_workers"] = float(
        sum(
            1
            for name, snap in snapshots.items()
            if name != WRITER and now - float(snap.get("updated_at", 0)) < 5 and snap.get("alive")
        )
    )
    lines: list[str] = []
    for name, help_text in COUNTERS.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        series = counters[name] or {(): 0.0}
        for key, value in sorted(series.items()):
            lines.append(f"{name}{_label_text(dict(key))} {_number(value)}")
    for name, help_text in GAUGES.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines.append(f"{name} {_number(gauges[name])}")
    for name, (help_text, buckets) in HISTOGRAMS.items():
        hist = histograms.get(name, {"counts": [0] * len(buckets), "sum": 0.0, "count": 0})
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for bound, count in zip(buckets, hist["counts"], strict=True):
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {count}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {hist["count"]}')
        lines.append(f"{name}_sum {_number(hist['sum'])}")
        lines.append(f"{name}_count {hist['count']}")
    return "\n".join(lines) + "\n"


def counter(value: float, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"labels": dict(labels or {}), "value": value}


def labelled(name: str, values: Iterable[tuple[str, float]]) -> list[dict[str, Any]]:
    """Series of one counter labelled by `name` (e.g. reason)."""
    return [counter(value, {name: key}) for key, value in values]


def writer_health(snapshots: Mapping[str, Mapping[str, Any]], now: float | None = None) -> Any:
    """The writer's state for `/healthz`: (healthy, details)."""
    now = time.time() if now is None else now
    writer = snapshots.get(WRITER)
    if writer is None:
        return False, {"state": "unknown", "detail": "the writer has not reported yet"}
    age = now - float(writer.get("updated_at", 0))
    state = str(writer.get("state", "unknown"))
    details = {
        "state": state,
        "reported_seconds_ago": round(age, 1),
        **{k: v for k, v in writer.get("health", {}).items()},
    }
    if age > 10:
        return False, {**details, "state": "stalled", "detail": "the writer stopped reporting"}
    return state in ("ok", "idle"), details
