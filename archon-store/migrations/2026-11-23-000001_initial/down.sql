DROP TABLE archon_workers;
DROP TABLE archon_attempts;
DROP TABLE archon_runs;
DROP TABLE archon_jobs;
DROP TABLE archon_snapshots;
DROP TABLE archon_log;
DROP TABLE archon_leader;
