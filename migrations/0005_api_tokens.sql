-- API tokens: the API authenticates every request but health with `Authorization: Bearer <token>`
-- against these rows. Only a token's SHA-256 is kept (tokens are 256 random bits, so a fast hash
-- is enough and the table is useless to whoever reads it); `prefix` is the token's first
-- characters, shown by `apm-api token list` to tell tokens apart.
--
-- The table lives in its own schema so that the grants on `public` (the writer may write every
-- table there) do not reach it: the API's roles may only read it; tokens are created, rotated and
-- revoked by the owner (`apm-api token ...`, the migration step). `managed` marks the tokens the
-- deployment's token file defines: the migration step revokes a managed token the file no longer
-- lists (a rotation), never one made by hand.

CREATE SCHEMA IF NOT EXISTS apm_auth;

CREATE TABLE IF NOT EXISTS apm_auth.tokens (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    prefix      text NOT NULL,
    hash        bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    scopes      text[] NOT NULL CHECK (scopes <@ ARRAY['ingest', 'read', 'admin'] AND cardinality(scopes) > 0),
    managed     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
