-- Hourly and daily rollups: tables the API keeps current in the transaction of every write, so an
-- event ingested for a past hour is in that hour's rollup as soon as it commits. The original used
-- continuous aggregates refreshed on a schedule, which left back-dated events invisible until the
-- next refresh, or forever past the policy's start offset (spec §11 #9); a continuous aggregate
-- cannot be refreshed inside the writing transaction, and Debian's TimescaleDB (Apache license) has
-- none. The same tables therefore serve plain PostgreSQL and TimescaleDB alike.
--
-- Each row carries the figures the endpoints serve (hits, errors, latency sum and max) and a latency
-- histogram for percentiles: bins are exact below 256 ms, then 32 per power of two (each bin spans
-- at most 1/32 of its values), stored as a dense int[] trimmed after the last non-empty bin.
-- crates/apm-api/src/rollup.rs holds the same binning; a test checks that the two agree.

CREATE OR REPLACE FUNCTION apm_latency_bin(ms integer) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN ms < 256 THEN ms
        ELSE 256 + (e - 8) * 32 + ((ms >> (e - 5)) - 32)
    END
    FROM (SELECT 32 - position('1' IN ms::bit(32)::text) AS e) AS bits
$$;

-- A dense histogram (element i + 1 counts bin i) from bins and their counts.
CREATE OR REPLACE FUNCTION apm_hist_build(bins integer[], counts bigint[]) RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(coalesce(c, 0)::integer ORDER BY i), '{}')
    FROM generate_series(0, (SELECT max(b) FROM unnest(bins) AS b)) AS i
    LEFT JOIN (
        SELECT b, sum(c) AS c FROM unnest(bins, counts) AS u(b, c) GROUP BY b
    ) AS u ON u.b = i
$$;

-- Element-wise sum of two histograms.
CREATE OR REPLACE FUNCTION apm_hist_add(a integer[], b integer[]) RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(coalesce(a[i], 0) + coalesce(b[i], 0) ORDER BY i), '{}')
    FROM generate_series(1, greatest(cardinality(a), cardinality(b))) AS i
$$;

-- The same, trimmed after the last non-empty bin (for removals).
CREATE OR REPLACE FUNCTION apm_hist_sub(a integer[], b integer[]) RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(s ORDER BY i) FILTER (WHERE i <= last), '{}')
    FROM (
        SELECT i, s, max(i) FILTER (WHERE s <> 0) OVER () AS last
        FROM (
            SELECT i, coalesce(a[i], 0) - coalesce(b[i], 0) AS s
            FROM generate_series(1, greatest(cardinality(a), cardinality(b))) AS i
        ) AS sums
    ) AS trimmed
$$;

CREATE TABLE IF NOT EXISTS apirequest_hourly (
    bucket timestamptz NOT NULL,
    service varchar(100) NOT NULL,
    endpoint varchar(255) NOT NULL,
    hits bigint NOT NULL,
    errors bigint NOT NULL,
    latency_sum bigint NOT NULL,
    max_latency_ms integer NOT NULL,
    latency_hist integer[] NOT NULL,
    PRIMARY KEY (bucket, service, endpoint)
) WITH (fillfactor = 50);
CREATE INDEX IF NOT EXISTS apirequest_hourly_svc_ep_bucket_desc_idx
    ON apirequest_hourly (service, endpoint, bucket DESC);
CREATE INDEX IF NOT EXISTS apirequest_hourly_ep_bucket_desc_idx
    ON apirequest_hourly (endpoint, bucket DESC);

CREATE TABLE IF NOT EXISTS apirequest_daily (LIKE apirequest_hourly INCLUDING ALL) WITH (fillfactor = 50);
-- LIKE names the copied indexes after the new table: nothing else to create.

-- Merges per-bucket deltas, aggregated by the API, into a rollup: `hist_flat` holds every row's
-- dense histogram, row i's from hist_offset[i] + 1 for hist_len[i] elements. Rows must come sorted
-- by key: concurrent writers then lock rows in the same order and never deadlock.
CREATE OR REPLACE FUNCTION apm_rollup_merge(
    unit text, buckets timestamptz[], services text[], endpoints text[], hits bigint[],
    errors bigint[], sums bigint[], maxes integer[], hist_offset integer[], hist_len integer[],
    hist_flat integer[]
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($sql$
        INSERT INTO %I AS r
            (bucket, service, endpoint, hits, errors, latency_sum, max_latency_ms, latency_hist)
        SELECT b, s, e, h, er, su, m, $10[o + 1 : o + l]
        FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9) AS u(b, s, e, h, er, su, m, o, l)
        ON CONFLICT (bucket, service, endpoint) DO UPDATE SET
            hits = r.hits + excluded.hits,
            errors = r.errors + excluded.errors,
            latency_sum = r.latency_sum + excluded.latency_sum,
            max_latency_ms = greatest(r.max_latency_ms, excluded.max_latency_ms),
            latency_hist = apm_hist_add(r.latency_hist, excluded.latency_hist)
        $sql$, 'apirequest_' || CASE unit WHEN 'hour' THEN 'hourly' ELSE 'daily' END)
    USING buckets, services, endpoints, hits, errors, sums, maxes, hist_offset, hist_len,
          hist_flat;
END
$$;

-- Takes one event, already deleted from the events table, out of both rollups. The maximum is
-- recomputed from the remaining events only when the event held it.
CREATE OR REPLACE FUNCTION apm_rollup_remove(
    t timestamptz, svc text, ep text, st smallint, l integer
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    unit text;
    rollup text;
    b timestamptz;
    one integer[];
BEGIN
    one := apm_hist_build(ARRAY[apm_latency_bin(l)], ARRAY[1::bigint]);
    FOREACH unit IN ARRAY ARRAY['hour', 'day'] LOOP
        rollup := 'apirequest_' || CASE unit WHEN 'hour' THEN 'hourly' ELSE 'daily' END;
        b := date_trunc(unit, t, 'UTC');
        EXECUTE format($sql$
            UPDATE %I SET
                hits = hits - 1,
                errors = errors - CASE WHEN $5 >= 500 THEN 1 ELSE 0 END,
                latency_sum = latency_sum - $6,
                latency_hist = apm_hist_sub(latency_hist, $7),
                max_latency_ms = CASE WHEN $6 < max_latency_ms THEN max_latency_ms ELSE coalesce(
                    (SELECT max(latency_ms) FROM observability_apirequest
                     WHERE service = $2 AND endpoint = $3
                       AND time >= $1 AND time < $1 + ('1 ' || $4)::interval), 0) END
            WHERE bucket = $1 AND service = $2 AND endpoint = $3
            $sql$, rollup)
        USING b, svc, ep, unit, st, l, one;
        EXECUTE format('DELETE FROM %I WHERE bucket = $1 AND service = $2 AND endpoint = $3 AND hits <= 0', rollup)
        USING b, svc, ep;
    END LOOP;
END
$$;

-- Recomputes both rollups from the events for every bucket that meets [start, end]: for events
-- written around the API (COPY, restores), and behind `apm-api refresh-hourly` / `refresh-daily`.
CREATE OR REPLACE FUNCTION apm_rollup_refresh(
    unit text, start timestamptz, "end" timestamptz
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    rollup text;
    lo timestamptz;
    hi timestamptz;
    written bigint;
BEGIN
    IF unit NOT IN ('hour', 'day') THEN
        RAISE EXCEPTION 'unit must be hour or day, not %', unit;
    END IF;
    rollup := 'apirequest_' || CASE unit WHEN 'hour' THEN 'hourly' ELSE 'daily' END;
    lo := date_trunc(unit, start, 'UTC');
    hi := date_trunc(unit, "end", 'UTC') + ('1 ' || unit)::interval;
    -- Writers of these buckets wait until the new rows are in.
    EXECUTE format('LOCK TABLE %I IN SHARE ROW EXCLUSIVE MODE', rollup);
    EXECUTE format('DELETE FROM %I WHERE bucket >= $1 AND bucket < $2', rollup) USING lo, hi;
    EXECUTE format($sql$
        INSERT INTO %I (bucket, service, endpoint, hits, errors, latency_sum, max_latency_ms, latency_hist)
        SELECT bucket, service, endpoint, sum(n), sum(e), sum(s), max(m),
               apm_hist_build(array_agg(bin), array_agg(n))
        FROM (
            SELECT date_trunc(%L, time, 'UTC') AS bucket, service, endpoint,
                   apm_latency_bin(latency_ms) AS bin, count(*) AS n,
                   count(*) FILTER (WHERE status_code >= 500) AS e,
                   sum(latency_ms) AS s, max(latency_ms) AS m
            FROM observability_apirequest
            WHERE time >= $1 AND time < $2
            GROUP BY 1, 2, 3, 4
        ) AS g
        GROUP BY bucket, service, endpoint
        $sql$, rollup, unit)
    USING lo, hi;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$;

-- Events already in the table (a database upgraded from before the rollups).
SELECT apm_rollup_refresh('hour', min(time), max(time)), apm_rollup_refresh('day', min(time), max(time))
FROM observability_apirequest
HAVING count(*) > 0;
