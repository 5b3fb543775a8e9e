"""The ingest benchmark's own arithmetic: how it tells stalls from steady queueing."""

from __future__ import annotations

from bench.ingest import _tail_in_bursts


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
