//! `archon certs`: a cluster CA and the certificates of its members, made with
//! rcgen (ECDSA P-256 keys, the `ring` provider). A certificate's role —
//! `manager`, `worker` or `client` — is written into it as a URI subject
//! alternative name, `urn:archon:role:<role>`, which the listeners check on
//! connect: a worker's certificate cannot speak Raft, a client's cannot open a
//! worker session.
//!
//! Files: `ca.pem` and `ca.key` in the certificate directory, and for each
//! member `NAME.pem` and `NAME.key`. Keys are written 0600 and never printed;
//! nothing is overwritten unless asked (`--force`). The CA lasts 10 years and
//! members 1 year by default; renew a member by issuing it again with `--force`
//! (its key is new).

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

pub use archon_core::auth::{ROLE_URI, Role};

/// Days a cluster CA lasts by default.
pub const CA_DAYS: u32 = 3650;

/// Days a member's certificate lasts by default.
pub const LEAF_DAYS: u32 = 365;

/// Where a certificate and its key were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: PathBuf,
}

/// Creates a cluster CA in `dir`: `ca.pem` and `ca.key`.
pub fn init(dir: &Path, name: &str, days: u32, force: bool) -> anyhow::Result<Written> {
    check_name("--name", name)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(&format!("{name} CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, days)?;
    let key = KeyPair::generate().context("generating the CA's key")?;
    let cert = params.self_signed(&key).context("signing the CA's certificate")?;
    write_pair(dir, "ca", &cert.pem(), &key.serialize_pem(), force)
}

/// Issues `name` a certificate of `role` from the CA in `dir`: `NAME.pem` and
/// `NAME.key`. `sans` are host names or IP addresses it is reached at (a
/// manager's); `name` itself is always one.
pub fn issue(dir: &Path, role: Role, name: &str, sans: &[String], days: u32, force: bool) -> anyhow::Result<Written> {
    check_name("NAME", name)?;
    let ca_cert = read(&dir.join("ca.pem"))?;
    let ca_key = KeyPair::from_pem(&read(&dir.join("ca.key"))?)
        .with_context(|| format!("{}: not a private key", dir.join("ca.key").display()))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert, ca_key)
        .with_context(|| format!("{}: not a CA certificate", dir.join("ca.pem").display()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match role {
        Role::Manager => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        Role::Worker | Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    let mut names = vec![SanType::URI(ia5(&format!("{ROLE_URI}{}", role.as_str()))?)];
    for san in std::iter::once(name).chain(sans.iter().map(String::as_str)) {
        names.push(match san.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                check_host(san)?;
                SanType::DnsName(ia5(san)?)
            }
        });
    }
    names.dedup();
    params.subject_alt_names = names;
    validity(&mut params, days)?;
    let key = KeyPair::generate().context("generating the key")?;
    let cert = params.signed_by(&key, &issuer).context("signing the certificate")?;
    write_pair(dir, name, &cert.pem(), &key.serialize_pem(), force)
}

/// What `archon certs show` prints of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    /// Its subject.
    pub subject: String,
    /// Who signed it.
    pub issuer: String,
    /// Whether it is a CA.
    pub ca: bool,
    /// The role it grants (none for a CA or a foreign certificate).
    pub role: Option<String>,
    /// Its host names, addresses and URIs.
    pub sans: Vec<String>,
    /// Valid from (RFC 3339).
    pub not_before: String,
    /// Valid until (RFC 3339).
    pub not_after: String,
    /// Whether it is valid now.
    pub valid_now: bool,
}

/// Reads a PEM certificate.
pub fn show(path: &Path) -> anyhow::Result<CertInfo> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate ({e})", path.display()))?;
    if pem.label != "CERTIFICATE" {
        bail!("{}: not a PEM certificate (it holds a {})", path.display(), pem.label);
    }
    let cert = pem.parse_x509().map_err(|e| anyhow::anyhow!("{}: not an X.509 certificate ({e})", path.display()))?;
    let mut sans = Vec::new();
    let mut role = None;
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            use x509_parser::extensions::GeneralName;
            match name {
                GeneralName::URI(uri) => {
                    role = role.or_else(|| Role::from_uri(uri).map(|r| r.as_str().to_owned()));
                    sans.push(format!("URI:{uri}"));
                }
                GeneralName::DNSName(dns) => sans.push(format!("DNS:{dns}")),
                GeneralName::IPAddress(ip) => sans.push(format!("IP:{}", ip_text(ip))),
                other => sans.push(other.to_string()),
            }
        }
    }
    let validity = cert.validity();
    let rfc3339 = |t: &x509_parser::time::ASN1Time| {
        t.to_datetime().format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
    };
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        ca: cert.is_ca(),
        role,
        sans,
        not_before: rfc3339(&validity.not_before),
        not_after: rfc3339(&validity.not_after),
        valid_now: validity.is_valid(),
    })
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default()).to_string(),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default()).to_string(),
        _ => format!("{bytes:?}"),
    }
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Archon");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Valid from a minute ago (clocks differ a little) for `days` days.
fn validity(params: &mut CertificateParams, days: u32) -> anyhow::Result<()> {
    if days == 0 || days > 36_500 {
        bail!("--days: must be between 1 and 36500");
    }
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(1);
    params.not_after = now + Duration::days(i64::from(days));
    Ok(())
}

fn ia5(text: &str) -> anyhow::Result<rcgen::string::Ia5String> {
    rcgen::string::Ia5String::try_from(text)
        .map_err(|_| anyhow::anyhow!("{text:?}: only ASCII is allowed in a certificate name"))
}

/// A member's name is also a file name and a host name.
fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !name.starts_with(['-', '.'])
        && name != "ca";
    if !ok {
        bail!("{what}: {name:?} is not a name (1 to 63 letters, digits, '-', '.', '_'; not \"ca\")");
    }
    Ok(())
}

fn check_host(host: &str) -> anyhow::Result<()> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
        });
    if !ok {
        bail!("--san: {host:?} is neither an IP address nor a host name");
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read (run `archon certs init` first, or pass --dir)", path.display()))
}

/// Writes `NAME.pem` (0644) and `NAME.key` (0600), refusing to replace either
/// unless `force`.
fn write_pair(dir: &Path, name: &str, cert: &str, key: &str, force: bool) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let written = Written { cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}.key")) };
    if !force {
        for path in [&written.cert, &written.key] {
            if path.exists() {
                bail!("{}: already exists (pass --force to replace it)", path.display());
            }
        }
    }
    write_file(&written.key, key, 0o600)?;
    write_file(&written.cert, cert, 0o644)?;
    Ok(written)
}

fn write_file(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&partial)
        .with_context(|| format!("{}: cannot write", partial.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("{}: cannot write", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("{}: cannot write", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_issues_each_role_and_show_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let ca = init(dir.path(), "test", CA_DAYS, false).unwrap();
        let ca_info = show(&ca.cert).unwrap();
        assert!(ca_info.ca && ca_info.valid_now && ca_info.role.is_none(), "{ca_info:?}");
        assert!(ca_info.subject.contains("CN=test CA"), "{ca_info:?}");
        for role in [Role::Manager, Role::Worker, Role::Client] {
            let name = format!("{}-1", role.as_str());
            let sans = vec!["10.0.0.5".to_owned(), "m1.example".to_owned()];
            let w = issue(dir.path(), role, &name, &sans, LEAF_DAYS, false).unwrap();
            let info = show(&w.cert).unwrap();
            assert_eq!(info.role.as_deref(), Some(role.as_str()), "{info:?}");
            assert!(!info.ca && info.valid_now, "{info:?}");
            assert!(info.issuer.contains("CN=test CA"), "{info:?}");
            for san in [format!("DNS:{name}"), "IP:10.0.0.5".into(), "DNS:m1.example".into()] {
                assert!(info.sans.contains(&san), "{san} missing: {info:?}");
            }
            // Signed by the CA's key.
            let pem_of = |p: &Path| x509_parser::pem::parse_x509_pem(&std::fs::read(p).unwrap()).unwrap().1;
            let (leaf_pem, ca_pem) = (pem_of(&w.cert), pem_of(&ca.cert));
            let (leaf, ca_x509) = (leaf_pem.parse_x509().unwrap(), ca_pem.parse_x509().unwrap());
            leaf.verify_signature(Some(ca_x509.public_key())).unwrap();
            let mode = std::fs::metadata(&w.key).unwrap().permissions();
            assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        }
    }

    #[test]
    fn nothing_is_overwritten_and_bad_names_are_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), "test", CA_DAYS, false).unwrap();
        let again = init(dir.path(), "test", CA_DAYS, false).unwrap_err().to_string();
        assert!(again.contains("ca.pem: already exists (pass --force"), "{again}");
        issue(dir.path(), Role::Worker, "w1", &[], LEAF_DAYS, false).unwrap();
        assert!(issue(dir.path(), Role::Worker, "w1", &[], LEAF_DAYS, false).is_err());
        issue(dir.path(), Role::Worker, "w1", &[], LEAF_DAYS, true).unwrap();
        for bad in ["", "ca", "../etc", "a b", "-x"] {
            let e = issue(dir.path(), Role::Client, bad, &[], LEAF_DAYS, false).unwrap_err().to_string();
            assert!(e.starts_with("NAME: "), "{bad:?}: {e}");
        }
        let e = issue(dir.path(), Role::Client, "c1", &["bad host!".into()], LEAF_DAYS, false).unwrap_err().to_string();
        assert!(e.starts_with("--san: "), "{e}");
        let e = issue(dir.path(), Role::Client, "c2", &[], 0, false).unwrap_err().to_string();
        assert!(e.starts_with("--days: "), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = issue(empty.path(), Role::Client, "c3", &[], LEAF_DAYS, false).unwrap_err().to_string();
        assert!(e.contains("run `archon certs init` first"), "{e}");
    }
}
