"""A small, hand-countable set of events (through the real writer path) for the query tests.

Two days, three visitors, four visits (see the numbers in EXPECTED, computed by hand):

- visitor 101, visit A on day 1 at 10:00 from google.com (BE, Firefox, Linux, Desktop):
  pageview `/`, engagement 30 s scroll 50 %, pageview `/pricing`, engagement 60 s scroll 80 %,
  custom event `Signup` (props plan=pro) at 10:02:30. Duration 150 s, not a bounce.
- visitor 102, visit B on day 1 at 11:00, direct (FR, Chrome, Windows, Desktop): pageview `/`.
  Bounce, 0 s.
- visitor 103, visit C on day 2 at 09:00 from news.ycombinator.com (DE, Safari, iOS, Mobile):
  pageview `/blog/post-1`, engagement 10 s scroll 100 %, pageview `/` at 09:05:01. 301 s.
- visitor 103, visit D on day 2 at 12:00 (after 30 idle minutes), direct: pageview `/pricing`.
  Bounce, 0 s.
"""

from __future__ import annotations

import datetime as dt

from firstparty.config import Config, parse
from ingest.event import Event
from ingest.sessions import Sessionizer
from ingest.writer import insert_events
from store.base import Store

SITE = "example.com"
# Relative to today, so raw-event TTLs never delete the fixture and no retention warning shows.
NOW = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
DAY1 = NOW.date() - dt.timedelta(days=3)
DAY2 = NOW.date() - dt.timedelta(days=2)
RANGE = [DAY1.isoformat(), DAY2.isoformat()]

CONFIG_TEXT = """
[[site]]
domain = "example.com"

[[site]]
domain = "shop.example.org"
hostnames = ["shop.example.org"]

[[goal]]
name = "Signup"
event = "Signup"

[[goal]]
name = "Visit pricing"
page = "/pricing"
"""


def config(min_visitors: int = 1, data_dir: str = "./data") -> Config:
    text = CONFIG_TEXT + f"\n[privacy]\nmin_visitors = {min_visitors}\n"
    text += f"\n[server]\ndata_dir = {data_dir!r}\n"
    return parse(text, env={})


def at(day: dt.date, hh: int, mm: int, ss: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=dt.UTC)


def _visit(**attrs: str) -> dict[str, str]:
    return attrs


GOOGLE = _visit(
    referrer="https://google.com/",
    referrer_source="google.com",
    channel="Organic Search",
    utm_source="newsletter",
    utm_medium="email",
    utm_campaign="spring",
    country_code="BE",
    region="BE-BRU",
    browser="Firefox",
    browser_version="132",
    os="Linux",
    os_version="",
    device="Desktop",
)
DIRECT_FR = _visit(
    channel="Direct",
    country_code="FR",
    region="FR-IDF",
    browser="Chrome",
    browser_version="131",
    os="Windows",
    os_version="10",
    device="Desktop",
)
HN = _visit(
    referrer="https://news.ycombinator.com/",
    referrer_source="news.ycombinator.com",
    channel="Referral",
    country_code="DE",
    region="DE-BE",
    browser="Safari",
    browser_version="18",
    os="iOS",
    os_version="18.1",
    device="Mobile",
)
DIRECT_DE = dict(HN, referrer="", referrer_source="", channel="Direct")


def event(
    visitor: int,
    when: dt.datetime,
    name: str,
    path: str,
    visit: dict[str, str],
    *,
    site: str = SITE,
    engagement_ms: int = 0,
    scroll: int = 255,
    props: dict[str, str] | None = None,
) -> Event:
    return Event(
        site_id=site,
        timestamp=when,
        name=name,
        visitor_id=visitor,
        hostname=site,
        pathname=path,
        interactive=0 if name == "engagement" else 1,
        engagement_ms=engagement_ms,
        scroll_depth=scroll,
        props=props or {},
        **visit,  # type: ignore[arg-type]
    )


def events() -> list[Event]:
    return [
        event(101, at(DAY1, 10, 0), "pageview", "/", GOOGLE),
        event(101, at(DAY1, 10, 0, 30), "engagement", "/", GOOGLE, engagement_ms=30000, scroll=50),
        event(101, at(DAY1, 10, 1), "pageview", "/pricing", GOOGLE),
        event(
            101, at(DAY1, 10, 2), "engagement", "/pricing", GOOGLE, engagement_ms=60000, scroll=80
        ),
        event(101, at(DAY1, 10, 2, 30), "Signup", "/pricing", GOOGLE, props={"plan": "pro"}),
        event(102, at(DAY1, 11, 0), "pageview", "/", DIRECT_FR),
        event(103, at(DAY2, 9, 0), "pageview", "/blog/post-1", HN),
        event(
            103,
            at(DAY2, 9, 0, 20),
            "engagement",
            "/blog/post-1",
            HN,
            engagement_ms=10000,
            scroll=100,
        ),
        event(103, at(DAY2, 9, 5, 1), "pageview", "/", HN),
        event(103, at(DAY2, 12, 0), "pageview", "/pricing", DIRECT_DE),
        # another site: must never show up in example.com's numbers
        event(999, at(DAY1, 10, 0), "pageview", "/", GOOGLE, site="shop.example.org"),
    ]


def load(store: Store) -> None:
    insert_events(store, events(), Sessionizer(dt.timedelta(minutes=30)), token="fixture")


# Hand-computed numbers for the whole range (day 1 and day 2).
EXPECTED = {
    "visitors": 3,
    "visits": 4,
    "pageviews": 6,
    "events": 7,  # 6 pageviews + Signup; engagement pings are not events
    "views_per_visit": 1.5,
    "bounce_rate": 50,  # B and D
    "visit_duration": 113,  # (150 + 0 + 301 + 0) / 4 = 112.75
    "time_on_page": 17,  # (30 + 60 + 10) s / 6 pageviews = 16.7
    "scroll_depth": 77,  # mean(50, 80, 100) = 76.7
}
