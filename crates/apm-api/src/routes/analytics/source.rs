//! Where a response is read from (raw events or a rollup), the filters every query shares, and
//! the exact p95 of a small window.

use std::collections::HashMap;

use chrono::{DateTime, Duration, DurationRound as _, TimeDelta, Utc};
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, QueryBuilder, Row as _};

use crate::rollup::{self};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Raw,
    Hourly,
    Daily,
}

impl Source {
    pub(super) fn name(self) -> &'static str {
        match self {
            Source::Raw => "raw",
            Source::Hourly => "hourly",
            Source::Daily => "daily",
        }
    }

    pub(super) fn table(self) -> &'static str {
        match self {
            Source::Raw => "observability_apirequest",
            Source::Hourly => "apirequest_hourly",
            Source::Daily => "apirequest_daily",
        }
    }

    pub(super) fn width(self) -> TimeDelta {
        match self {
            Source::Daily => Duration::days(1),
            _ => Duration::hours(1),
        }
    }

    /// The events the buckets starting within `[start, end]` hold: `[first, last + width)`.
    pub(super) fn covered(
        self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> (DateTime<Utc>, DateTime<Utc>) {
        let w = self.width();
        let floor = |t: DateTime<Utc>| t.duration_trunc(w).unwrap_or(t);
        let first = if floor(start) == start {
            start
        } else {
            floor(start) + w
        };
        (first, floor(end) + w)
    }
}

/// §3.2: raw when a filter only the events have is used, else the granularity's rollup.
pub(super) fn choose(
    granularity: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    raw: bool,
) -> Source {
    if raw {
        return Source::Raw;
    }
    match granularity {
        "hourly" => Source::Hourly,
        "daily" => Source::Daily,
        _ if end - start <= Duration::hours(48) => Source::Hourly,
        _ => Source::Daily,
    }
}

/// The common filters: the window on `time` or `bucket`, service, endpoint, and (raw only) method.
pub(super) struct Filter<'a> {
    pub(super) start: DateTime<Utc>,
    pub(super) end: DateTime<Utc>,
    pub(super) service: Option<&'a str>,
    pub(super) endpoint: Option<&'a str>,
    pub(super) method: Option<&'a str>,
}

impl Filter<'_> {
    pub(super) fn push(&self, qb: &mut QueryBuilder<Postgres>, source: Source) {
        let col = if source == Source::Raw {
            "time"
        } else {
            "bucket"
        };
        qb.push(format!(" WHERE {col} >= "))
            .push_bind(self.start)
            .push(format!(" AND {col} <= "))
            .push_bind(self.end);
        self.push_keys(qb, source);
    }

    pub(super) fn push_keys(&self, qb: &mut QueryBuilder<Postgres>, source: Source) {
        if let Some(s) = self.service {
            qb.push(" AND service = ").push_bind(s.to_owned());
        }
        if let Some(e) = self.endpoint {
            qb.push(" AND endpoint = ").push_bind(e.to_owned());
        }
        if let (Some(m), Source::Raw) = (self.method, source) {
            qb.push(" AND method = ").push_bind(m.to_owned());
        }
    }

    /// The raw events the buckets of `source` cover: `time` in `[first, last + width)`.
    pub(super) fn push_covered(&self, qb: &mut QueryBuilder<Postgres>, source: Source) {
        let (lo, hi) = source.covered(self.start, self.end);
        qb.push(" WHERE time >= ")
            .push_bind(lo)
            .push(" AND time < ")
            .push_bind(hi);
        self.push_keys(qb, Source::Raw);
    }
}

pub(super) fn float_or_null(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |f| json!(f))
}

/// How an exact p95 groups the events.
#[derive(Debug, Clone, Copy)]
pub(super) enum By {
    All,
    Pair,
    BucketPair(&'static str),
}

pub(super) type Key = (Option<DateTime<Utc>>, Option<String>, Option<String>);

/// p95 per group, exactly as `percentile_cont(0.95)` (see [`crate::rollup::percentile`]): SQL
/// finds the two values around the rank, Rust interpolates. `conditions` adds the WHERE clause.
pub(super) async fn exact_p95(
    pool: &PgPool,
    by: By,
    conditions: impl FnOnce(&mut QueryBuilder<Postgres>),
) -> Result<HashMap<Key, f64>, sqlx::Error> {
    let (bucket, keys, partition) = match by {
        By::All => (
            "NULL::timestamptz".to_owned(),
            "NULL::text AS service, NULL::text AS endpoint",
            String::new(),
        ),
        By::Pair => (
            "NULL::timestamptz".to_owned(),
            "service, endpoint",
            "PARTITION BY service, endpoint".to_owned(),
        ),
        By::BucketPair(unit) => {
            let bucket = format!("date_trunc('{unit}', time, 'UTC')");
            let partition = format!("PARTITION BY {bucket}, service, endpoint");
            (bucket, "service, endpoint", partition)
        }
    };
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT bucket, service, endpoint, latency_ms, rn, n FROM (\
         SELECT {bucket} AS bucket, {keys}, latency_ms, \
         row_number() OVER ({partition} ORDER BY latency_ms) - 1 AS rn, \
         count(*) OVER ({partition}) AS n FROM observability_apirequest"
    ));
    conditions(&mut qb);
    qb.push(
        ") AS ranked WHERE rn = floor(0.95::float8 * (n - 1)) OR rn = ceil(0.95::float8 * (n - 1))",
    );
    let mut around: HashMap<Key, (i64, Vec<(i64, f64)>)> = HashMap::new();
    for r in qb.build().fetch_all(pool).await? {
        let key: Key = (r.get("bucket"), r.get("service"), r.get("endpoint"));
        let entry = around
            .entry(key)
            .or_insert_with(|| (r.get("n"), Vec::new()));
        entry
            .1
            .push((r.get("rn"), f64::from(r.get::<i32, _>("latency_ms"))));
    }
    Ok(around
        .into_iter()
        .filter_map(|(key, (n, values))| {
            let (first, second) = rollup::ranks(0.95, n)?;
            let at = |rank| values.iter().find(|(r, _)| *r == rank).map(|(_, v)| *v);
            Some((key, rollup::percentile(0.95, n, at(first)?, at(second)?)))
        })
        .collect())
}

pub(super) fn push_pairs(
    qb: &mut QueryBuilder<Postgres>,
    services: Vec<String>,
    endpoints: Vec<String>,
) {
    qb.push(" AND (service, endpoint) IN (SELECT * FROM unnest(")
        .push_bind(services)
        .push("::text[], ")
        .push_bind(endpoints)
        .push("::text[]))");
}
