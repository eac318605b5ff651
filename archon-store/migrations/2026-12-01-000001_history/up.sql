-- History: finished runs and retired jobs leave the managers' memory; their
-- records are kept here and read back by index, and the retention policy
-- deletes them. Runs and jobs of Archon 0.1 get their records when a manager of
-- this version first writes (it upgrades the state it loaded).

-- The format each command was written in (0: Archon 0.1).
ALTER TABLE archon_log ADD COLUMN format smallint NOT NULL DEFAULT 0;

-- A finished run's record (run, attempts, results without output bytes): set
-- when the run leaves the managers' memory; NULL while it is live.
ALTER TABLE archon_runs ADD COLUMN record jsonb;
-- When the job's own retention removes it (NULL: the cluster's default applies).
ALTER TABLE archon_runs ADD COLUMN expires_ms bigint;
ALTER TABLE archon_runs ADD COLUMN expires_at timestamptz GENERATED ALWAYS AS (to_timestamp(expires_ms / 1000.0)) STORED;
CREATE INDEX archon_runs_history_state ON archon_runs (state, id) WHERE record IS NOT NULL;
CREATE INDEX archon_runs_history_finished ON archon_runs (finished_ms, id) WHERE record IS NOT NULL;
CREATE INDEX archon_runs_history_expires ON archon_runs (expires_ms, id) WHERE record IS NOT NULL AND expires_ms IS NOT NULL;

-- A retired job's record and how its last run ended.
ALTER TABLE archon_jobs ADD COLUMN record jsonb;
ALTER TABLE archon_jobs ADD COLUMN last_state text;
CREATE INDEX archon_jobs_history ON archon_jobs (id) WHERE record IS NOT NULL;

-- Each attempt's kept output, in chunks: stream 0 is stdout, 1 stderr.
CREATE TABLE archon_output (
    attempt_id bigint NOT NULL,
    stream smallint NOT NULL,
    byte_offset bigint NOT NULL,
    run_id bigint NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (attempt_id, stream, byte_offset)
);
CREATE INDEX archon_output_run ON archon_output (run_id);
