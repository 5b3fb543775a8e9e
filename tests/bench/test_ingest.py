"""The ingest benchmark's own arithmetic: how it tells stalls from steady queueing, and how it
reads the writer's backlog from `/metrics`."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from bench.ingest import (
    BacklogWatch,
    _tail_in_bursts,
    median_round,
    parse_metrics,
    profile,
    report,
)


def test_a_tail_from_one_stall_is_all_in_the_busiest_windows() -> None:
    dues = [i / 1000 for i in range(10_000)]  # 10 s at 1,000/s
    latencies = [0.050 if 4.0 <= d < 4.1 else 0.002 for d in dues]  # one 100 ms stall
    assert _tail_in_bursts(dues, latencies) == {
        "tail_share_in_10_busiest_100ms": 1.0,
        "tail_windows": 1,
    }


def test_a_steady_tail_is_spread_over_many_windows() -> None:
    dues = [i / 1000 for i in range(10_000)]
    latencies = [0.020 if i % 100 == 0 else 0.002 for i in range(10_000)]  # every 100th
    result = _tail_in_bursts(dues, latencies)
    assert result["tail_windows"] == 100
    assert result["tail_share_in_10_busiest_100ms"] == 0.1


def test_no_beacons_no_tail() -> None:
    assert _tail_in_bursts([], []) == {}


def test_metrics_are_summed_over_their_labelled_series() -> None:
    text = "\n".join(
        [
            "# HELP firstparty_events_dropped_total Events dropped.",
            "# TYPE firstparty_events_dropped_total counter",
            'firstparty_events_dropped_total{reason="bot"} 3',
            'firstparty_events_dropped_total{reason="spam"} 2',
            "firstparty_oldest_unflushed_event_age_seconds 1.25",
            "",
        ]
    )
    assert parse_metrics(text) == {
        "firstparty_events_dropped_total": 5.0,
        "firstparty_oldest_unflushed_event_age_seconds": 1.25,
    }


def server_round(per_second: float, p99: float = 5.0) -> dict[str, Any]:
    return {
        "saturation": {"per_second": per_second, "p50_ms": 1.0, "p99_ms": 2.0},
        "rss_mb_before": [80.0],
        "rss_mb_after": [81.0],
        "stored_rows": 1000,
        "fixed_rate": {"per_second": 5000.0, "p50_ms": 1.0, "p99_ms": p99},
    }


def test_the_report_shows_the_median_round_and_every_round() -> None:
    rounds = {
        "bare_1": [server_round(12_000), server_round(20_000), server_round(19_000)],
        "full_1": [server_round(8_000), server_round(10_000), server_round(11_000)],
        "bare_2": [server_round(30_000), server_round(31_000), server_round(29_000)],
        "full_2": [
            server_round(14_000, 9.0),
            server_round(13_000, 30.0),
            server_round(15_000, 7.0),
        ],
    }
    results: dict[str, Any] = {
        "date": "2026-12-06T04:00:00+00:00",
        "cpus": 2,
        "load_average_at_start": 0.1,
        "seconds": 5.0,
        "connections": 128,
        "rounds": 3,
        "fsync": {"p50_ms": 0.1, "p99_ms": 0.3},
        "writer": {"rows_per_second": 100_000.0, "rows": 1_000_000, "batches": 10},
        "writer_visits": {"rows_per_second": 160_000.0},
    }
    for key, entries in rounds.items():
        results[f"{key}_rounds"] = entries
        results[key] = median_round(entries)
    text = report(results)
    assert "| firstparty (full) | 1 | 10000 |" in text  # the median, not the first round
    assert "- full / bare, 1 worker: 0.53 (target >= 0.6)" in text  # 10,000 / 19,000
    assert "- full / bare per round, 1 worker: 0.67, 0.50, 0.58" in text
    assert "- p99 at the fixed rate per round (sorted): 7.00, 9.00, 30.00 ms" in text


class Metrics(http.server.BaseHTTPRequestHandler):
    """A `/metrics` whose backlog grows by one second and 100 stored events per scrape."""

    scrapes = 0

    def do_GET(self) -> None:
        Metrics.scrapes += 1
        n = Metrics.scrapes
        body = (
            f"firstparty_events_accepted_total 1000\n"
            f"firstparty_writer_rows_total {100 * n}\n"
            f"firstparty_oldest_unflushed_event_age_seconds {float(n)}\n"
            f"firstparty_writer_catching_up {1 if n % 2 else 0}\n"
        ).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_port() -> Iterator[int]:
    Metrics.scrapes = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_the_backlog_watch_keeps_the_oldest_age_and_the_last_counts(metrics_port: int) -> None:
    watch = BacklogWatch(metrics_port, interval=0.01)
    watch.start()
    while Metrics.scrapes < 3:
        threading.Event().wait(0.01)
    result = watch.result()  # one more scrape when stopped: the counts when the load ended
    n = Metrics.scrapes
    assert result["max_age_s"] == float(n)
    assert result["stored_at_end"] == 100 * n
    assert result["accepted_at_end"] == 1000
    assert result["catching_up_share"] == (n + 1) // 2 / n


def test_the_profile_times_the_per_beacon_work_of_the_real_pipeline() -> None:
    text = profile(rounds=1)
    first = text.splitlines()[0]
    found = re.fullmatch(
        r"per beacon, best of 1 passes over 4,000 beacons: body and Hit ([\d.]+) us, "
        r"pipeline \+ encode ([\d.]+) us, together ([\d.]+) us",
        first,
    )
    assert found is not None, first
    parse_us, pipeline_us, together = (float(g) for g in found.groups())
    assert parse_us > 0 and pipeline_us > 0
    assert abs(parse_us + pipeline_us - together) < 0.11
    assert "ingest/pipeline.py" in text  # the profile of the steps follows
