//! Issue 15 against the real listeners: `archon dev` secured on first start
//! with the CLI needing no flags; tokens created, used, refused for a scope
//! they lack and refused once revoked; and an `archon-manager` with TLS
//! refusing plaintext, TLS 1.2, another CA's certificate, no certificate, an
//! expired one and every certificate of the wrong role — each over a socket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod secure;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use archon_core::auth::Role;
use archon_core::transport::{Hello, Transport};
use archon_net::tls::{ClientTls, Dialer, TlsFiles};
use secure::{SecureDev, SecureManager, certs, client_config, expired, grpc, https, plaintext};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn archon_dev_is_secured_on_first_start_and_the_cli_needs_no_flags() {
    let dev = SecureDev::start();
    assert!(dev.server.starts_with("https://"), "{}", dev.server);
    let mode = std::fs::metadata(&dev.settings).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the settings file holds a token");
    for key in ["ca.key", "dev-admin.key", "dev-manager.key"] {
        let mode = std::fs::metadata(dev.certs.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }

    // No flags: the settings file says where, how and who.
    let out = dev.cli(&["submit", "--wait", "--command", "echo secured"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("secured"), "{}", text(&out.stdout));

    // Plaintext to the TLS port gets nowhere.
    let out = dev.cli(&["--server", &format!("http://{}", dev.addr), "status"]);
    assert!(!out.status.success(), "plaintext reached a TLS port: {}", text(&out.stdout));

    // A token with the scopes it was given, and no more.
    let reader = dev.token("read", None);
    let out = dev.cli(&["--token", &reader, "jobs"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = dev.cli(&["--token", &reader, "submit", "--command", "true"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("needs the submit scope"), "{}", text(&out.stderr));
    let out = dev.cli(&["--token", &reader, "token", "list"]);
    assert!(text(&out.stderr).contains("needs the admin scope"), "{}", text(&out.stderr));

    // Listed without its secret; revoked, it is refused at once.
    let id = &reader["archon_".len()..reader.len() - 65];
    let out = dev.cli(&["token", "list"]);
    assert!(text(&out.stdout).contains(id), "{}", text(&out.stdout));
    assert!(!text(&out.stdout).contains(&reader[reader.len() - 64..]), "a secret was listed");
    let out = dev.cli(&["token", "revoke", id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = dev.cli(&["--token", &reader, "jobs"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("unknown or revoked"), "{}", text(&out.stderr));

    // The data dir's second start keeps the CA and the CLI's token.
    let token = dev.admin_token();
    assert!(token.starts_with("archon_"));
}

/// A CA in a fresh directory with a manager (for localhost), a client, a
/// worker `w1`, and an expired client; plus a second CA with its own client.
struct Pki {
    dir: tempfile::TempDir,
    other: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        certs(dir.path(), &["init"]);
        certs(dir.path(), &["issue", "manager", "manager", "--san", "localhost", "--san", "127.0.0.1"]);
        certs(dir.path(), &["issue", "client", "alice"]);
        certs(dir.path(), &["issue", "worker", "w1"]);
        expired(dir.path(), "client", "old");
        let other = tempfile::tempdir().unwrap();
        certs(other.path(), &["init", "--name", "elsewhere"]);
        certs(other.path(), &["issue", "client", "mallory"]);
        Pki { dir, other }
    }

    fn files(&self, name: &str) -> TlsFiles {
        TlsFiles::in_dir(self.dir.path(), name)
    }

    fn dialer(&self, name: &str, role: Role) -> Dialer {
        Dialer::tls(ClientTls::load(self.files(name), role).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_refuses_plaintext_tls12_strangers_and_the_wrong_roles() {
    let pki = Pki::new();
    let manager = SecureManager::start(pki.dir.path(), &[]);
    let addr = manager.addr;
    let ca = pki.dir.path().join("ca.pem");
    let alice = (pki.dir.path().join("alice.pem"), pki.dir.path().join("alice.key"));
    let tls13 = &[&rustls::version::TLS13];

    // The right client certificate gets an answer (401: no token yet).
    let ok = https(addr, client_config(&ca, Some((&alice.0, &alice.1)), tls13), "GET", "/api/v1/cluster", &[]).await;
    assert_eq!(ok.map(|r| r.0), Ok(401));

    // Plaintext: no HTTP answer at all.
    assert!(!text(&plaintext(addr).await).contains("HTTP/1.1"), "plaintext got an HTTP answer");
    let status = grpc(addr, &Dialer::plain(), "/archon.v1.ArchonApi/Status").await;
    // A transport failure (the TLS port took the HTTP/2 preface for a bad
    // handshake and hung up), never an answer from the API.
    assert!(
        matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Internal | tonic::Code::Cancelled | tonic::Code::Unknown
        ),
        "{status:?}"
    );
    assert!(status.metadata().get("archon-error-bin").is_none(), "{status:?}");

    // TLS 1.2, even with a good certificate.
    let tls12 = client_config(&ca, Some((&alice.0, &alice.1)), &[&rustls::version::TLS12]);
    let refused = https(addr, tls12, "GET", "/api/v1/cluster", &[]).await;
    assert!(refused.is_err(), "TLS 1.2 was accepted: {refused:?}");

    // No client certificate, another CA's, an expired one.
    let none = https(addr, client_config(&ca, None, tls13), "GET", "/api/v1/cluster", &[]).await;
    assert!(none.is_err(), "no client certificate was accepted: {none:?}");
    let other = pki.other.path();
    let stranger = client_config(&ca, Some((&other.join("mallory.pem"), &other.join("mallory.key"))), tls13);
    let refused = https(addr, stranger, "GET", "/api/v1/cluster", &[]).await;
    assert!(refused.is_err(), "another CA's certificate was accepted: {refused:?}");
    let old = (pki.dir.path().join("old.pem"), pki.dir.path().join("old.key"));
    let refused = https(addr, client_config(&ca, Some((&old.0, &old.1)), tls13), "GET", "/api/v1/cluster", &[]).await;
    assert!(refused.is_err(), "an expired certificate was accepted: {refused:?}");

    // Wrong roles: a worker's certificate cannot use the API or speak Raft;
    // a client's cannot open a worker session or speak Raft.
    let worker = pki.dialer("w1", Role::Worker);
    let client = pki.dialer("alice", Role::Client);
    for (dialer, path, who) in [
        (&worker, "/archon.v1.ArchonApi/Status", "worker"),
        (&worker, "/archon.raft.v1.Raft/NodeStatus", "worker"),
        (&worker, "/archon.raft.v1.Raft/AppendEntries", "worker"),
        (&client, "/archon.raft.v1.Raft/Vote", "client"),
        (&client, "/archon.raft.v1.Raft/AddMember", "client"),
        (&client, "/archon.v1.WorkerSessions/OpenSession", "client"),
    ] {
        let status = grpc(addr, dialer, path).await;
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{who} → {path}: {status:?}");
        assert!(status.message().contains(&format!("a {who} certificate may not call")), "{status:?}");
    }
    let admin = archon_raft::network::AdminClient::with_dialer(vec![format!("localhost:{}", addr.port())], client);
    let refused = admin.members().await.unwrap_err();
    assert!(refused.to_string().contains("client certificate may not call archon.raft.v1.Raft"), "{refused}");

    // A manager's certificate may do everything: how the first admin token is made.
    let out = std::process::Command::new(secure::CLI)
        .args(["--server", &format!("https://localhost:{}", addr.port())])
        .arg("--ca")
        .arg(&ca)
        .arg("--cert")
        .arg(pki.dir.path().join("manager.pem"))
        .arg("--key")
        .arg(pki.dir.path().join("manager.key"))
        .args(["token", "create", "--name", "bootstrap", "--scope", "admin"])
        .env("ARCHON_CLI_CONFIG", pki.dir.path().join("none.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let authorization = format!("Bearer {token}");
    let answered = https(
        addr,
        client_config(&ca, Some((&alice.0, &alice.1)), tls13),
        "GET",
        "/api/v1/cluster",
        &[("authorization", &authorization)],
    )
    .await;
    assert_eq!(answered.map(|r| r.0), Ok(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_the_name_in_its_certificate() {
    let pki = Pki::new();
    let manager = SecureManager::start(pki.dir.path(), &[]);
    let address = format!("https://localhost:{}", manager.addr.port());
    let transport = archon_net::GrpcTransport::with_dialer(vec![address], pki.dialer("w1", Role::Worker));
    let hello = |name: &str| Hello {
        protocol: archon_core::transport::PROTOCOL,
        name: name.into(),
        address: "test".into(),
        labels: Default::default(),
        capacity: archon_core::model::Resources::default_request(),
        capabilities: ["shell".to_owned()].into(),
        running: Vec::new(),
        queue: 0,
    };
    let Err(posing) = transport.connect(hello("w2")).await else { panic!("w1 posed as w2") };
    assert!(posing.to_string().contains("cannot open a session as \"w2\""), "{posing}");
    let session = transport.connect(hello("w1")).await.expect("w1 as itself");
    assert_eq!(session.welcome.worker.to_string(), "w-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_without_a_restart() {
    let pki = Pki::new();
    let manager = SecureManager::start(pki.dir.path(), &[]);
    let served = || async {
        let ca = pki.dir.path().join("ca.pem");
        let config =
            client_config(&ca, Some((&pki.files("alice").cert, &pki.files("alice").key)), &[&rustls::version::TLS13]);
        let tcp = tokio::net::TcpStream::connect(manager.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0].as_ref().to_vec()
    };
    let before = served().await;
    // Renew the manager's certificate in place and tell it (SIGHUP); the
    // file watch would notice by itself too.
    certs(pki.dir.path(), &["issue", "manager", "manager", "--san", "localhost", "--force"]);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(manager.process.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if served().await != before {
            break;
        }
        assert!(Instant::now() < deadline, "the manager still serves its old certificate");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And it still serves: the process was not restarted.
    assert!(manager.process.0.id() > 0);
}

#[test]
fn plaintext_beyond_loopback_needs_insecure_which_warns_on_every_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    // Refused before it listens, naming the flag and the ways out.
    let out = std::process::Command::new(common::daemon_bin("archon-manager"))
        .args(["--listen", "0.0.0.0:0", "--data-dir", data])
        .output()
        .unwrap();
    assert!(!out.status.success(), "archon-manager served plaintext on 0.0.0.0");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("listen: 0.0.0.0:0 is reachable beyond this machine"), "{stderr}");
    assert!(stderr.contains("--tls-ca, --tls-cert and --tls-key") && stderr.contains("--insecure"), "{stderr}");
    // With --insecure it serves (here on loopback) and says so on every start.
    for _ in 0..2 {
        let log = dir.path().join("manager.log");
        let mut manager = common::Proc::spawn(
            &common::daemon_bin("archon-manager"),
            &["--listen", "127.0.0.1:0", "--data-dir", data, "--insecure"],
            &log,
        );
        manager.wait_line("archon-manager listening on http://", Duration::from_secs(60));
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert!(stderr.contains("--insecure: 127.0.0.1:0 serves plaintext without tokens"), "{stderr}");
        manager.kill9();
    }
}

/// Three managers speaking Raft over mutual TLS: a token made on one is
/// honoured by all, and once its revoke is committed every one refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_manager_is_refused_by_every_manager_of_a_tls_group() {
    let pki = Pki::new();
    let ports = common::free_ports(3);
    let peers = (1..=3).map(|id| format!("{id}=127.0.0.1:{}", ports[id - 1])).collect::<Vec<_>>().join(",");
    let managers: Vec<SecureManager> = (1..=3)
        .map(|id| {
            let listen = format!("127.0.0.1:{}", ports[id - 1]);
            let node = id.to_string();
            let timings = ["--heartbeat-interval", "300ms", "--worker-timeout", "3s"];
            let mut extra = vec!["--node-id", &node, "--peers", &peers];
            extra.extend(timings);
            SecureManager::start_at(pki.dir.path(), &listen, &extra)
        })
        .collect();
    let servers = ports.iter().map(|p| format!("https://localhost:{p}")).collect::<Vec<_>>().join(",");
    let run = |args: &[&str]| {
        std::process::Command::new(secure::CLI)
            .args(["--server", &servers, "--ca"])
            .arg(pki.dir.path().join("ca.pem"))
            .arg("--cert")
            .arg(pki.dir.path().join("manager.pem"))
            .arg("--key")
            .arg(pki.dir.path().join("manager.key"))
            .args(args)
            .env("ARCHON_CLI_CONFIG", pki.dir.path().join("none.toml"))
            .output()
            .unwrap()
    };
    let cli = |args: &[&str]| {
        let out = run(args);
        assert!(out.status.success(), "archon {args:?}: {}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    };
    // The group elects a leader over TLS; the CLI finds it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let token = loop {
        let out = run(&["token", "create", "--name", "reader", "--scope", "read"]);
        if out.status.success() {
            break text(&out.stdout).trim().to_owned();
        }
        assert!(Instant::now() < deadline, "no leader took the token: {}", text(&out.stderr));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id = token["archon_".len()..token.len() - 65].to_owned();
    let ca = pki.dir.path().join("ca.pem");
    let alice = (pki.files("alice").cert, pki.files("alice").key);
    let authorization = format!("Bearer {token}");
    let answer = |addr| {
        let config = client_config(&ca, Some((&alice.0, &alice.1)), &[&rustls::version::TLS13]);
        let authorization = authorization.clone();
        async move { https(addr, config, "GET", "/api/v1/cluster", &[("authorization", &authorization)]).await.map(|r| r.0) }
    };
    let until = async |addr, status: u16, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = answer(addr).await;
            if got == Ok(status) {
                return;
            }
            assert!(Instant::now() < deadline, "{addr}: {what}: last answer {got:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    for m in &managers {
        until(m.addr, 200, "the new token is honoured").await;
    }
    assert!(cli(&["token", "list"]).contains(&id));
    cli(&["token", "revoke", &id]);
    for m in &managers {
        until(m.addr, 401, "the revoked token is refused").await;
    }
}
