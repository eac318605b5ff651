DROP TABLE archon_workflows;
