//! Whole-cluster simulations: each test runs seeded simulations and prints the
//! seed and how to replay it (`scripts/soak --seed N TEST`). `scripts/soak N`
//! runs N seeds; they are deterministic only with tokio's scheduler seeded
//! (`--cfg tokio_unstable`, which `.cargo/config.toml` gives every build).

use archon_sim::seed::{replay_command, seeds_or};
use archon_sim::{Faults, SimConfig, SimReport};

fn simulate(test: &str, config: &SimConfig) -> SimReport {
    // `RUST_LOG=…` shows what the hosts log, stamped with the simulation's time.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    }
    eprintln!("seed {} — replay: {}", config.seed, replay_command(config.seed, test));
    match archon_sim::run(config) {
        Ok(report) => {
            if std::env::var_os("ARCHON_SIM_TRACE").is_some() {
                eprintln!("{}", report.trace.render());
            }
            eprintln!(
                "seed {}: {} events in {:?} of virtual time, {} snapshots built and {} installed, trace {}",
                report.seed,
                report.trace.entries().len(),
                report.elapsed,
                report.snapshots.0,
                report.snapshots.1,
                report.hash
            );
            report
        }
        Err(e) => {
            eprintln!("{}", e.trace.render());
            panic!("{e}\nreplay: {}", replay_command(config.seed, test));
        }
    }
}

fn with_faults(seed: u64) -> SimConfig {
    SimConfig {
        faults: Faults { crash_leader: true, isolate_leader: true, ..Faults::default() },
        ..SimConfig::new(seed)
    }
}

/// Twelve faults of every kind after one another, some overlapping, on a
/// cluster of three managers and five workers running thirty jobs.
fn storm(seed: u64) -> SimConfig {
    SimConfig { jobs: 30, faults: Faults { storm: 12, ..Faults::default() }, ..SimConfig::new(seed) }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let test = "the_same_seed_gives_the_same_trace";
    // Without it tokio picks `select!` branches and wakes tasks from an
    // unseeded generator, and a seed's trace may differ between runs.
    #[cfg(not(tokio_unstable))]
    panic!(
        "{test}: the simulation is deterministic only with tokio's scheduler seeded: run it with \
         `--cfg tokio_unstable` (`.cargo/config.toml` sets it; a RUSTFLAGS variable replaces it)"
    );
    #[cfg(tokio_unstable)]
    same_trace_twice(test);
}

/// Up to five seeds of a soak (one by default), each run twice.
#[cfg(tokio_unstable)]
fn same_trace_twice(test: &str) {
    for seed in seeds_or(163).take(5) {
        same_trace(test, &storm(seed));
    }
}

#[cfg(tokio_unstable)]
fn same_trace(test: &str, config: &SimConfig) {
    let config = config.clone();
    let first = simulate(test, &config);
    let second = simulate(test, &config);
    if first.hash != second.hash {
        let (a, b) = (first.trace.render(), second.trace.render());
        let diverged =
            a.lines().zip(b.lines()).position(|(x, y)| x != y).unwrap_or(a.lines().count().min(b.lines().count()));
        let show = |t: &str| t.lines().skip(diverged.saturating_sub(3)).take(8).collect::<Vec<_>>().join("\n");
        panic!(
            "seed {}: two runs differ from event {diverged}:\nfirst:\n{}\nsecond:\n{}\nreplay: {}",
            config.seed,
            show(&a),
            show(&b),
            replay_command(config.seed, test)
        );
    }
    first.assert_holds(test);
}

#[test]
fn a_crashed_then_isolated_leader_loses_no_acknowledged_submit() {
    let test = "a_crashed_then_isolated_leader_loses_no_acknowledged_submit";
    for seed in seeds_or(7) {
        crashed_then_isolated(test, seed);
    }
}

fn crashed_then_isolated(test: &str, seed: u64) {
    let report = simulate(test, &with_faults(seed));
    let faults: Vec<String> = report
        .trace
        .entries()
        .into_iter()
        .filter_map(|e| match e.event {
            archon_sim::trace::Event::Fault { what } => Some(what),
            _ => None,
        })
        .collect();
    assert_eq!(faults.len(), 4, "crash, restart, isolate, heal: {faults:?}");
    report.assert_holds(test);
}

#[test]
fn a_storm_of_seeded_faults_breaks_no_invariant() {
    let test = "a_storm_of_seeded_faults_breaks_no_invariant";
    for seed in seeds_or(11) {
        let report = simulate(test, &storm(seed));
        let faults =
            report.trace.entries().into_iter().filter(|e| matches!(e.event, archon_sim::trace::Event::Fault { .. }));
        assert!(faults.count() >= 12, "seed {seed}: fewer faults than planned");
        report.assert_holds(test);
    }
}

#[test]
fn a_manager_far_behind_catches_up_from_the_leaders_snapshot() {
    let test = "a_manager_far_behind_catches_up_from_the_leaders_snapshot";
    for seed in seeds_or(5) {
        let config =
            SimConfig { jobs: 30, faults: Faults { lag_follower: true, ..Faults::default() }, ..SimConfig::new(seed) };
        let report = simulate(test, &config);
        report.assert_holds(test);
        let (built, installed) = report.snapshots;
        assert!(
            built >= 3 && installed >= 1,
            "seed {seed}: {built} snapshots built and {installed} installed; the lagging manager should have \
             been sent one\nreplay: {}",
            replay_command(seed, test)
        );
    }
}

/// Seed 7 of the storm once hung a manager for good: deposed with proposals in
/// flight, it installed a snapshot that replaced their entries, and openraft
/// 0.9 never answered them (see `RaftStore::write_entry`). Kept as a pin.
#[test]
fn a_deposed_leader_that_installs_a_snapshot_still_answers_its_proposals() {
    let test = "a_deposed_leader_that_installs_a_snapshot_still_answers_its_proposals";
    let report = simulate(test, &storm(7));
    report.assert_holds(test);
}
