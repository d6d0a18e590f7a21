//! The hourly and daily rollups (migrations/0004_rollups.sql): kept current in every writing
//! transaction, and their latency histograms, from which percentiles over many rows are read.
//!
//! Binning (the same as `apm_latency_bin` in SQL): values below 256 ms have a bin each; above,
//! every power of two is split into 32 bins, so a bin spans at most 1/32 of its values.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};

use crate::event::Event;

const EXACT: i32 = 256;
const SUB_BITS: u32 = 5;
const SUB: i32 = 1 << SUB_BITS;

/// The bin of a latency.
pub fn bin(ms: i32) -> usize {
    if ms < EXACT {
        return ms.max(0) as usize;
    }
    let e = 31 - ms.leading_zeros() as i32;
    (EXACT + (e - 8) * SUB + ((ms >> (e - SUB_BITS as i32)) - SUB)) as usize
}

/// The smallest and largest latency a bin holds.
pub fn bounds(bin: usize) -> (i32, i32) {
    let b = bin as i32;
    if b < EXACT {
        return (b, b);
    }
    let e = (b - EXACT) / SUB + 8;
    let sub = (b - EXACT) % SUB + SUB;
    let width = 1i64 << (e - SUB_BITS as i32);
    let lo = i64::from(sub) * width;
    (lo as i32, (lo + width - 1).min(i64::from(i32::MAX)) as i32)
}

/// A latency histogram: counts by bin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    counts: Vec<i64>,
}

impl Histogram {
    pub fn add(&mut self, dense: &[i32]) {
        if self.counts.len() < dense.len() {
            self.counts.resize(dense.len(), 0);
        }
        for (c, d) in self.counts.iter_mut().zip(dense) {
            *c += i64::from(*d);
        }
    }

    pub fn total(&self) -> i64 {
        self.counts.iter().sum()
    }

    /// The value of the `rank`-th smallest latency (0-based), spreading a bin's values evenly over
    /// its range; exact for bins of one value.
    fn value_at(&self, rank: i64) -> Option<f64> {
        let mut seen = 0i64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 && rank < seen + c {
                let (lo, hi) = bounds(i);
                if lo == hi {
                    return Some(f64::from(lo));
                }
                let within = (rank - seen) as f64 + 0.5;
                return Some(f64::from(lo) + f64::from(hi - lo) * within / c as f64);
            }
            seen += c;
        }
        None
    }

    /// The percentile over the histogram's values, capped by the known maximum (see [`percentile`]).
    pub fn percentile(&self, p: f64, max: Option<i32>) -> Option<f64> {
        let n = self.total();
        let (first, second) = ranks(p, n)?;
        let cap = |v: f64| max.map_or(v, |m| v.min(f64::from(m)));
        let lo = cap(self.value_at(first)?);
        let hi = cap(self.value_at(second)?);
        Some(percentile(p, n, lo, hi))
    }
}

/// The 0-based ranks `percentile_cont(p)` interpolates between, over `n` values.
pub fn ranks(p: f64, n: i64) -> Option<(i64, i64)> {
    if n <= 0 {
        return None;
    }
    let pos = p * (n - 1) as f64;
    Some((pos.floor() as i64, pos.ceil() as i64))
}

/// PostgreSQL's `percentile_cont(p)` from the values at [`ranks`]: `lo + (hi - lo) * proportion`,
/// with fused multiply-adds as the original's server computed it (its reports show
/// 446.99999999999994 for [15, 15, 33, 105, 120, 230, 540] where separate roundings give
/// 446.9999999999998).
pub fn percentile(p: f64, n: i64, lo: f64, hi: f64) -> f64 {
    let first = (p * (n - 1) as f64).floor();
    let proportion = p.mul_add((n - 1) as f64, -first);
    (hi - lo).mul_add(proportion, lo)
}

/// What a set of events adds to one rollup row.
#[derive(Debug, Default)]
struct Delta {
    hits: i64,
    errors: i64,
    sum: i64,
    max: i32,
    hist: Vec<i32>,
}

/// Adds events to both rollups, in the caller's transaction: aggregated here per bucket, service
/// and endpoint, then merged with one statement per rollup, keys in order.
pub async fn add(tx: &mut sqlx::PgConnection, events: &[Event]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    for (unit, width) in [("hour", TimeDelta::hours(1)), ("day", TimeDelta::days(1))] {
        let mut deltas: BTreeMap<(DateTime<Utc>, &str, &str), Delta> = BTreeMap::new();
        for e in events {
            let bucket = e.time.duration_trunc(width).unwrap_or(e.time);
            let d = deltas
                .entry((bucket, e.service.as_str(), e.endpoint.as_str()))
                .or_default();
            d.hits += 1;
            d.errors += i64::from(e.status_code >= 500);
            d.sum += i64::from(e.latency_ms);
            d.max = d.max.max(e.latency_ms);
            let b = bin(e.latency_ms);
            if d.hist.len() <= b {
                d.hist.resize(b + 1, 0);
            }
            d.hist[b] += 1;
        }
        let n = deltas.len();
        let (mut buckets, mut services, mut endpoints) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut hits, mut errors, mut sums, mut maxes) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut offsets, mut lens, mut flat) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::new());
        for ((bucket, service, endpoint), d) in deltas {
            buckets.push(bucket);
            services.push(service);
            endpoints.push(endpoint);
            hits.push(d.hits);
            errors.push(d.errors);
            sums.push(d.sum);
            maxes.push(d.max);
            offsets.push(flat.len() as i32);
            lens.push(d.hist.len() as i32);
            flat.extend_from_slice(&d.hist);
        }
        sqlx::query(
            "SELECT apm_rollup_merge($1, $2::timestamptz[], $3::text[], $4::text[], $5::int8[], $6::int8[],              $7::int8[], $8::int4[], $9::int4[], $10::int4[], $11::int4[])",
        )
        .bind(unit)
        .bind(buckets)
        .bind(services)
        .bind(endpoints)
        .bind(hits)
        .bind(errors)
        .bind(sums)
        .bind(maxes)
        .bind(offsets)
        .bind(lens)
        .bind(flat)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Takes an event, already deleted from the events table, out of both rollups.
pub async fn remove(tx: &mut sqlx::PgConnection, e: &Event) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT apm_rollup_remove($1, $2, $3, $4, $5)")
        .bind(e.time)
        .bind(&e.service)
        .bind(&e.endpoint)
        .bind(e.status_code)
        .bind(e.latency_ms)
        .execute(tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_exact_below_256_then_within_one_32nd() {
        for v in 0..256 {
            assert_eq!(bounds(bin(v)), (v, v));
        }
        let mut previous = bin(255);
        for v in (256..5_000_000).step_by(7).chain([i32::MAX - 1, i32::MAX]) {
            let b = bin(v);
            let (lo, hi) = bounds(b);
            assert!(lo <= v && v <= hi, "{v} in bin {b} = [{lo}, {hi}]");
            assert!(
                f64::from(hi - lo + 1) <= f64::from(lo) / 32.0,
                "{v}: [{lo}, {hi}]"
            );
            assert!(b >= previous);
            previous = b;
        }
    }

    fn hist_of(values: &[i32]) -> Histogram {
        let mut dense = vec![0; values.iter().map(|&v| bin(v)).max().unwrap_or(0) + 1];
        for &v in values {
            dense[bin(v)] += 1;
        }
        let mut h = Histogram::default();
        h.add(&dense);
        h
    }

    #[test]
    fn percentiles_of_exact_bins_match_percentile_cont() {
        // The original's reports: percentile_cont(0.95) of these values.
        let h = hist_of(&[15, 15, 33, 105, 120, 230, 250]);
        assert_eq!(
            h.percentile(0.95, None),
            Some(20.0f64.mul_add(0.95f64.mul_add(6.0, -5.0), 230.0))
        );
        assert_eq!(percentile(0.95, 7, 230.0, 540.0), 446.99999999999994);
        let (p, lo, hi) = std::hint::black_box((0.95, 15.0, 105.0));
        assert_eq!(percentile(p, 3, lo, hi), 95.99999999999999);
        assert_eq!(
            hist_of(&[15, 15, 105]).percentile(0.95, None),
            Some(95.99999999999999)
        );
        assert_eq!(hist_of(&[35, 40]).percentile(0.95, None), Some(39.75));
        assert_eq!(Histogram::default().percentile(0.95, None), None);
    }

    #[test]
    fn percentiles_of_wide_bins_stay_within_their_bin() {
        let values: Vec<i32> = (0..10_000).map(|i| 300 + (i * 7919) % 1200).collect();
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let pos = 0.95 * (sorted.len() - 1) as f64;
        let exact = f64::from(sorted[pos.floor() as usize]);
        let estimate = hist_of(&values)
            .percentile(0.95, Some(1499))
            .expect("a percentile");
        assert!(
            (estimate - exact).abs() / exact <= 1.0 / 32.0,
            "{estimate} vs {exact}"
        );
    }
}
