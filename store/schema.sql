-- firstparty: the one ClickHouse schema, used unchanged by the embedded engine and a server.
-- Applied idempotently at start-up (store/schema.py). Statements are separated by lines that
-- hold only `;`-terminated statements; `{{name}}` placeholders are filled from the validated
-- configuration (integers only), never from request data.
-- Privacy (DESIGN.md section 3): no column holds a raw IP, a raw user agent or a raw device ID.

CREATE TABLE IF NOT EXISTS schema_version (
    version UInt32,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY version;

-- Raw events, anonymised at ingestion, kept for `raw_retention_days`.
CREATE TABLE IF NOT EXISTS events (
    site_id LowCardinality(String),
    timestamp DateTime64(3, 'UTC'),
    name LowCardinality(String),
    visitor_id UInt64,            -- keyed hash with a salt destroyed after the day (pseudonymous)
    visitor_kind Enum8('cookieless' = 1, 'device' = 2),
    session_id UInt64,            -- assigned by the single writer (30-minute inactivity)
    hostname LowCardinality(String),
    pathname LowCardinality(String), -- path only; query strings stripped, IDs redacted
    referrer String,              -- scheme+host+path, no query string
    referrer_source LowCardinality(String),
    channel LowCardinality(String),
    utm_source String,
    utm_medium String,
    utm_campaign String,
    utm_content String,
    utm_term String,
    click_id LowCardinality(String), -- which click-ID parameter was present (flag), never its value
    country_code LowCardinality(String),
    region LowCardinality(String),
    ip_prefix String,             -- truncated network (e.g. 203.0.113.0/24), empty unless policy keeps it
    browser LowCardinality(String),
    browser_version LowCardinality(String),
    os LowCardinality(String),
    os_version LowCardinality(String),
    device LowCardinality(String),
    interactive UInt8,
    engagement_ms UInt32,
    scroll_depth UInt8,           -- 0-100, 255 when unknown
    props Map(String, String),
    -- 2 bytes a row instead of 8: a whole-day range filters on it instead of `timestamp`
    day Date MATERIALIZED toDate(timestamp)
) ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (site_id, toDate(timestamp), name, visitor_id, timestamp)
TTL toDateTime(timestamp) + INTERVAL {{raw_retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 8192;

-- Sessions, folded from events by a materialized view (so an event insert and its session
-- update are one insert, deduplicated together).
CREATE TABLE IF NOT EXISTS sessions (
    site_id LowCardinality(String),
    session_id UInt64,
    visitor_id SimpleAggregateFunction(any, UInt64),
    start SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    end SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    pageviews SimpleAggregateFunction(sum, UInt64),
    events SimpleAggregateFunction(sum, UInt64),
    interactive_events SimpleAggregateFunction(sum, UInt64),
    entry_page AggregateFunction(argMin, String, DateTime64(3, 'UTC')),
    exit_page AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    hostname SimpleAggregateFunction(any, LowCardinality(String)),
    referrer SimpleAggregateFunction(any, String),
    referrer_source SimpleAggregateFunction(any, LowCardinality(String)),
    channel SimpleAggregateFunction(any, LowCardinality(String)),
    utm_source SimpleAggregateFunction(any, String),
    utm_medium SimpleAggregateFunction(any, String),
    utm_campaign SimpleAggregateFunction(any, String),
    utm_content SimpleAggregateFunction(any, String),
    utm_term SimpleAggregateFunction(any, String),
    country_code SimpleAggregateFunction(any, LowCardinality(String)),
    region SimpleAggregateFunction(any, LowCardinality(String)),
    browser SimpleAggregateFunction(any, LowCardinality(String)),
    browser_version SimpleAggregateFunction(any, LowCardinality(String)),
    os SimpleAggregateFunction(any, LowCardinality(String)),
    os_version SimpleAggregateFunction(any, LowCardinality(String)),
    device SimpleAggregateFunction(any, LowCardinality(String))
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(start)
ORDER BY (site_id, session_id)
TTL toDateTime(start) + INTERVAL {{raw_retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sessions_mv TO sessions AS
SELECT
    site_id,
    session_id,
    any(visitor_id) AS visitor_id,
    min(timestamp) AS start,
    max(timestamp) AS end,
    countIf(name = 'pageview') AS pageviews,
    count() AS events,
    countIf(interactive = 1 AND name != 'pageview' AND name != 'engagement') AS interactive_events,
    argMinStateIf(pathname, timestamp, name = 'pageview') AS entry_page,
    argMaxStateIf(pathname, timestamp, name = 'pageview') AS exit_page,
    argMin(hostname, timestamp) AS hostname,
    argMin(referrer, timestamp) AS referrer,
    argMin(referrer_source, timestamp) AS referrer_source,
    argMin(channel, timestamp) AS channel,
    argMin(utm_source, timestamp) AS utm_source,
    argMin(utm_medium, timestamp) AS utm_medium,
    argMin(utm_campaign, timestamp) AS utm_campaign,
    argMin(utm_content, timestamp) AS utm_content,
    argMin(utm_term, timestamp) AS utm_term,
    argMin(country_code, timestamp) AS country_code,
    argMin(region, timestamp) AS region,
    argMin(browser, timestamp) AS browser,
    argMin(browser_version, timestamp) AS browser_version,
    argMin(os, timestamp) AS os,
    argMin(os_version, timestamp) AS os_version,
    argMin(device, timestamp) AS device
FROM events
GROUP BY site_id, session_id;

-- Daily visitor salts (hex of 16 CSPRNG bytes). At most today's and yesterday's exist; older
-- ones are destroyed by the salt keeper (ingest/salts.py), and the audit checks it. One
-- partition per day, so destruction is DROP PARTITION (the data part goes at once), and the
-- cleanup settings remove any outdated part within seconds, not the default minutes.
CREATE TABLE IF NOT EXISTS salts (
    day Date,
    salt String,
    created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree PARTITION BY day ORDER BY day
SETTINGS old_parts_lifetime = 1, cleanup_delay_period = 1, max_cleanup_delay_period = 1,
    cleanup_delay_period_random_add = 0;

-- Device-ID keys (hex of 16 CSPRNG bytes), one per rotation period of
-- `privacy.visitor_id_rotation`; destroyed like the salts once their period has ended.
CREATE TABLE IF NOT EXISTS device_keys (
    rotation LowCardinality(String), -- daily, weekly, monthly, 13months
    period Date,                     -- first day of the period the key covers
    key String,
    created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree PARTITION BY (rotation, period) ORDER BY (rotation, period)
SETTINGS old_parts_lifetime = 1, cleanup_delay_period = 1, max_cleanup_delay_period = 1,
    cleanup_delay_period_random_add = 0;

-- When each salt and device key was created and destroyed: TIMES ONLY, never a value. Read by
-- the audit and `dsr explain`.
CREATE TABLE IF NOT EXISTS salt_log (
    kind LowCardinality(String),     -- visitor_salt or device_key
    rotation LowCardinality(String), -- daily for salts
    period Date,                     -- the day (salt) or first day of the period (device key)
    action LowCardinality(String),   -- created or destroyed
    at DateTime64(3, 'UTC')
) ENGINE = MergeTree ORDER BY (kind, period, at);

-- Stats API keys: only a SHA-256 of the (high-entropy, random) key is kept.
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash String,
    prefix String,
    sites Array(String),
    created_at DateTime64(3, 'UTC') DEFAULT now64(3),
    revoked UInt8 DEFAULT 0
) ENGINE = ReplacingMergeTree ORDER BY key_hash;

-- Dashboard users. Passwords as argon2id hashes only. A change (role, password, removal) is a
-- new row with a higher `version`; reads use FINAL. Removal keeps a tombstone (`deleted = 1`).
CREATE TABLE IF NOT EXISTS users (
    email String,
    role LowCardinality(String),   -- viewer, privacy, admin
    password_hash String,          -- argon2id (memory-hard), never the password
    sites Array(String),           -- empty: every configured site
    created_at DateTime64(3, 'UTC') DEFAULT now64(3),
    deleted UInt8 DEFAULT 0,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY email;

-- Dashboard sessions: the signed cookie carries a random session ID; only its SHA-256 is kept
-- here, so logout and user removal end a session even though the cookie is still validly signed.
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    sid_hash String,
    email String,
    created_at DateTime64(3, 'UTC') DEFAULT now64(3),
    expires_at DateTime64(3, 'UTC'),
    revoked UInt8 DEFAULT 0,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY sid_hash
TTL toDateTime(expires_at) + INTERVAL 1 DAY;

-- Read-only share links for one site: only a SHA-256 of the random token is kept.
CREATE TABLE IF NOT EXISTS share_links (
    token_hash String,
    link_id String,                -- the hash's first 12 hex digits: names the link in lists
    site_id String,
    label String,
    created_by String,
    created_at DateTime64(3, 'UTC') DEFAULT now64(3),
    expires_at Nullable(DateTime64(3, 'UTC')),
    revoked UInt8 DEFAULT 0,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY token_hash;

-- Usage data ("aggregates"), kept `aggregate_retention_months`, fed by materialized views from
-- every events insert. Visitor and visit counts are small HLL states (uniqCombined64(12): exact
-- below about 200 distinct ids, then ~2 % error), which keep 30-day dashboards fast.
-- rollup_hourly: site totals per hour (hourly charts). rollup_daily: one row per site, day,
-- dimension and value; its dimension list must match dashboards/metrics.py ROLLUP_DIMENSIONS
-- (dimension '' is the site total).
CREATE TABLE IF NOT EXISTS rollup_hourly (
    site_id LowCardinality(String),
    hour DateTime('UTC'),
    dimension LowCardinality(String),
    value String,
    visitors AggregateFunction(uniqCombined64(12), UInt64),
    visits AggregateFunction(uniqCombined64(12), UInt64),
    pageviews SimpleAggregateFunction(sum, UInt64),
    events SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site_id, dimension, hour, value)
TTL hour + INTERVAL {{aggregate_retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_hourly_mv TO rollup_hourly AS
SELECT
    site_id,
    toStartOfHour(timestamp) AS hour,
    '' AS dimension,
    '' AS value,
    uniqCombined64State(12)(visitor_id) AS visitors,
    uniqCombined64State(12)(session_id) AS visits,
    countIf(name = 'pageview') AS pageviews,
    countIf(name != 'engagement') AS events
FROM events
GROUP BY site_id, hour;

CREATE TABLE IF NOT EXISTS rollup_daily (
    site_id LowCardinality(String),
    day Date,
    dimension LowCardinality(String),
    value String,
    visitors AggregateFunction(uniqCombined64(12), UInt64),
    visits AggregateFunction(uniqCombined64(12), UInt64),
    pageviews SimpleAggregateFunction(sum, UInt64),
    events SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, dimension, day, value)
TTL day + INTERVAL {{aggregate_retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_daily_mv TO rollup_daily AS
SELECT
    site_id,
    toDate(timestamp) AS day,
    dv.1 AS dimension,
    dv.2 AS value,
    uniqCombined64State(12)(visitor_id) AS visitors,
    uniqCombined64State(12)(session_id) AS visits,
    countIf(name = 'pageview') AS pageviews,
    countIf(name != 'engagement') AS events
FROM events
ARRAY JOIN [
        ('', ''),
        ('page', pathname),
        ('hostname', hostname),
        ('name', name),
        ('source', referrer_source),
        ('channel', channel),
        ('referrer', referrer),
        ('utm_source', utm_source),
        ('utm_medium', utm_medium),
        ('utm_campaign', utm_campaign),
        ('utm_content', utm_content),
        ('utm_term', utm_term),
        ('country', country_code),
        ('region', region),
        ('device', device),
        ('browser', browser),
        ('browser_version', browser_version),
        ('os', os),
        ('os_version', os_version)
    ] AS dv
GROUP BY site_id, day, dimension, value;

-- Visit metrics (bounces, durations) per day of visit start, dimension and value, written by
-- the query layer once a day's visits have closed (dashboards/rollups.py): a visit is only
-- complete when it has ended, so no insert-time view can fold it. Kept like the other
-- aggregates, so bounce rate and visit duration outlive the raw sessions. A day finalized
-- twice (two workers at once) collapses by key: reads use FINAL on this small table.
CREATE TABLE IF NOT EXISTS visits_daily (
    site_id LowCardinality(String),
    day Date,
    dimension LowCardinality(String),
    value String,
    visitors AggregateFunction(uniqCombined64(12), UInt64),
    visits UInt64,
    bounces UInt64,
    duration_ms UInt64,
    pageviews UInt64,
    events UInt64,
    finalized_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(finalized_at)
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, dimension, day, value)
TTL day + INTERVAL {{aggregate_retention_months}} MONTH;

-- One row per closed visit (like Plausible's collapsed sessions), written with visits_daily,
-- so a filter on one visit attribute with a breakdown by another scans narrow visit rows
-- instead of raw events. It holds the pseudonymous visitor hash, so it is kept only as long as
-- the raw sessions it copies. Column names match the query layer's merged-session columns.
CREATE TABLE IF NOT EXISTS visit_facts (
    site_id LowCardinality(String),
    day Date,
    session_id UInt64,
    s_visitor_id UInt64,
    s_start DateTime64(3, 'UTC'),
    s_pageviews UInt64,
    s_events UInt64,
    s_interactive UInt64,
    s_duration_ms Int64,
    s_entry_page String,
    s_exit_page String,
    s_referrer String,
    s_referrer_source LowCardinality(String),
    s_channel LowCardinality(String),
    s_utm_source String,
    s_utm_medium String,
    s_utm_campaign String,
    s_utm_content String,
    s_utm_term String,
    s_country_code LowCardinality(String),
    s_region LowCardinality(String),
    s_browser LowCardinality(String),
    s_browser_version LowCardinality(String),
    s_os LowCardinality(String),
    s_os_version LowCardinality(String),
    s_device LowCardinality(String),
    finalized_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(finalized_at)
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, day, session_id)
TTL day + INTERVAL {{raw_retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS visits_daily_done (
    site_id LowCardinality(String),
    day Date,
    finalized_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(finalized_at)
ORDER BY (site_id, day)
TTL day + INTERVAL {{aggregate_retention_months}} MONTH;

-- Visit metrics per closed day for each pair of the dashboard's visit attributes (country and
-- browser, source and device...), folded from `visit_facts` by the query layer like
-- visits_daily: a breakdown by one attribute filtered on another reads a few rows per day
-- instead of every closed visit. Each pair is stored both ways round, keyed by the filtered
-- attribute and its value first, so a filter's rows are found by the key (small granules: the
-- visitor sketches are the bulk of each row). Cells are as fine as two attributes; answers are
-- k-suppressed like every other. Kept like the other aggregates; reads use FINAL.
CREATE TABLE IF NOT EXISTS visit_pairs_daily (
    site_id LowCardinality(String),
    day Date,
    filter LowCardinality(String),
    filter_value String,
    dimension LowCardinality(String),
    value String,
    visitors AggregateFunction(uniqCombined64(12), UInt64),
    visits UInt64,
    bounces UInt64,
    duration_ms UInt64,
    pageviews UInt64,
    events UInt64,
    finalized_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(finalized_at)
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, filter, dimension, filter_value, day, value)
TTL day + INTERVAL {{aggregate_retention_months}} MONTH
SETTINGS index_granularity = 256;

CREATE TABLE IF NOT EXISTS visit_pairs_done (
    site_id LowCardinality(String),
    day Date,
    finalized_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(finalized_at)
ORDER BY (site_id, day)
TTL day + INTERVAL {{aggregate_retention_months}} MONTH;
