//! The managers' data and the daemons' health: the three managers agreed on
//! their state at one applied index; each one's files verify
//! (`archon-manager verify-data`: a contiguous log, terms that never go back,
//! everything decodes) and rebuild, through that index, the state it reported
//! — the same digest on all three; and no daemon panicked or reported damaged
//! storage in any of its lives.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Evidence, Findings};

/// Runs the data and health checks.
pub(super) fn check(e: &Evidence, f: &mut Findings) {
    replicas(e, f);
    logs(e, f);
}

fn replicas(e: &Evidence, f: &mut Findings) {
    let Some(index) = e.replicas["index"].as_u64() else {
        f.fail(format!("the managers never agreed on one state: {}", e.replicas["error"]));
        return;
    };
    f.figure("log index the replicas were compared at", index);
    let mut digests = BTreeSet::new();
    for (name, v) in &e.verify {
        let report = &v["report"];
        if v["exit"] != 0 || report["problems"] != Value::Array(Vec::new()) {
            f.fail(format!(
                "{name}'s data does not verify (exit {}): {} {}",
                v["exit"],
                report["problems"],
                v["stderr"].as_str().unwrap_or_default().trim()
            ));
            continue;
        }
        let replayed = &report["replayed"];
        if replayed["through"]["index"].as_u64() != Some(index) {
            f.fail(format!("{name}'s files were replayed through {} instead of {index}", replayed["through"]));
        }
        let live = &e.replicas["states"][name];
        for counts in ["jobs", "runs", "workers", "queued"] {
            if replayed["state"][counts] != live[counts] {
                f.fail(format!(
                    "{name}'s files rebuild other {counts} ({}) than it reported ({})",
                    replayed["state"][counts], live[counts]
                ));
            }
        }
        digests.insert(replayed["digest"].as_str().unwrap_or_default().to_owned());
    }
    if digests.len() > 1 {
        f.fail(format!("the managers' files rebuild different states at index {index}: {digests:?}"));
    }
}

/// Lines of a daemon's log that say it panicked, died of an error (its `main`
/// prints `error: …`) or found its storage damaged.
fn trouble(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            // `docker logs --timestamps` puts the time first.
            let text = l.split_once(' ').map_or(*l, |(_, rest)| rest);
            let lower = text.to_lowercase();
            text.starts_with("error:")
                || lower.contains("panicked")
                || lower.contains("corrupt")
                || lower.contains("storage:")
                || lower.contains("redb")
        })
        .collect()
}

fn logs(e: &Evidence, f: &mut Findings) {
    for (node, log) in &e.logs {
        let bad = trouble(log);
        if !bad.is_empty() {
            f.fail(format!("{node} reported trouble ({} lines), e.g. {:?}", bad.len(), &bad[..bad.len().min(3)]));
        }
    }
    let count = |nodes: &str, needles: &[&str]| -> usize {
        e.logs
            .iter()
            .filter(|(n, _)| n.starts_with(nodes))
            .map(|(_, l)| l.lines().filter(|l| needles.iter().any(|n| l.contains(n))).count())
            .sum()
    };
    f.figure("workers: attempts fenced (lease lapsed while running)", count("w", &["attempt fenced"]));
    f.figure("workers: leases lapsed", count("w", &["lease lapsed"]));
    f.figure("managers: workers declared lost", count("m", &["declaring it lost"]));
    f.figure(
        "managers: worker reports refused",
        count("m", &["worker report refused", "reported on an attempt", "reported its attempt as lost"]),
    );
}

#[cfg(test)]
mod tests {
    use super::trouble;

    #[test]
    fn panics_and_damaged_storage_are_trouble_and_ordinary_lines_are_not() {
        let log = "2026-01-01T00:00:00Z thread 'main' panicked at src/x.rs:1\n\
                   2026-01-01T00:00:01Z INFO run finished\n\
                   2026-01-01T00:00:02Z error: cannot open the data dir\n";
        assert_eq!(trouble(log).len(), 2);
    }
}
