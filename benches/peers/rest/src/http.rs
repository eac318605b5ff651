//! A keep-alive HTTP/1.1 connection over TLS 1.3 with a client certificate and a
//! bearer token: the smallest client that speaks to Archon's REST API the way a
//! program would. What to know: one request at a time per connection; bodies are
//! read by `content-length` or chunked encoding.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// TLS 1.3 trusting only the cluster CA, presenting `cert`/`key`, speaking HTTP/1.1.
pub fn tls_config(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).with_context(|| format!("{}", ca.display()))? {
        roots.add(c?)?;
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("{}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("{}", key.display()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One open connection.
pub struct Conn {
    tls: TlsStream<TcpStream>,
    bearer: String,
    buf: Vec<u8>,
}

/// An answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("the answer is not JSON")
    }
}

impl Conn {
    /// Connects to `addr` (its certificate must name the IP address) with `token`.
    pub async fn open(addr: SocketAddr, config: Arc<rustls::ClientConfig>, token: &str) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(addr.ip().into());
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.context("TLS handshake")?;
        Ok(Conn { tls, bearer: format!("Bearer {token}"), buf: Vec::with_capacity(64 * 1024) })
    }

    /// Sends one request and reads its answer.
    pub async fn request(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<Answer> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {}\r\ncontent-type: application/json\r\n\
             accept: application/json\r\ncontent-length: {}\r\n\r\n",
            self.bearer,
            body.len()
        );
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body);
        self.tls.write_all(&out).await?;
        self.tls.flush().await?;
        let end = self.fill_until(|b| find(b, b"\r\n\r\n")).await? + 4;
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no status in {head:?}"))?;
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let body = if let Some(len) = header("content-length") {
            let len: usize = len.parse().context("content-length")?;
            self.fill_until(|b| (b.len() >= len).then_some(len)).await?;
            self.buf.drain(..len).collect()
        } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            self.read_chunked().await?
        } else {
            bail!("an answer without content-length or chunked encoding: {head:?}");
        };
        Ok(Answer { status, body })
    }

    async fn read_chunked(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = self.fill_until(|b| find(b, b"\r\n")).await?;
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("bad chunk size {size_text:?}"))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers (none expected), then the blank line.
                let end = self.fill_until(|b| find(b, b"\r\n")).await?;
                self.buf.drain(..end + 2);
                return Ok(body);
            }
            self.fill_until(|b| (b.len() >= size + 2).then_some(size)).await?;
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// Reads until `done` finds what it looks for in the buffer.
    async fn fill_until(&mut self, done: impl Fn(&[u8]) -> Option<usize>) -> anyhow::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some(at) = done(&self.buf) {
                return Ok(at);
            }
            let n = self.tls.read(&mut chunk).await?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
