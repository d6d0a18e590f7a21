-- A hypertable with 1-day chunks where TimescaleDB is installed (or can be: preloaded and available).
-- Unlike the original, a failure to create the extension is not swallowed: a server that preloads
-- TimescaleDB but refuses the extension to the migrating role should say so.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
       OR (EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
           AND current_setting('shared_preload_libraries') LIKE '%timescaledb%') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable(
            'observability_apirequest', 'time',
            if_not_exists => true,
            migrate_data => true,
            create_default_indexes => false,
            chunk_time_interval => interval '1 day'
        );
    ELSE
        RAISE NOTICE 'timescaledb is not available: observability_apirequest stays a plain table';
    END IF;
END
$$;
