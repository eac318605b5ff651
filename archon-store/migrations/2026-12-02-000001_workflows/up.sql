-- Finished workflows: a workflow leaves the managers' memory with its last job;
-- its record (definition, jobs, how it ended) is kept here until the retention
-- policy deletes it. Its jobs and runs are rows of archon_jobs and archon_runs.
CREATE TABLE archon_workflows (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    state text NOT NULL,
    created_ms bigint NOT NULL,
    finished_ms bigint NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX archon_workflows_finished ON archon_workflows (finished_ms, id);
CREATE INDEX archon_workflows_state ON archon_workflows (state, id);
