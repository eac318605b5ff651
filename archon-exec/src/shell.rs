//! [`ShellExecutor`]: runs [`Task::Shell`] command lines with `sh -c`, in their own
//! process group (see [`crate::child`] for timeouts, cancellation and output).
//!
//! A command line with no shell syntax at all — one program and its arguments,
//! nothing for the shell to expand, quote, redirect or decide — is run without the
//! shell, as GNU make does: `sh -c 'make -j4 all'` would only start `make` in the
//! shell's place, so the executor starts it itself and saves a process image per
//! attempt (about a tenth of the cost of a short job). What the shell would do
//! differently never comes up for such a line: its words are plain (letters,
//! digits and `-_./:,+@=`), the first is a program, not a keyword, builtin or
//! assignment, and a program that cannot be started (not found, not executable)
//! falls back to `sh -c`, so the error and exit code (127, 126) are the shell's.
//! `true` and `false` without arguments are the one case of a builtin run as its
//! program: both do nothing but exit 0 or 1. A job with a working directory keeps
//! the shell, which sets `PWD` to it.

use std::time::Duration;

use archon_core::executor::{ExecContext, Executor};
use archon_core::model::{AttemptResult, Task, TaskKind};
use async_trait::async_trait;

use crate::child::{ChildRunner, Invocation};
use crate::error::ExecError;

/// Runs `Task::Shell { command }` as `sh -c command`. Capability `shell`.
#[derive(Debug, Clone, Default)]
pub struct ShellExecutor {
    runner: ChildRunner,
}

impl ShellExecutor {
    /// A shell executor with the default kill grace ([`crate::DEFAULT_KILL_GRACE`]).
    pub fn new() -> ShellExecutor {
        ShellExecutor::default()
    }

    /// Sets how long the process group gets between SIGTERM and SIGKILL on timeout
    /// or cancel.
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.runner.kill_grace = grace;
        self
    }

    /// Notes each attempt's process group in `ledger` while it runs (see
    /// [`ProcessLedger`](crate::ProcessLedger)).
    pub fn with_ledger(mut self, ledger: std::sync::Arc<crate::ProcessLedger>) -> Self {
        self.runner.ledger = Some(ledger);
        self
    }
}

#[async_trait]
impl Executor for ShellExecutor {
    fn capabilities(&self) -> Vec<String> {
        vec![TaskKind::Shell.as_str().to_owned()]
    }

    async fn execute(&self, ctx: ExecContext) -> AttemptResult {
        let spec = ctx.spec.clone();
        let Task::Shell { command } = &spec.task else {
            let error = ExecError::WrongKind { executor: TaskKind::Shell, task: spec.task.kind() };
            return ctx.output.finish(error.into_status());
        };
        let shell = Invocation { program: "sh", args: vec!["-c".as_ref(), command.as_str().as_ref()] };
        // With a working directory the shell also sets `PWD` for the program; that
        // case keeps the shell rather than guess the path it would give.
        match simple_command(command).filter(|_| spec.working_dir.is_none()) {
            Some(words) => {
                let direct = Invocation { program: words[0], args: words[1..].iter().map(|w| w.as_ref()).collect() };
                self.runner.run_or(direct, Some(shell), ctx).await
            }
            None => self.runner.run_or(shell, None, ctx).await,
        }
    }
}

/// Shell keywords and builtins: a line starting with one of these needs the shell
/// (the builtin may differ from a program of the same name, or there is none).
const SHELL_WORDS: &[&str] = &[
    "!", ".", ":", "[", "alias", "bg", "break", "case", "cd", "chdir", "command", "continue", "do", "done", "echo",
    "elif", "else", "esac", "eval", "exec", "exit", "export", "false", "fc", "fg", "fi", "for", "function", "getopts",
    "hash", "if", "in", "jobs", "kill", "local", "printf", "pwd", "read", "readonly", "return", "select", "set",
    "shift", "source", "test", "then", "times", "trap", "true", "type", "typeset", "ulimit", "umask", "unalias",
    "unset", "until", "wait", "while",
];

/// The words of `command` when it is one program and its plain arguments (see the
/// module docs), or `None` when it needs the shell.
fn simple_command(command: &str) -> Option<Vec<&str>> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:,+@=".contains(c);
    if !command.chars().all(|c| plain(c) || c == ' ' || c == '\t') {
        return None;
    }
    let words: Vec<&str> = command.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
    let first = *words.first()?;
    let builtin_alike = matches!(first, "true" | "false") && words.len() == 1;
    if first.contains('=') || first.starts_with('-') || (SHELL_WORDS.contains(&first) && !builtin_alike) {
        return None;
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::simple_command;

    #[test]
    fn a_program_with_plain_arguments_runs_without_the_shell() {
        assert_eq!(simple_command("true"), Some(vec!["true"]));
        assert_eq!(simple_command("  make -j4\tall  "), Some(vec!["make", "-j4", "all"]));
        assert_eq!(
            simple_command("/usr/bin/env FOO=1 cargo build --release"),
            Some(vec!["/usr/bin/env", "FOO=1", "cargo", "build", "--release"])
        );
        assert_eq!(
            simple_command("curl -fsS http://example.com:80/a,b+c@d"),
            Some(vec!["curl", "-fsS", "http://example.com:80/a,b+c@d"])
        );
    }

    #[test]
    fn anything_the_shell_would_read_differently_keeps_the_shell() {
        for line in [
            "",
            "   ",
            "echo hi",
            "true --version",
            "false 1",
            "exit 3",
            "cd /tmp",
            "pwd",
            "kill 1",
            "FOO=1 env",
            "-x",
            "ls *.rs",
            "echo $HOME",
            "a; b",
            "a && b",
            "a | b",
            "a > out",
            "a < in",
            "a &",
            "ls ~",
            "echo 'x'",
            "echo \"x\"",
            "echo a\\ b",
            "a # comment",
            "a\nb",
            "(a)",
            "{ a; }",
            "if true",
            "[ -f x ]",
            "ls %1",
            "caf\u{e9}",
        ] {
            assert_eq!(simple_command(line), None, "{line:?}");
        }
    }
}
