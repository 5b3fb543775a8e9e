"""Sessions continue across writer restarts and collectors: the store is the source of truth."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ingest.batch import to_arrow
from ingest.event import Event
from ingest.sessions import Sessionizer, new_session_id, new_session_ids, site_key
from ingest.writer import insert_events
from store.base import Store
from store.columns import VISIT_ATTRIBUTES

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)


def hit(minutes: float, visitor: int = 42, **attrs: str) -> Event:
    return Event(
        site_id="example.com",
        timestamp=T0 + dt.timedelta(minutes=minutes),
        name="pageview",
        visitor_id=visitor,
        pathname=f"/m{minutes}",
        **attrs,  # type: ignore[arg-type]
    )


def sessions_of(store: Store) -> list[dict[str, object]]:
    return store.query(
        "SELECT session_id, sum(events) AS events, any(referrer_source) AS source "
        "FROM sessions GROUP BY session_id ORDER BY min(start)"
    ).dicts()


def test_a_fresh_sessionizer_continues_a_session_found_in_the_store(store: Store) -> None:
    first = hit(0, referrer_source="Google", channel="Organic Search", browser="Firefox")
    insert_events(store, [first], Sessionizer(), token="a")
    # A restarted writer, or another collector, with an empty cache.
    later = hit(10, referrer_source="Bing", channel="Organic Search", browser="Chrome")
    insert_events(store, [later], Sessionizer(), token="b")
    assert later.session_id == first.session_id
    assert later.referrer_source == "Google" and later.browser == "Firefox"
    assert [s["events"] for s in sessions_of(store)] == [2]


def test_a_session_idle_past_the_timeout_is_not_continued(store: Store) -> None:
    first = hit(0)
    insert_events(store, [first], Sessionizer(), token="a")
    later = hit(45)
    insert_events(store, [later], Sessionizer(), token="b")
    assert later.session_id != first.session_id
    assert len(sessions_of(store)) == 2


def test_a_stale_cache_defers_to_a_newer_session_in_the_store(store: Store) -> None:
    a, b = Sessionizer(), Sessionizer()
    insert_events(store, [hit(0, referrer_source="Google")], a, token="a1")
    insert_events(store, [hit(20)], b, token="b1")  # collector B extends the session
    late = hit(40)  # 40 min after A last saw it, 20 after B did
    insert_events(store, [late], a, token="a2")
    assert len(sessions_of(store)) == 1
    assert late.referrer_source == "Google"


def test_visitors_are_kept_apart_and_a_batch_is_sessionized_in_time_order(store: Store) -> None:
    batch = [hit(5, visitor=1), hit(0, visitor=1, referrer_source="DuckDuckGo"), hit(1, visitor=2)]
    insert_events(store, batch, Sessionizer(), token="x")
    assert batch[0].session_id == batch[1].session_id != batch[2].session_id
    assert batch[0].referrer_source == "DuckDuckGo"  # from the visitor's first event


def test_a_visitor_of_two_sites_continues_each_sites_own_session(store: Store) -> None:
    a, b = hit(0, referrer_source="Google"), hit(1, referrer_source="Bing")
    b.site_id = "other.example"
    insert_events(store, [a, b], Sessionizer(), token="a")
    later_a, later_b = hit(10), hit(11)
    later_b.site_id = "other.example"
    insert_events(store, [later_b, later_a], Sessionizer(), token="b")  # a restarted writer
    assert later_a.session_id == a.session_id != later_b.session_id == b.session_id
    assert (later_a.referrer_source, later_b.referrer_source) == ("Google", "Bing")


def test_a_trusted_cache_looks_up_what_it_expired(store: Store) -> None:
    # The only writer of the store trusts its cache, until it forgets sessions (expiry): an
    # event that arrives late (a spool backlog) must still find its session in the store.
    cache = Sessionizer()
    cache.trust_cache(0)
    first = hit(0, referrer_source="Google")
    insert_events(store, [first], cache, token="a")
    cache.expire(T0 + dt.timedelta(hours=2))
    assert len(cache) == 0
    late = hit(10)
    insert_events(store, [late], cache, token="b")
    assert late.session_id == first.session_id and late.referrer_source == "Google"


SITES = st.sampled_from(["example.com", "other.example"])
SOURCES = st.sampled_from(["Google", "Bing", ""])

# One event: site, visitor, which of its ids it carries and when (seconds), a visit attribute.
# Midnight is at 3,600 s: before it a visitor has yesterday's id (its number + 100), after it
# today's, with yesterday's as `prev` just after midnight (kind 2) or not (kind 0, which may
# also stand for an unrelated visitor before midnight).
EVENTS = st.one_of(
    st.tuples(SITES, st.integers(1, 4), st.just(0), st.integers(0, 7200), SOURCES),
    st.tuples(SITES, st.integers(1, 4), st.just(1), st.integers(0, 3599), SOURCES),
    st.tuples(SITES, st.integers(1, 4), st.just(2), st.integers(3600, 7200), SOURCES),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(EVENTS, max_size=30), min_size=1, max_size=5))
# A visit carried over midnight within one batch, every session one event long.
@example(
    [
        [
            ("example.com", 1, 0, 0, "Google"),
            ("other.example", 1, 1, 1801, "Google"),
            ("other.example", 1, 2, 3600, "Bing"),
        ]
    ]
)
# A visit continued over three batches, each within the timeout of the one before only.
@example(
    [
        [("example.com", 1, 0, 0, "")],
        [("example.com", 1, 0, 1200, "")],
        [("example.com", 1, 0, 2700, "")],
    ]
)
def test_batches_assigned_as_tables_match_event_by_event(
    batches: list[list[tuple[str, int, int, int, str]]],
) -> None:
    # The writer's vectorised assignment against the per-event rules (`assign`), over batches
    # that share a cache, arrive out of order (a late batch) and span midnight.
    by_event, by_table = Sessionizer(), Sessionizer()
    number = 0
    for batch in batches:
        events, prevs = [], []
        for site, visitor, kind, seconds, source in batch:
            number += 1
            events.append(
                Event(
                    site_id=site,
                    timestamp=T0 + dt.timedelta(seconds=seconds, milliseconds=number % 7),
                    name="pageview",
                    visitor_id=visitor + 100 if kind == 1 else visitor,
                    pathname=f"/{number}",
                    referrer_source=source,
                )
            )
            prevs.append(visitor + 100 if kind == 2 else 0)
        # In several chunks, as the writer's columnar decoder makes them.
        whole = to_arrow(events)
        table = by_table.assign_table(
            pa.Table.from_batches(whole.to_batches(max_chunksize=7), whole.schema), prevs
        )
        for i in sorted(range(len(events)), key=lambda i: events[i].timestamp):
            by_event.assign(events[i], prevs[i])
        expected = {e.pathname: e for e in events}
        for row in table.to_pylist():
            event = expected.pop(row["pathname"])
            assert (row["session_id"], row["visitor_id"]) == (event.session_id, event.visitor_id)
            assert [row[a] for a in VISIT_ATTRIBUTES] == [
                getattr(event, a) for a in VISIT_ATTRIBUTES
            ]
        assert not expected


@given(
    st.sampled_from(["example.com", "a.example", ""]),
    st.integers(0, (1 << 64) - 1),
    st.integers(0, 1 << 45),
)
def test_session_ids_of_a_batch_are_those_of_single_events(
    site: str, visitor: int, start: int
) -> None:
    batch = new_session_ids(
        np.array([site_key(site)], dtype=np.uint64),
        np.array([visitor], dtype=np.uint64),
        np.array([start], dtype=np.int64),
    )
    assert int(batch[0]) == new_session_id(site, visitor, start) < 1 << 63
