//! Finished runs and their output live in the history, not in memory: with the
//! shipped binaries on loopback, a burst of large binary output through a
//! three-manager cluster keeps it committing and every byte readable — from
//! followers turned leader, after the worker that ran it is killed — the
//! retention policy and the idempotency window remove what they should and say
//! so, each input limit refuses what passes it with nothing stored, and a job's
//! output limit keeps the tail and counts what it dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{CLI, Proc, cli, daemon_bin, free_ports, id_num, json, text, try_id_num, try_json, wait_for};
use serde_json::Value;

/// The bytes of a JSON output tail (`{"text": "…"}` or `{"base64": "…"}`).
fn bytes_of(output: &Value) -> Vec<u8> {
    match output["text"].as_str() {
        Some(s) => s.as_bytes().to_vec(),
        None => base64::engine::general_purpose::STANDARD.decode(output["base64"].as_str().unwrap()).unwrap(),
    }
}

/// Three managers (one Raft group) and `workers` workers, all processes.
struct Cluster {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    managers: BTreeMap<u64, Proc>,
    workers: Vec<Proc>,
}

impl Cluster {
    fn start(workers: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(3);
        let mut c = Cluster { dir, ports, managers: BTreeMap::new(), workers: Vec::new() };
        for id in 1..=3 {
            c.start_manager(id);
        }
        for i in 1..=workers {
            let log = c.dir.path().join(format!("worker-{i}.log"));
            let (servers, name) = (c.servers(), format!("w{i}"));
            let args =
                ["--manager", &servers, "--name", &name, "--cpu", "8", "--memory", "8GiB", "--reconnect-base", "100ms"];
            c.workers.push(Proc::spawn(&daemon_bin("archon-worker"), &args, &log));
        }
        wait_for(Duration::from_secs(60), "every worker connected", || {
            let w = try_json(&c.servers(), &["workers"])?;
            let n = w["items"].as_array().unwrap().iter().filter(|w| w["connected"] == true).count();
            if n == workers { Ok(()) } else { Err(format!("{n} connected")) }
        });
        c
    }

    fn addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.ports[id as usize - 1])
    }

    fn servers(&self) -> String {
        (1..=3).map(|id| self.addr(id)).collect::<Vec<_>>().join(",")
    }

    fn start_manager(&mut self, id: u64) {
        let peers = (1..=3).map(|i| format!("{i}={}", self.addr(i))).collect::<Vec<_>>().join(",");
        let (listen, node) = (self.addr(id), id.to_string());
        let data = self.dir.path().join(format!("node-{id}"));
        let log = self.dir.path().join(format!("manager-{id}.log"));
        let args = [
            "--listen",
            &listen,
            "--node-id",
            &node,
            "--data-dir",
            data.to_str().unwrap(),
            "--peers",
            &peers,
            "--heartbeat-interval",
            "500ms",
            "--worker-timeout",
            "5s",
        ];
        let mut p = Proc::spawn(&daemon_bin("archon-manager"), &args, &log);
        p.wait_line("archon-manager listening on ", Duration::from_secs(30));
        self.managers.insert(id, p);
    }

    /// Every manager's (role, last applied index), each as it sees itself.
    fn roles(&self) -> Result<BTreeMap<u64, (String, u64)>, String> {
        let mut out = BTreeMap::new();
        for id in self.managers.keys() {
            let s = try_json(&self.addr(*id), &["status"])?;
            let me = s["managers"].as_array().unwrap().iter().find(|m| m["id"] == *id).cloned().ok_or("no self")?;
            out.insert(*id, (me["role"].as_str().unwrap().to_owned(), me["last_applied"].as_u64().unwrap()));
        }
        Ok(out)
    }

    fn leader(&self) -> u64 {
        wait_for(Duration::from_secs(30), "a leader", || {
            let roles = self.roles()?;
            let leaders: Vec<u64> = roles.iter().filter(|(_, (r, _))| r == "leader").map(|(id, _)| *id).collect();
            if leaders.len() == 1 { Ok(leaders[0]) } else { Err(format!("{roles:?}")) }
        })
    }
}

#[test]
fn two_hundred_jobs_printing_a_mebibyte_of_binary_at_once_are_all_kept_through_failover() {
    let mut c = Cluster::start(4);
    let servers = c.servers();
    // Random bytes per job, written first so the test knows what each prints.
    let data = tempfile::tempdir().unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
    eprintln!("output seed {seed}");
    let mut expected = Vec::new();
    for i in 0..200 {
        let bytes: Vec<u8> = (0..1 << 20)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        std::fs::write(data.path().join(format!("out-{i}")), &bytes).unwrap();
        expected.push(bytes);
    }
    // Each job blocks (no CPU) opening its own FIFO until the test opens it.
    let fifos: Vec<std::path::PathBuf> = (0..200).map(|i| data.path().join(format!("go-{i}"))).collect();
    let made = std::process::Command::new("mkfifo").args(&fifos).status().unwrap();
    assert!(made.success(), "mkfifo");
    let mut jobs = String::new();
    for (i, fifo) in fifos.iter().enumerate() {
        let file = data.path().join(format!("out-{i}"));
        jobs.push_str(&format!(
            "[[jobs]]\nname = \"burst-{i}\"\ncpu = \"50m\"\nmemory = \"8MiB\"\ncommand = \"cat {fifo} > /dev/null; cat {file}\"\n",
            fifo = fifo.display(),
            file = file.display()
        ));
    }
    let spec = data.path().join("burst.toml");
    std::fs::write(&spec, jobs).unwrap();
    let submitted = json(&servers, &["run", "-f", spec.to_str().unwrap()]);
    let runs: Vec<u64> = submitted.as_array().unwrap().iter().map(|s| id_num(&s["run"])).collect();
    assert_eq!(runs.len(), 200);
    wait_for(Duration::from_secs(120), "all 200 running", || {
        let page = try_json(&servers, &["runs", "--state", "running", "--limit", "1000"])?;
        let n = page["items"].as_array().unwrap().len();
        if n == 200 { Ok(()) } else { Err(format!("{n} running")) }
    });
    // All at once: 200 MiB of output through the log within a second. Opening a
    // FIFO for writing waits for its job to be reading; closing it lets it go.
    let released = Instant::now();
    for fifo in &fifos {
        drop(std::fs::OpenOptions::new().write(true).open(fifo).unwrap());
    }
    eprintln!("released all 200 in {:?}", released.elapsed());
    // The cluster keeps committing meanwhile: a small job goes through.
    let (_, small) = common::submit(&servers, &["--command", "echo still committing"]).unwrap();
    let ended = common::wait_runs_ended(&servers, &runs, Duration::from_secs(300));
    eprintln!("200 MiB of output committed {:?} after the release", released.elapsed());
    assert!(runs.iter().all(|r| ended[r]["state"] == "succeeded"), "every burst job succeeded");
    common::wait_runs_ended(&servers, &[small], Duration::from_secs(60));

    let check_outputs = |server: &str, when: &str| {
        for (i, run) in runs.iter().enumerate() {
            let d = json(server, &["get", &format!("run-{run}")]);
            let stdout = &d["attempts"][0]["stdout"];
            assert_eq!(stdout["truncated"], 0, "{when}: run-{run}");
            assert!(bytes_of(stdout) == expected[i], "{when}: run-{run}'s output differs");
        }
    };
    check_outputs(&servers, "on the leader");
    // Followers are caught up: every manager applied the same index.
    let caught_up = wait_for(Duration::from_secs(60), "followers caught up", || {
        let roles = c.roles()?;
        let applied: Vec<u64> = roles.values().map(|(_, a)| *a).collect();
        if applied.iter().all(|a| *a == applied[0]) { Ok(applied[0]) } else { Err(format!("{roles:?}")) }
    });
    eprintln!("all three managers applied index {caught_up}");

    // The workers that ran them die, and then the leader: a follower, now
    // leading, has every byte.
    for w in &mut c.workers {
        w.kill9();
    }
    let leader = c.leader();
    c.managers.remove(&leader).unwrap().kill9();
    let new_leader = c.leader();
    assert_ne!(new_leader, leader);
    check_outputs(&c.addr(new_leader), "after the workers and the leader died");
}

/// `archon submit --wait ARGS`: the (job, run) of the run once it ended.
fn submit_wait(server: &str, args: &[&str]) -> (u64, u64) {
    let mut all = vec!["submit", "--wait"];
    all.extend(args);
    let v = json(server, &all);
    (id_num(&v[0]["run"]["job"]), id_num(&v[0]["run"]["id"]))
}

/// `archon dev` with `flags`, its address once it serves.
fn dev(dir: &std::path::Path, flags: &[&str]) -> (Proc, String) {
    let port = free_ports(1)[0];
    let listen = format!("127.0.0.1:{port}");
    let data = dir.join("data");
    let mut args = vec!["dev", "--insecure", "--listen", &listen, "--data-dir", data.to_str().unwrap(), "--no-docker"];
    args.extend(flags);
    let mut p = Proc::spawn(std::path::Path::new(CLI), &args, &dir.join("dev.log"));
    p.wait_line("gRPC API listening on ", Duration::from_secs(60));
    (p, format!("http://{listen}"))
}

#[test]
fn retention_and_the_idempotency_window_remove_what_they_should_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let (_dev, server) = dev(dir.path(), &["--history-retention", "3s", "--idempotency-window", "2s"]);
    let (job, run) = submit_wait(&server, &["--idempotency-key", "once", "--command", "echo kept"]);
    // A finished workflow is kept as long as runs are.
    let flow = dir.path().join("flow.toml");
    std::fs::write(&flow, "[workflow]\nname = \"brief\"\n[[jobs]]\nname = \"a\"\ncommand = \"true\"\n").unwrap();
    let out = cli(&server, &["run", "-f", flow.to_str().unwrap(), "--wait"]);
    assert!(out.status.success(), "{out:?}");
    let d = json(&server, &["get", &format!("run-{run}")]);
    assert_eq!(d["attempts"][0]["stdout"]["text"], "kept\n");
    // Within the window the key returns the first job.
    let again = json(&server, &["submit", "--idempotency-key", "once", "--command", "echo kept"]);
    assert_eq!((try_id_num(&again[0]["job"]), again[0]["duplicate"].as_bool()), (Some(job), Some(true)));
    // A job keeping its runs for less than the cluster does goes first.
    let (_, short) = submit_wait(&server, &["--retention", "1s", "--command", "echo brief"]);
    let gone = |run: u64| {
        let out = cli(&server, &["get", &format!("run-{run}")]);
        let err = text(&out.stderr);
        if out.status.code() == Some(2) && err.contains("was removed by the retention policy") {
            Ok(err)
        } else {
            Err(format!("exit {:?}: {err}", out.status.code()))
        }
    };
    let err = wait_for(Duration::from_secs(30), "the short-lived run removed", || gone(short));
    assert!(
        err.contains(&format!("run-{short} was removed by the retention policy (finished runs are kept 3s")),
        "{err}"
    );
    let err = wait_for(Duration::from_secs(30), "the first run removed", || gone(run));
    assert!(err.contains(&format!("run-{run} was removed")), "{err}");
    // The workflow's job ended a moment after the first run: it goes a moment later.
    wait_for(Duration::from_secs(30), "every job removed", || {
        let jobs = json(&server, &["jobs"]);
        if jobs["items"].as_array().unwrap().is_empty() { Ok(()) } else { Err(jobs.to_string()) }
    });
    wait_for(Duration::from_secs(30), "the workflow removed", || {
        let out = cli(&server, &["get", "wf-1"]);
        let err = text(&out.stderr);
        if err.contains("wf-1 was removed by the retention policy") { Ok(()) } else { Err(err) }
    });
    let listed = json(&server, &["workflows"]);
    assert!(listed["items"].as_array().unwrap().is_empty(), "{listed}");
    let out = cli(&server, &["get", &format!("job-{job}")]);
    assert!(text(&out.stderr).contains(&format!("job-{job} was removed by the retention policy")), "{out:?}");
    // Past the window the key is forgotten: a new job.
    let fresh = wait_for(Duration::from_secs(30), "the key forgotten", || {
        let v = try_json(&server, &["submit", "--idempotency-key", "once", "--command", "echo again"])?;
        if v[0]["duplicate"] == false { Ok(id_num(&v[0]["job"])) } else { Err(v.to_string()) }
    });
    assert!(fresh > job);
    // An id never handed out is not found, not removed.
    let out = cli(&server, &["get", "run-999"]);
    assert!(text(&out.stderr).contains("run-999 not found"), "{out:?}");
}

#[test]
fn each_input_limit_refuses_naming_it_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limits = [
        "--max-task-bytes",
        "1KiB",
        "--max-env-bytes",
        "100",
        "--max-depends-on",
        "2",
        "--max-submit-specs",
        "3",
        "--max-workflow-nodes",
        "2",
        "--max-output-limit",
        "1MiB",
        "--output-limit",
        "2KiB",
    ];
    let (_dev, server) = dev(dir.path(), &limits);
    let refused = |args: &[&str], expected: &str| {
        let out = cli(&server, args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    };
    let long = format!("echo {}", "x".repeat(2000));
    refused(&["submit", "--command", &long], "task: 2.0KiB is more than max_task_bytes (1KiB)");
    let env = format!("BIG={}", "v".repeat(200));
    refused(
        &["submit", "--env", &env, "--command", "true"],
        "env: 203B of variables is more than max_env_bytes (100B)",
    );
    refused(
        &["submit", "--output-limit", "2MiB", "--command", "true"],
        "output_limit: 2MiB per stream is more than this manager's max_output_limit (1MiB)",
    );
    let file = dir.path().join("many.toml");
    std::fs::write(&file, "[[jobs]]\ncommand = \"true\"\n".repeat(4)).unwrap();
    refused(
        &["run", "-f", file.to_str().unwrap()],
        "specs: 4 job specs in one submit is more than max_submit_specs (3)",
    );
    let file = dir.path().join("deps.toml");
    std::fs::write(&file, "command = \"true\"\ndepends_on = [\"job-1\", \"job-2\", \"job-3\"]\n").unwrap();
    refused(&["run", "-f", file.to_str().unwrap()], "depends_on: 3 jobs is more than max_depends_on (2)");
    let file = dir.path().join("flow.toml");
    let jobs: String =
        ["a", "b", "c"].iter().map(|n| format!("[[jobs]]\nname = \"{n}\"\ncommand = \"true\"\n")).collect();
    std::fs::write(&file, format!("[workflow]\nname = \"big\"\n{jobs}")).unwrap();
    refused(&["run", "-f", file.to_str().unwrap()], "nodes: 3 jobs is more than max_workflow_nodes (2)");
    let status = json(&server, &["status"]);
    assert_eq!(status["jobs"], 0, "nothing was stored: {status}");

    // The manager's output limit keeps each stream's tail and counts what it dropped.
    let (_, run) = submit_wait(&server, &["--command", "head -c 5000 /dev/zero | tr '\\0' a; echo end"]);
    let d = json(&server, &["get", &format!("run-{run}")]);
    let stdout = &d["attempts"][0]["stdout"];
    assert_eq!((bytes_of(stdout).len(), stdout["truncated"].as_u64()), (2048, Some(5004 - 2048)), "{d}");
    assert!(bytes_of(stdout).ends_with(b"aaaend\n"));
    // A job's own limit, smaller.
    let (_, run) = submit_wait(&server, &["--output-limit", "100", "--command", "head -c 1000 /dev/zero | tr '\\0' b"]);
    let d = json(&server, &["get", &format!("run-{run}")]);
    let stdout = &d["attempts"][0]["stdout"];
    assert_eq!((bytes_of(stdout).len(), stdout["truncated"].as_u64()), (100, Some(900)), "{d}");
}
