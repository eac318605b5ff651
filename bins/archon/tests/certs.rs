//! `archon certs` as a user runs it: a CA, a certificate of each role, `show`
//! reading them back (as text and JSON), keys 0600 and never printed, and bad
//! input refused with exit 2 naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{CLI, text};

fn archon(args: &[&str]) -> std::process::Output {
    Command::new(CLI).args(args).output().unwrap()
}

#[test]
fn a_cluster_ca_issues_managers_workers_and_clients_and_show_reads_their_roles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = archon(&["certs", "init", "--dir", d, "--name", "prod"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (role, name, extra) in [
        ("manager", "m1", vec!["--san", "10.0.0.5", "--san", "m1.internal"]),
        ("worker", "w1", vec![]),
        ("client", "ops", vec![]),
    ] {
        let mut args = vec!["certs", "issue", role, name, "--dir", d];
        args.extend(extra);
        let out = archon(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
        let key = std::fs::read_to_string(dir.path().join(format!("{name}.key"))).unwrap();
        assert!(key.contains("PRIVATE KEY") && !printed.contains("PRIVATE KEY"), "a key was printed: {printed}");
        let mode = std::fs::metadata(dir.path().join(format!("{name}.key"))).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let pem = dir.path().join(format!("{name}.pem"));
        let shown = archon(&["certs", "show", pem.to_str().unwrap(), "--output", "json"]);
        assert!(shown.status.success(), "{}", text(&shown.stderr));
        let info: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        assert_eq!(info["role"], role, "{info}");
        assert_eq!(info["valid_now"], true, "{info}");
        assert!(info["issuer"].as_str().unwrap().contains("CN=prod CA"), "{info}");
        let table = text(&archon(&["certs", "show", pem.to_str().unwrap()]).stdout);
        assert!(table.contains(&format!("role:       {role}")), "{table}");
    }
    let m1 = text(&archon(&["certs", "show", dir.path().join("m1.pem").to_str().unwrap()]).stdout);
    assert!(m1.contains("IP:10.0.0.5") && m1.contains("DNS:m1.internal") && m1.contains("DNS:m1"), "{m1}");
    // A year for members, ten for the CA.
    let year = |file: &str, key: &str| {
        let info: serde_json::Value = serde_json::from_slice(
            &archon(&["certs", "show", dir.path().join(file).to_str().unwrap(), "-o", "json"]).stdout,
        )
        .unwrap();
        info[key].as_str().unwrap()[..4].parse::<i32>().unwrap()
    };
    assert_eq!(year("w1.pem", "not_after") - year("w1.pem", "not_before"), 1);
    assert_eq!(year("ca.pem", "not_after") - year("ca.pem", "not_before"), 10);
}

#[test]
fn bad_certificate_input_exits_2_naming_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let refused = |args: &[&str], expected: &str| {
        let out = archon(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(expected), "{args:?}: {}", text(&out.stderr));
    };
    refused(&["certs", "issue", "worker", "w1", "--dir", d], "run `archon certs init` first");
    assert!(archon(&["certs", "init", "--dir", d]).status.success());
    refused(&["certs", "init", "--dir", d], "already exists (pass --force");
    refused(&["certs", "issue", "worker", "a/b", "--dir", d], "NAME: \"a/b\" is not a name");
    refused(&["certs", "issue", "manager", "m1", "--san", "no such host", "--dir", d], "--san: ");
    refused(&["certs", "issue", "client", "c1", "--days", "0", "--dir", d], "--days: must be between 1 and 36500");
    refused(&["certs", "show", dir.path().join("ca.key").to_str().unwrap()], "not a PEM certificate");
    let out = archon(&["certs", "issue", "admin", "x", "--dir", d]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not a role (manager, worker or client)"), "{}", text(&out.stderr));
}
