"""Sessions continue across writer restarts and collectors: the store is the source of truth."""

from __future__ import annotations

import datetime as dt

from ingest.event import Event
from ingest.sessions import Sessionizer
from ingest.writer import insert_events
from store.base import Store

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
