#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A shell line that is one program and its plain arguments runs without the
//! shell; anything else, and a program that cannot be started, goes through
//! `sh -c` with the shell's own errors and exit codes.
//!
//! Each test puts a `sh` of its own first in the job's `PATH`: it notes that it
//! ran (on stderr) and hands over to `/bin/sh`, so the output tells which path
//! ran.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use archon_core::executor::{DEFAULT_TAIL_LIMIT, Executor};
use archon_core::model::{AttemptResult, ExitStatus, JobSpec, Task};
use archon_core::testkit::executor_suite::context;
use archon_exec::ShellExecutor;

const SHELL_MARK: &str = "shell-ran";

fn write_program(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A directory with the noting `sh` and a `hello` program.
fn bin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_program(dir.path(), "sh", &format!("#!/bin/sh\necho {SHELL_MARK} >&2\nexec /bin/sh \"$@\"\n"));
    write_program(dir.path(), "hello", "#!/bin/sh\necho \"hello $1 $ARCHON_DIRECT_VAR\"\n");
    std::fs::write(dir.path().join("not-executable"), "#!/bin/sh\necho never\n").unwrap();
    dir
}

async fn run(bin: &Path, command: &str, working_dir: Option<&Path>) -> AttemptResult {
    let mut spec = JobSpec::new("direct", Task::Shell { command: command.into() });
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display());
    spec.env = BTreeMap::from([("PATH".to_owned(), path), ("ARCHON_DIRECT_VAR".to_owned(), "from-env".to_owned())]);
    spec.working_dir = working_dir.map(|d| d.to_str().unwrap().to_owned());
    let (ctx, _cancel) = context(spec, DEFAULT_TAIL_LIMIT, None);
    ShellExecutor::new().execute(ctx).await
}

#[tokio::test]
async fn a_plain_program_line_runs_without_the_shell_and_gets_the_jobs_env() {
    let bin = bin_dir();
    let r = run(bin.path(), "hello world", None).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "stderr {}", r.stderr.text());
    assert_eq!(r.stdout.text(), "hello world from-env\n");
    assert!(!r.stderr.text().contains(SHELL_MARK), "the shell ran: {}", r.stderr.text());
}

#[tokio::test]
async fn shell_syntax_builtins_and_a_working_directory_keep_the_shell() {
    let bin = bin_dir();
    for (command, stdout) in [
        ("hello \"$ARCHON_DIRECT_VAR\"", "hello from-env from-env\n"),
        ("echo hi", "hi\n"),
        ("hello a | tr a-z A-Z", "HELLO A FROM-ENV\n"),
    ] {
        let r = run(bin.path(), command, None).await;
        assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "{command}: stderr {}", r.stderr.text());
        assert_eq!(r.stdout.text(), stdout, "{command}");
        assert!(r.stderr.text().contains(SHELL_MARK), "{command}: the shell did not run");
    }
    let here = tempfile::tempdir().unwrap();
    let r = run(bin.path(), "hello there", Some(here.path())).await;
    assert_eq!(r.stdout.text(), "hello there from-env\n");
    assert!(r.stderr.text().contains(SHELL_MARK), "with a working directory the shell did not run");
}

#[tokio::test]
async fn a_program_that_cannot_start_fails_as_the_shell_says() {
    let bin = bin_dir();
    let r = run(bin.path(), "archon-no-such-program --flag", None).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 127 }, "stderr {}", r.stderr.text());
    assert!(r.stderr.text().contains(SHELL_MARK), "the shell did not run: {}", r.stderr.text());
    assert!(r.stderr.text().contains("archon-no-such-program"), "stderr {}", r.stderr.text());

    // A file that is not executable: whatever code and message the shell gives.
    let r = run(bin.path(), "not-executable", None).await;
    let shell = std::process::Command::new("/bin/sh")
        .args(["-c", "not-executable"])
        .env("PATH", format!("{}:/usr/bin:/bin", bin.path().display()))
        .output()
        .unwrap();
    let code = shell.status.code().unwrap();
    assert_ne!(code, 0);
    assert_eq!(r.status, ExitStatus::Exited { code }, "stderr {}", r.stderr.text());
    assert!(r.stderr.text().contains(SHELL_MARK), "the shell did not run: {}", r.stderr.text());
    assert!(r.stderr.text().contains("Permission denied"), "stderr {}", r.stderr.text());
}
