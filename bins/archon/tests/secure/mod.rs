//! Helpers for the security tests: a secured `archon dev` and a secured
//! `archon-manager` as child processes, certificates made by `archon certs`
//! (and an expired one made here), raw TLS and HTTP/1.1 clients that choose
//! exactly what they send, and a gRPC call of any method by its path.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use archon_net::tls::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) const CLI: &str = env!("CARGO_BIN_EXE_archon");

/// A child process killed and reaped when dropped.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a child's stdout lines until one starts with `prefix`; its rest.
fn wait_for_line(child: &mut Child, prefix: &str, within: Duration) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + within;
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no line starting {prefix:?} within {within:?}"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.trim().to_owned();
        }
    }
}

/// `archon dev` as it starts by default: secured, writing the CLI's settings
/// to its own file.
pub(crate) struct SecureDev {
    pub(crate) process: Killed,
    /// `https://127.0.0.1:PORT`.
    pub(crate) server: String,
    pub(crate) addr: SocketAddr,
    pub(crate) settings: PathBuf,
    pub(crate) certs: PathBuf,
    pub(crate) dir: tempfile::TempDir,
}

impl SecureDev {
    pub(crate) fn start() -> SecureDev {
        let dir = tempfile::tempdir().unwrap();
        let settings = dir.path().join("config/cli.toml");
        let mut child = Command::new(CLI)
            .args(["dev", "--listen", "127.0.0.1:0", "--no-docker", "--cpu", "2", "--memory", "2GiB", "--data-dir"])
            .arg(dir.path().join("data"))
            .env("ARCHON_CLI_CONFIG", &settings)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn archon dev");
        let server = wait_for_line(&mut child, "gRPC API listening on ", Duration::from_secs(60));
        let addr = server.trim_start_matches("https://").parse().expect("an address");
        let certs = dir.path().join("data/certs");
        SecureDev { process: Killed(child), server, addr, settings, certs, dir }
    }

    /// The CLI with no flags but `args`: it finds everything in the settings file.
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        Command::new(CLI).args(args).env("ARCHON_CLI_CONFIG", &self.settings).output().expect("run archon")
    }

    /// The admin token `archon dev` wrote.
    pub(crate) fn admin_token(&self) -> String {
        let text = std::fs::read_to_string(&self.settings).unwrap();
        let line = text.lines().find(|l| l.starts_with("token = ")).expect("a token in the settings");
        line.trim_start_matches("token = ").trim_matches('"').to_owned()
    }

    /// A token made with the CLI (admin) with `scopes` and an optional `ttl`.
    pub(crate) fn token(&self, scopes: &str, ttl: Option<&str>) -> String {
        let mut args = vec!["token", "create", "--name", "test", "--scope", scopes];
        if let Some(ttl) = ttl {
            args.extend(["--ttl", ttl]);
        }
        let out = self.cli(&args);
        assert!(out.status.success(), "token create: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// The files of the `dev-admin` client certificate.
    pub(crate) fn admin_files(&self) -> TlsFiles {
        TlsFiles::in_dir(&self.certs, "dev-admin")
    }
}

/// Runs `archon certs ARGS --dir dir`.
pub(crate) fn certs(dir: &Path, args: &[&str]) {
    let out = Command::new(CLI).arg("certs").args(args).arg("--dir").arg(dir).output().unwrap();
    assert!(out.status.success(), "certs {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Issues `name` a certificate of `role` from the CA in `dir` that expired a
/// day ago.
pub(crate) fn expired(dir: &Path, role: &str, name: &str) -> TlsFiles {
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(dir.join("ca.pem")).unwrap(), ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.subject_alt_names.push(rcgen::SanType::URI(format!("urn:archon:role:{role}").try_into().unwrap()));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    TlsFiles::in_dir(dir, name)
}

/// `archon-manager` on a loopback port with TLS from `dir` (certificate
/// `manager`), no browser sign-in: a client certificate is required to connect at all.
pub(crate) struct SecureManager {
    pub(crate) process: Killed,
    pub(crate) addr: SocketAddr,
    pub(crate) data: tempfile::TempDir,
}

impl SecureManager {
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> SecureManager {
        SecureManager::start_at(dir, "127.0.0.1:0", extra)
    }

    /// [`SecureManager::start`] on `listen`.
    pub(crate) fn start_at(dir: &Path, listen: &str, extra: &[&str]) -> SecureManager {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(crate::common::daemon_bin("archon-manager"))
            .args(["--listen", listen, "--data-dir"])
            .arg(data.path())
            .arg("--tls-ca")
            .arg(dir.join("ca.pem"))
            .arg("--tls-cert")
            .arg(dir.join("manager.pem"))
            .arg("--tls-key")
            .arg(dir.join("manager.key"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn archon-manager");
        let line = wait_for_line(&mut child, "archon-manager listening on https://", Duration::from_secs(60));
        let addr = line.split_whitespace().next().unwrap().parse().expect("an address");
        SecureManager { process: Killed(child), addr, data }
    }
}

/// A rustls client configuration: `versions`, trusting `ca`, showing `cert`.
pub(crate) fn client_config(
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match cert {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap()).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One HTTP/1.1 request over TLS with `config`; the status, or the error that
/// stopped it (a refused handshake, a closed connection).
pub(crate) async fn https(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    https_body(addr, config, method, path, headers, "application/json", "{}").await
}

/// [`https`] with a body of `content_type`.
pub(crate) async fn https_body(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("content-type: {content_type}\r\n\r\n{body}"));
    tls.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut response)).await;
    match read {
        Ok(Ok(_)) => {}
        // A server may close without close_notify after a full answer.
        Ok(Err(e)) if !response.is_empty() => {
            let _ = e;
        }
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("no answer within 30s".into()),
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status =
        text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("no status: {text:?}"))?;
    Ok((status, text))
}

/// Plaintext HTTP/1.1 to a TLS port: what comes back (nothing, if refused).
pub(crate) async fn plaintext(addr: SocketAddr) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(b"GET /api/v1/cluster HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut answer)).await;
    answer
}

/// Calls gRPC method `path` (`/pkg.Service/Method`) with an empty message
/// through `dialer`; the status it ends with.
pub(crate) async fn grpc(addr: SocketAddr, dialer: &archon_net::tls::Dialer, path: &str) -> tonic::Status {
    let endpoint = dialer.endpoint(&format!("localhost:{}", addr.port())).unwrap();
    let channel = match dialer.connect(endpoint).await {
        Ok(c) => c,
        Err(e) => return tonic::Status::unavailable(format!("connect: {e:?}")),
    };
    let mut client =
        tonic::client::Grpc::new(tonic::service::interceptor::InterceptedService::new(channel, dialer.bearer()));
    if let Err(e) = client.ready().await {
        return tonic::Status::unavailable(format!("ready: {e}"));
    }
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path.to_owned()).unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match client.unary(tonic::Request::new(()), path, codec).await {
        Ok(_) => tonic::Status::ok("answered"),
        Err(status) => status,
    }
}

/// Every method of the services in a file descriptor set: `/pkg.Service/Method`.
pub(crate) fn methods(descriptor_set: &[u8]) -> Vec<String> {
    let set = <prost_types::FileDescriptorSet as prost::Message>::decode(descriptor_set).unwrap();
    let mut all = Vec::new();
    for file in set.file {
        for service in &file.service {
            for method in &service.method {
                all.push(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
            }
        }
    }
    all
}

/// Calls gRPC method `path` with an empty message over TLS with `config`
/// (its ALPN set to h2 here), sending `token` as the bearer; the status it
/// ends with.
pub(crate) async fn grpc_raw(
    addr: SocketAddr,
    config: &rustls::ClientConfig,
    token: Option<&str>,
    path: &str,
) -> tonic::Status {
    let mut config = config.clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let config = Arc::new(config);
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let config = config.clone();
        async move {
            let tcp = TcpStream::connect(addr).await?;
            let name = ServerName::try_from("localhost").unwrap();
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    let endpoint = tonic::transport::Endpoint::from_static("http://localhost");
    let channel = match endpoint.connect_with_connector(connector).await {
        Ok(c) => c,
        Err(e) => return tonic::Status::unavailable(format!("connect: {e:?}")),
    };
    let mut client = tonic::client::Grpc::new(channel);
    if let Err(e) = client.ready().await {
        return tonic::Status::unavailable(format!("ready: {e}"));
    }
    let mut request = tonic::Request::new(());
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path.to_owned()).unwrap();
    match client.unary(request, path, tonic_prost::ProstCodec::<(), ()>::default()).await {
        Ok(_) => tonic::Status::ok("answered"),
        Err(status) => status,
    }
}
