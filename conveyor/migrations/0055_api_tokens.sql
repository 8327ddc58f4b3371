-- API tokens (conveyor/store/tokens.py): only the SHA-256 of each token is kept. A
-- revoked token keeps its row, so `conveyor tokens list` can still say whose principal
-- an old event names; one unrevoked token per name.
CREATE TABLE api_tokens (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    name text NOT NULL,
    scope text NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    -- NULL: every organisation; otherwise the ones the token is limited to.
    organizations text[] CHECK (organizations IS NULL OR cardinality(organizations) > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CHECK (scope <> 'admin' OR organizations IS NULL)
);
CREATE UNIQUE INDEX api_tokens_live_name_idx ON api_tokens (name) WHERE revoked_at IS NULL;
