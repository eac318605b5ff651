-- Archon's state in PostgreSQL. archon_log is the truth: every command the leader
-- committed, in order. The other archon_* tables are kept up to date in the same
-- transaction as the log rows that change them, for operators to query with SQL.

-- Who leads, and since which term. Every write transaction checks the term it
-- was elected with against this row (fencing): a deposed leader's late write fails.
CREATE TABLE archon_leader (
    id smallint PRIMARY KEY CHECK (id = 1),
    term bigint NOT NULL,
    holder text NOT NULL,
    address text NOT NULL,
    since_ms bigint NOT NULL
);
INSERT INTO archon_leader (id, term, holder, address, since_ms) VALUES (1, 0, '', '', 0);

-- The command log (Command as JSON), one row per command.
CREATE TABLE archon_log (
    index bigint PRIMARY KEY,
    term bigint NOT NULL,
    command jsonb NOT NULL
);

-- The applied state at a log index, so a new leader replays only what follows it.
CREATE TABLE archon_snapshots (
    index bigint PRIMARY KEY,
    state jsonb NOT NULL
);

CREATE TABLE archon_jobs (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL,
    spec jsonb NOT NULL,
    cancelled boolean NOT NULL,
    runs integer NOT NULL,
    created_ms bigint NOT NULL,
    created_at timestamptz GENERATED ALWAYS AS (to_timestamp(created_ms / 1000.0)) STORED
);
CREATE INDEX archon_jobs_name ON archon_jobs (name);

CREATE TABLE archon_runs (
    id bigint PRIMARY KEY,
    job_id bigint NOT NULL,
    state text NOT NULL,
    attempts integer NOT NULL,
    retries_used integer NOT NULL,
    reason text,
    created_ms bigint NOT NULL,
    finished_ms bigint,
    created_at timestamptz GENERATED ALWAYS AS (to_timestamp(created_ms / 1000.0)) STORED,
    finished_at timestamptz GENERATED ALWAYS AS (to_timestamp(finished_ms / 1000.0)) STORED
);
CREATE INDEX archon_runs_job ON archon_runs (job_id);
CREATE INDEX archon_runs_state ON archon_runs (state);

CREATE TABLE archon_attempts (
    id bigint PRIMARY KEY,
    run_id bigint NOT NULL,
    worker_id bigint NOT NULL,
    state text NOT NULL,
    status jsonb,
    exit_code integer,
    assigned_ms bigint NOT NULL,
    started_ms bigint,
    finished_ms bigint,
    assigned_at timestamptz GENERATED ALWAYS AS (to_timestamp(assigned_ms / 1000.0)) STORED,
    finished_at timestamptz GENERATED ALWAYS AS (to_timestamp(finished_ms / 1000.0)) STORED
);
CREATE INDEX archon_attempts_run ON archon_attempts (run_id);
CREATE INDEX archon_attempts_worker ON archon_attempts (worker_id);

CREATE TABLE archon_workers (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    address text NOT NULL,
    state text NOT NULL,
    labels jsonb NOT NULL,
    capabilities jsonb NOT NULL,
    capacity jsonb NOT NULL,
    allocated jsonb NOT NULL,
    running integer NOT NULL,
    registered_ms bigint NOT NULL
);
