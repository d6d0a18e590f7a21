//! `apm-api embed`: embeds events that have no embedding yet (the original's `embed_apirequests`),
//! with its flags. Unlike the original, `--force` replaces existing embeddings and the count is of
//! rows written, and `source` says `error` only for server errors, `request` otherwise (spec §11 #14).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::embed::{self, Provider};
use crate::event::Stored;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Embed events with at least this status
    #[arg(long, default_value_t = 500)]
    pub status_from: i16,
    /// Only events at or after this ISO datetime
    #[arg(long, value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// At most this many events
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
    /// Events per batch (each batch is written in one transaction)
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(i64).range(1..))]
    pub batch_size: i64,
    /// Seconds to wait between batches
    #[arg(long, default_value_t = 0.0)]
    pub sleep: f64,
    /// Append the event's tags (without private keys) to the embedded text
    #[arg(long)]
    pub include_tags: bool,
    /// Embed again events that already have an embedding, replacing it
    #[arg(long)]
    pub force: bool,
    /// Count the events without embedding them
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_since(v: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(v.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an ISO datetime such as 2025-12-14T10:00:00Z: {e}"))
}

/// Embeds the selected events with `provider`; returns the rows written.
pub async fn run(pool: &PgPool, provider: &Provider, o: &Options) -> anyhow::Result<u64> {
    let present: bool =
        sqlx::query_scalar("SELECT to_regclass('observability_apirequestembedding') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    anyhow::ensure!(
        present,
        "the database has no embeddings table: install pgvector and run the migrations"
    );
    let rows: Vec<Stored> = sqlx::query_as(
        "SELECT r.id, r.time, r.service, r.endpoint, r.method, r.status_code, r.latency_ms, \
                r.trace_id, r.user_ref, r.tags \
         FROM observability_apirequest r \
         WHERE r.status_code >= $1 AND ($2::timestamptz IS NULL OR r.time >= $2) \
           AND ($3 OR NOT EXISTS (SELECT 1 FROM observability_apirequestembedding e WHERE e.request_id = r.id)) \
         ORDER BY r.id LIMIT $4",
    )
    .bind(o.status_from)
    .bind(o.since)
    .bind(o.force)
    .bind(o.limit)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        crate::say("No rows to embed.");
        return Ok(0);
    }
    crate::say(&format!(
        "Embedding {} rows (model={}, status_from={}, force={}, dry_run={})",
        rows.len(),
        provider.model(),
        o.status_from,
        o.force,
        o.dry_run
    ));
    if o.dry_run {
        return Ok(0);
    }
    let mut written = 0u64;
    for (i, batch) in rows.chunks(o.batch_size as usize).enumerate() {
        if i > 0 && o.sleep > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(o.sleep)).await;
        }
        let mut vectors = Vec::with_capacity(batch.len());
        for s in batch {
            let text = embed::text(&s.event, o.include_tags);
            let v = provider.embed(&text).await?;
            vectors.push((s, embed::content_hash(&text), embed::literal(&v)));
            provider.pause().await;
        }
        let mut tx = pool.begin().await?;
        for (s, hash, vector) in vectors {
            let source = if s.event.status_code >= 500 {
                "error"
            } else {
                "request"
            };
            let done = sqlx::query(
                "INSERT INTO observability_apirequestembedding (request_id, source, model, content_hash, embedding) \
                 VALUES ($1, $2, $3, $4, $5::vector) \
                 ON CONFLICT (request_id) DO UPDATE SET source = excluded.source, model = excluded.model, \
                   content_hash = excluded.content_hash, embedding = excluded.embedding, created_at = now() \
                 WHERE $6",
            )
            .bind(s.id)
            .bind(source)
            .bind(provider.model())
            .bind(hash)
            .bind(vector)
            .bind(o.force)
            .execute(&mut *tx)
            .await?;
            written += done.rows_affected();
        }
        tx.commit().await?;
    }
    crate::say(&format!(
        "Embedded {written} rows (processed {}).",
        rows.len()
    ));
    Ok(written)
}
