//! The tables, as diesel sees them (generated `*_at` columns are left out: they
//! are computed by PostgreSQL and only read by operators).

diesel::table! {
    archon_leader (id) {
        id -> SmallInt,
        term -> BigInt,
        holder -> Text,
        address -> Text,
        since_ms -> BigInt,
    }
}

diesel::table! {
    archon_log (index) {
        index -> BigInt,
        term -> BigInt,
        command -> Jsonb,
        format -> SmallInt,
    }
}

diesel::table! {
    archon_snapshots (index) {
        index -> BigInt,
        state -> Jsonb,
    }
}

diesel::table! {
    archon_jobs (id) {
        id -> BigInt,
        name -> Text,
        kind -> Text,
        spec -> Jsonb,
        cancelled -> Bool,
        runs -> Integer,
        created_ms -> BigInt,
    }
}

diesel::table! {
    archon_runs (id) {
        id -> BigInt,
        job_id -> BigInt,
        state -> Text,
        attempts -> Integer,
        retries_used -> Integer,
        reason -> Nullable<Text>,
        created_ms -> BigInt,
        finished_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    archon_attempts (id) {
        id -> BigInt,
        run_id -> BigInt,
        worker_id -> BigInt,
        state -> Text,
        status -> Nullable<Jsonb>,
        exit_code -> Nullable<Integer>,
        assigned_ms -> BigInt,
        started_ms -> Nullable<BigInt>,
        finished_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    archon_workers (id) {
        id -> BigInt,
        name -> Text,
        address -> Text,
        state -> Text,
        labels -> Jsonb,
        capabilities -> Jsonb,
        capacity -> Jsonb,
        allocated -> Jsonb,
        running -> Integer,
        registered_ms -> BigInt,
    }
}

diesel::table! {
    archon_output (attempt_id, stream, byte_offset) {
        attempt_id -> BigInt,
        stream -> SmallInt,
        byte_offset -> BigInt,
        run_id -> BigInt,
        data -> Bytea,
    }
}

diesel::table! {
    archon_workflows (id) {
        id -> BigInt,
        name -> Text,
        state -> Text,
        created_ms -> BigInt,
        finished_ms -> BigInt,
        record -> Jsonb,
    }
}
