//! One function per subcommand. Everything but `dev` talks to a manager through an
//! `Arc<dyn Api>` (the gRPC client), so the same code would drive an in-process one.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use archon_core::Error;
use archon_core::api::{Api, CancelTarget, JobQuery, RunDetail, RunQuery, WorkflowQuery};
use archon_core::clock::{Clock, SystemClock};
use archon_core::model::{
    JobId, JobSpec, OutputStream, RunId, RunState, TaskKind, WorkerId, WorkflowId, WorkflowState,
};
use futures::StreamExt;
use serde::Serialize;

use crate::cli::{Cli, ClusterCommand, Command, Format, SubmitArgs};
use archon_http::spec::{CpuDraft, DockerDraft, JobDraft, Naming, ScheduleDraft, SpecFileContent, read_any_spec_file};
use archon_http::views::{
    JobDetailView, JobPage, RunDetailView, RunPage, SubmittedView, WorkerView, WorkersView, WorkflowDetailView,
    WorkflowPage,
};

mod connection;
#[cfg(test)]
mod fuzz_flags;
mod schedule;
mod token;
mod workflow;

use crate::{EXIT_BAD_INPUT, render};
pub(crate) use connection::{connect, split_servers};

/// Prints a line to stdout. A closed stdout (`archon jobs | head -1`) ends the CLI
/// quietly with 141, as a Unix tool killed by SIGPIPE would, instead of a panic.
macro_rules! outln {
    ($($arg:tt)*) => {
        print_line(format_args!($($arg)*))
    };
}

pub(crate) fn print_line(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(141);
    }
}

/// Bad input found on this side (a flag, a file, an id): exits with 2.
#[derive(Debug)]
pub(crate) struct BadInput(pub(crate) String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

fn bad(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(msg.into()))
}

/// 2 for bad input (ours or the manager's verdict), 1 for everything else.
pub(crate) fn exit_code_for(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<BadInput>().is_some() {
        return EXIT_BAD_INPUT;
    }
    match e.downcast_ref::<Error>() {
        Some(Error::NotFound(_) | Error::Removed { .. } | Error::InvalidArgument { .. } | Error::Rejected(_)) => {
            EXIT_BAD_INPUT
        }
        _ => 1,
    }
}

pub(crate) async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let format = cli.output;
    let server = match &cli.command {
        Command::Dev(_) | Command::Certs(_) => String::new(),
        _ => connection::resolve(&cli)?,
    };
    match cli.command {
        Command::Dev(args) => {
            let mut config = crate::dev::DevConfig::new(args.listen);
            if let Some(name) = args.worker_name {
                config.worker_name = name;
            }
            if let Some(cpu) = args.cpu {
                config.capacity.cpu_millis = cpu;
            }
            if let Some(mem) = args.memory {
                config.capacity.memory_bytes = mem;
            }
            config.labels = args.labels.into_iter().collect();
            if let Some(n) = args.queue {
                config.queue = n;
            }
            if let Some(dir) = args.data_dir {
                config.data_dir = dir;
            }
            config.store = args.store;
            config.insecure = args.insecure;
            config.cli_config = args.cli_config;
            config.keeping.apply(&args.keeping).map_err(|e| {
                let text = e.to_string();
                // Named as the flag: --history-retention, not history_retention.
                bad(match text.split_once(": ") {
                    Some((key, rest)) => format!("--{}: {rest}", key.replace('_', "-")),
                    None => text,
                })
            })?;
            let shutdown = crate::shutdown_on_signals();
            let (executors, ledger) =
                crate::executors::for_worker(&config.worker_name, &config.data_dir, &args.docker.options())
                    .await
                    .with_context(|| {
                        format!("--data-dir {}: each archon dev needs its own", config.data_dir.display())
                    })?;
            crate::dev::run(config, executors, Some(ledger), shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit(args) => {
            let spec = submit_spec(*args.clone())?;
            let api = connect(&server).await?;
            submit(api.as_ref(), vec![spec], args.wait, format).await
        }
        Command::Run(args) => match read_any_spec_file(&args.file).map_err(|e| bad(e.to_string()))? {
            SpecFileContent::Jobs(specs) => {
                let api = connect(&server).await?;
                submit(api.as_ref(), specs, args.wait, format).await
            }
            SpecFileContent::Workflow(spec) => {
                let api = connect(&server).await?;
                workflow::submit(api.as_ref(), spec, args.wait, format).await
            }
        },
        Command::Status => {
            let api = connect(&server).await?;
            let status = api.status().await?;
            print(format, &status, || render::status(&status))
        }
        Command::Jobs(args) => {
            let before = args.before.as_deref().map(|b| parse_id::<JobId>("--before", b)).transpose()?;
            let kind = args
                .kind
                .as_deref()
                .map(|k| k.parse::<TaskKind>().map_err(|e| bad(format!("--kind: {e}"))))
                .transpose()?;
            let state = args
                .state
                .as_deref()
                .map(|s| s.parse::<RunState>().map_err(|e| bad(format!("--state: {e}"))))
                .transpose()?;
            let api = connect(&server).await?;
            let query = JobQuery { name: args.name, before, limit: Some(args.limit), kind, state };
            let page = api.list_jobs(query).await?;
            print(format, &JobPage::from(&page), || {
                let mut out = render::jobs(&page.items);
                if let Some(next) = page.next {
                    out.push_str(&format!("\nmore: archon jobs --before {next}"));
                }
                out
            })
        }
        Command::Workflows(args) => {
            let before = args.before.as_deref().map(|b| parse_id::<WorkflowId>("--before", b)).transpose()?;
            let state = args
                .state
                .as_deref()
                .map(|s| s.parse::<WorkflowState>().map_err(|e| bad(format!("--state: {e}"))))
                .transpose()?;
            let api = connect(&server).await?;
            let query = WorkflowQuery { name: args.name, state, before, limit: Some(args.limit) };
            let page = api.list_workflows(query).await?;
            print(format, &WorkflowPage::from(&page), || {
                let mut out = render::workflows(&page.items);
                if let Some(next) = page.next {
                    out.push_str(&format!("\nmore: archon workflows --before {next}"));
                }
                out
            })
        }
        Command::Runs(args) => {
            let job = args.job.as_deref().map(|j| parse_id::<JobId>("--job", j)).transpose()?;
            let before = args.before.as_deref().map(|b| parse_id::<RunId>("--before", b)).transpose()?;
            let state = args
                .state
                .as_deref()
                .map(|s| s.parse::<RunState>().map_err(|e| bad(format!("--state: {e}"))))
                .transpose()?;
            let since = args.since.as_deref().map(|t| parse_instant("--since", t)).transpose()?;
            let until = args.until.as_deref().map(|t| parse_instant("--until", t)).transpose()?;
            let api = connect(&server).await?;
            let page = api.list_runs(RunQuery { job, state, before, limit: Some(args.limit), since, until }).await?;
            print(format, &RunPage::from(&page), || {
                let mut out = render::runs(&page.items);
                if let Some(next) = page.next {
                    out.push_str(&format!("\nmore: archon runs --before {next}"));
                }
                out
            })
        }
        Command::Get { id } => {
            let target = parse_target("ID", &id)?;
            let api = connect(&server).await?;
            match target {
                CancelTarget::Job(job) => {
                    let d = api.get_job(job).await?;
                    print(format, &JobDetailView::from(&d), || render::job(&d))
                }
                CancelTarget::Run(run) => {
                    let d = api.get_run(run).await?;
                    print(format, &RunDetailView::from(&d), || render::run(&d))
                }
                CancelTarget::Workflow(wf) => {
                    let d = api.get_workflow(wf).await?;
                    print(format, &WorkflowDetailView::from(&d), || render::workflow(&d))
                }
            }
        }
        Command::Logs { follow, run } => {
            let run = parse_id::<RunId>("RUN", &run)?;
            let api = connect(&server).await?;
            if follow {
                stream_output(api.as_ref(), run).await?;
            } else {
                let d = api.get_run(run).await?;
                match d.attempts.last().and_then(|a| a.result.as_ref()) {
                    Some(r) => {
                        write_out(OutputStream::Stdout, &r.stdout.data)?;
                        write_out(OutputStream::Stderr, &r.stderr.data)?;
                    }
                    None => eprintln!("{run} is {} and has no finished attempt yet; use -f to follow it", d.run.state),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { id } => {
            let target = parse_target("ID", &id)?;
            let api = connect(&server).await?;
            api.cancel(target).await?;
            outln!("cancel requested for {id}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Drain { worker } | Command::Undrain { worker } if worker.trim().is_empty() => {
            Err(bad("WORKER: give a worker id (w-3) or name"))
        }
        Command::Drain { worker } => set_draining(&server, &worker, true).await,
        Command::Undrain { worker } => set_draining(&server, &worker, false).await,
        Command::Cluster(ClusterCommand::Members) => {
            let managers = members(&server).await?;
            print(format, &managers, || render::managers(&managers))
        }
        Command::Cluster(ClusterCommand::Remove { node_id }) => {
            let admin = archon_raft::network::AdminClient::with_dialer(split_servers(&server), connection::dialer());
            let members = admin.remove(node_id).await.map_err(archon_core::Error::from)?;
            let voters: Vec<String> = members.voters.iter().map(|m| format!("{} ({})", m.id, m.address)).collect();
            outln!("node {node_id} is out of the group; voters now: {}", voters.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Workers => {
            let api = connect(&server).await?;
            let workers = api.list_workers().await?;
            let view = WorkersView { items: workers.iter().map(WorkerView::from).collect() };
            print(format, &view, || render::workers(&workers, SystemClock.now()))
        }
        Command::Schedule(command) => schedule::dispatch(&server, format, command).await,
        Command::Certs(command) => certs(format, command),
        Command::Token(command) => token::dispatch(&server, format, command).await,
    }
}

/// The group as its leader knows it (a removed or partitioned manager's own view
/// may be stale), with each member's own report of its role and progress.
async fn members(server: &str) -> anyhow::Result<Vec<archon_core::api::ManagerInfo>> {
    let admin = archon_raft::network::AdminClient::with_dialer(split_servers(server), connection::dialer());
    let members = admin.members().await.map_err(archon_core::Error::from)?;
    let all = members.voters.into_iter().chain(members.learners);
    let asks = all.map(|m| {
        let admin = admin.clone();
        async move {
            match admin.node_status(&m.address).await {
                Ok(s) => archon_core::api::ManagerInfo {
                    id: m.id,
                    address: m.address,
                    role: s.role,
                    term: s.term,
                    last_applied: s.last_applied.unwrap_or_default(),
                },
                Err(_) => archon_core::api::ManagerInfo {
                    id: m.id,
                    address: m.address,
                    role: "unreachable".into(),
                    term: 0,
                    last_applied: 0,
                },
            }
        }
    });
    Ok(futures::future::join_all(asks).await)
}

async fn set_draining(server: &str, worker: &str, draining: bool) -> anyhow::Result<ExitCode> {
    let api = connect(server).await?;
    let id = match worker.parse::<WorkerId>() {
        Ok(id) if worker.starts_with(WorkerId::PREFIX) => id,
        _ => api
            .list_workers()
            .await?
            .into_iter()
            .find(|w| w.worker.name == worker)
            .map(|w| w.worker.id)
            .ok_or_else(|| bad(format!("WORKER: no worker named or numbered {worker:?} (see archon workers)")))?,
    };
    api.set_draining(id, draining).await?;
    if draining {
        outln!("{id} ({worker}) is draining: no new jobs; running ones finish");
    } else {
        outln!("{id} ({worker}) takes jobs again");
    }
    Ok(ExitCode::SUCCESS)
}

/// A token unique to this invocation (time, process and a random hasher seed).
fn unique_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Prints `value` as JSON or `table()` as text. Every `value` is the REST API's
/// view of the object (`archon_http::views`, ids as `run-3`, instants in RFC
/// 3339): `archon get run-3 -o json` prints what `GET /api/v1/runs/run-3` answers.
fn print<T: Serialize>(format: Format, value: &T, table: impl FnOnce() -> String) -> anyhow::Result<ExitCode> {
    match format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(value).context("encoding JSON")?),
        Format::Table => outln!("{}", table().trim_end()),
    }
    Ok(ExitCode::SUCCESS)
}

/// An instant given as a time ago (`90m`, `2h`) or an RFC 3339 date (`2026-12-01T10:00:00Z`).
fn parse_instant(flag: &str, text: &str) -> anyhow::Result<archon_core::model::Timestamp> {
    if let Ok(ago) = archon_core::model::units::parse_duration(text) {
        let now = archon_core::clock::Clock::now(&archon_core::clock::SystemClock);
        return Ok(archon_core::model::Timestamp(
            now.0.saturating_sub(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX)),
        ));
    }
    let at = humantime::parse_rfc3339_weak(text.trim()).map_err(|_| {
        bad(format!("{flag}: {text:?} is neither a time ago nor a date (try 2h, 30m or 2026-12-01T10:00:00Z)"))
    })?;
    let ms = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Ok(archon_core::model::Timestamp(ms))
}

fn parse_id<T: std::str::FromStr<Err = archon_core::model::ParseIdError>>(what: &str, s: &str) -> anyhow::Result<T> {
    s.parse::<T>().map_err(|e| bad(format!("{what}: {e}")))
}

/// `job-N` or `run-N`; a bare number is ambiguous.
fn parse_target(what: &str, s: &str) -> anyhow::Result<CancelTarget> {
    let s = s.trim();
    if s.starts_with(JobId::PREFIX) {
        Ok(CancelTarget::Job(parse_id(what, s)?))
    } else if s.starts_with(RunId::PREFIX) {
        Ok(CancelTarget::Run(parse_id(what, s)?))
    } else if s.starts_with(WorkflowId::PREFIX) {
        Ok(CancelTarget::Workflow(parse_id(what, s)?))
    } else {
        Err(bad(format!("{what}: {s:?} is not a job, run or workflow id (try job-12, run-12 or wf-12)")))
    }
}

fn submit_spec(args: SubmitArgs) -> anyhow::Result<JobSpec> {
    let script = match &args.script {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|e| bad(format!("--script: cannot read {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let mut env = std::collections::BTreeMap::new();
    for kv in &args.env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                env.insert(k.to_owned(), v.to_owned());
            }
            _ => return Err(bad(format!("--env: {kv:?} is not NAME=value"))),
        }
    }
    // NAME=value, or NAME alone for the value of $NAME here (kept out of argv).
    let mut secret_env = std::collections::BTreeMap::new();
    for kv in &args.secret_env {
        let (name, value) = match kv.split_once('=') {
            Some((k, v)) => (k, v.to_owned()),
            // (An empty name, or one with a NUL, is no variable to look up.)
            None if kv.is_empty() || kv.contains('\0') => ("", String::new()),
            None => match std::env::var(kv) {
                Ok(v) => (kv.as_str(), v),
                // Not echoed: a mistyped value may be the secret itself.
                Err(_) => {
                    return Err(bad("--secret-env: a NAME without =value takes $NAME from this shell, and it is not \
                                    set (use NAME=value, or export NAME and give --secret-env NAME)"));
                }
            },
        };
        if name.is_empty() {
            // The text is not echoed: it may hold the secret.
            return Err(bad("--secret-env: a variable needs a name (use NAME=value or NAME)"));
        }
        secret_env.insert(name.to_owned(), archon_core::model::Secret::new(value));
    }
    let input = match &args.input {
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| bad(format!("--input: not JSON ({e}); e.g. '{{\"n\": 1}}'")))?,
        ),
        None => None,
    };
    let draft = JobDraft {
        name: args.name,
        function: args.function,
        executor: args.executor,
        input,
        command: args.command,
        script,
        interpreter: args.script.as_ref().map(|_| args.interpreter.clone()),
        argv: if args.argv.is_empty() || args.docker.is_some() { None } else { Some(args.argv.clone()) },
        docker: args.docker.map(|image| DockerDraft {
            image: Some(image),
            command: args.argv,
            entrypoint: args.entrypoint.map(|e| if e.is_empty() { vec![] } else { vec![e] }),
            network: args.network,
            user: args.user,
            mounts: args.mounts,
            pull: args.pull,
        }),
        timeout: args.timeout,
        max_retries: args.max_retries,
        retry_backoff: args.retry_backoff,
        cpu: args.cpu.map(CpuDraft::Text),
        memory: args.memory,
        bandwidth: args.bandwidth,
        env,
        secret_env,
        workdir: args.workdir,
        constraints: args.constraints,
        priority: args.priority,
        placement: args.placement,
        idempotency_key: args.idempotency_key,
        retention: args.retention,
        keep_last: args.keep_last,
        output_limit: args.output_limit,
        on_disconnect: args.on_disconnect,
        schedule: args.cron.map(|cron| ScheduleDraft {
            cron: Some(cron),
            timezone: args.tz,
            overlap: args.overlap,
            catch_up: args.catch_up,
            jitter: args.jitter,
        }),
        ..JobDraft::default()
    };
    draft.into_spec(Naming::Flags).map_err(|e| bad(e.to_string()))
}

async fn submit(api: &dyn Api, mut specs: Vec<JobSpec>, wait: bool, format: Format) -> anyhow::Result<ExitCode> {
    // Keys make the submit safe to repeat: if the manager fails over mid-call,
    // the client resends it to the new leader without creating a second job.
    let batch = unique_token();
    for (i, spec) in specs.iter_mut().enumerate() {
        spec.idempotency_key.get_or_insert_with(|| format!("cli-{batch}-{i}"));
    }
    let results = api.submit(specs).await?;
    let mut runs = Vec::new();
    let mut lines = Vec::new();
    let mut rejected = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(s) => {
                if format == Format::Table {
                    let dup = if s.duplicate { " (already submitted with this idempotency key)" } else { "" };
                    let run = s.run.map(|r| format!(" as {r}")).unwrap_or_default();
                    eprintln!("submitted {}{run}{dup}", s.job);
                }
                runs.extend(s.run);
                lines.push(SubmittedView::from(&s));
            }
            Err(rejection) => rejected.push(format!("job {i}: {rejection}")),
        }
    }
    // JSON: the REST API's views, a `SubmittedView` per job, or with `--wait`
    // a `RunDetailView` per run (what `GET /api/v1/runs/{id}/wait` answers).
    if format == Format::Json && !wait {
        outln!("{}", serde_json::to_string_pretty(&lines)?);
    }
    if !rejected.is_empty() {
        return Err(bad(if rejected.len() == 1 && lines.is_empty() {
            rejected[0].trim_start_matches("job 0: ").to_owned()
        } else {
            rejected.join("\n")
        }));
    }
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    let mut code = 0;
    let mut details = Vec::new();
    for run in runs {
        if format == Format::Table {
            stream_output(api, run).await?;
        }
        let d = api.wait(run).await?;
        let run_code = exit_code_of(&d);
        if format == Format::Table {
            eprintln!("{} {} ({})", d.run.id, d.run.state, d.exit().map_or("no exit status".into(), |e| e.to_string()));
        }
        if code == 0 {
            code = run_code;
        }
        details.push(RunDetailView::from(&d));
    }
    if format == Format::Json {
        outln!("{}", serde_json::to_string_pretty(&details)?);
    }
    Ok(ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1)))
}

fn exit_code_of(d: &RunDetail) -> i32 {
    match (d.run.state, d.exit()) {
        (RunState::Succeeded, _) => 0,
        (_, Some(status)) => status.shell_code(),
        (RunState::Cancelled, None) => 130,
        _ => 1,
    }
}

async fn stream_output(api: &dyn Api, run: RunId) -> anyhow::Result<()> {
    let mut stream = api.follow(run).await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        write_out(chunk.stream, &chunk.data)?;
    }
    Ok(())
}

fn write_out(stream: OutputStream, data: &[u8]) -> anyhow::Result<()> {
    match stream {
        OutputStream::Stdout => {
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(data).and_then(|()| out.flush()) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    std::process::exit(141);
                }
                return Err(e.into());
            }
        }
        OutputStream::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(data)?;
            err.flush()?;
        }
    }
    Ok(())
}

/// `archon certs …`: files only, no manager involved.
fn certs(format: Format, command: crate::cli::CertsCommand) -> anyhow::Result<ExitCode> {
    use crate::certs;
    use crate::cli::CertsCommand;
    let wrote = |w: certs::Written| {
        println!("wrote {} and {} (key 0600)", w.cert.display(), w.key.display());
        Ok(ExitCode::SUCCESS)
    };
    match command {
        CertsCommand::Init { dir, name, days, force } => wrote(certs::init(&dir, &name, days, force).map_err(to_bad)?),
        CertsCommand::Issue { role, name, sans, dir, days, force } => {
            wrote(certs::issue(&dir, role, &name, &sans, days, force).map_err(to_bad)?)
        }
        CertsCommand::Show { file } => {
            let info = certs::show(&file).map_err(to_bad)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&info)?),
                Format::Table => {
                    println!("subject:    {}", info.subject);
                    println!("issuer:     {}", info.issuer);
                    println!("role:       {}", info.role.as_deref().unwrap_or(if info.ca { "CA" } else { "none" }));
                    println!(
                        "names:      {}",
                        if info.sans.is_empty() { "-".to_owned() } else { info.sans.join(", ") }
                    );
                    println!(
                        "valid:      {} to {}{}",
                        info.not_before,
                        info.not_after,
                        if info.valid_now { "" } else { " (not valid now)" }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A certificate error is the user's input: exit 2 with its message.
fn to_bad(e: anyhow::Error) -> anyhow::Error {
    bad(format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::submit_spec;
    use crate::cli::{Cli, Command};
    use archon_core::model::OnDisconnect;

    fn submit(words: &[&str]) -> Result<archon_core::model::JobSpec, String> {
        let line = ["archon", "submit", "--command", "true"].into_iter().chain(words.iter().copied());
        match Cli::try_parse_from(line).map_err(|e| e.to_string())?.command {
            Command::Submit(args) => submit_spec(*args).map_err(|e| e.to_string()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn on_disconnect_is_kill_unless_the_flag_says_keep_and_other_values_name_the_flag() {
        assert_eq!(submit(&[]).unwrap().on_disconnect, OnDisconnect::Kill);
        assert_eq!(submit(&["--on-disconnect", "keep"]).unwrap().on_disconnect, OnDisconnect::Keep);
        assert_eq!(submit(&["--on-disconnect", "kill"]).unwrap().on_disconnect, OnDisconnect::Kill);
        let e = submit(&["--on-disconnect", "linger"]).unwrap_err();
        assert_eq!(e, "--on-disconnect: \"linger\" is not an on-disconnect choice (use kill or keep)");
    }

    /// `archon submit WORDS` without the default `--command`.
    fn submit_only(words: &[&str]) -> Result<archon_core::model::JobSpec, String> {
        let line = ["archon", "submit"].into_iter().chain(words.iter().copied());
        match Cli::try_parse_from(line).map_err(|e| e.to_string())?.command {
            Command::Submit(args) => submit_spec(*args).map_err(|e| e.to_string()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn executor_submits_a_custom_task_with_its_input_and_a_bad_one_names_the_flag() {
        use archon_core::model::Task;
        let spec = submit_only(&["--executor", "http", "--input", r#"{"url": "http://example.test/"}"#]).unwrap();
        assert_eq!(
            spec.task,
            Task::Custom { executor: "http".into(), input: r#"{"url":"http://example.test/"}"#.into() }
        );
        assert_eq!(spec.name, "http");
        let spec = submit_only(&["--executor", "http"]).unwrap();
        assert_eq!(spec.task, Task::Custom { executor: "http".into(), input: "null".into() });

        let e = submit_only(&["--executor", "two words"]).unwrap_err();
        assert!(e.starts_with("--executor: \"two words\" is not an executor name"), "{e}");
        let e = submit_only(&["--executor", "http", "--command", "true"]).unwrap_err();
        assert!(e.contains("--executor") && e.contains("--command"), "{e}");
        let e = submit_only(&["--command", "true", "--input", "{}"]).unwrap_err();
        assert!(e.contains("--input") && e.contains("--function") && e.contains("--executor"), "{e}");
    }
}
