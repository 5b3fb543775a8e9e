"""The ingest benchmark's own arithmetic: how it tells stalls from steady queueing, and how it
reads the writer's backlog from `/metrics`."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from bench.ingest import BacklogWatch, _tail_in_bursts, parse_metrics


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
