//! Who may do what. A connection is an [`Identity`] when its certificate says so
//! (a manager, a worker or a client of the cluster CA); a request carries a bearer
//! token whose [`Scope`]s say what it may do. Tokens live in the replicated state
//! as [`TokenRecord`]s — a public id and a salted SHA-256 digest of the secret,
//! never the secret itself — so every manager honours a new token or a revoke as
//! soon as it applies the command.
//!
//! A token reads `archon_<id>_<secret>`: a 16-hex-digit id, public (it names the
//! token in `archon token list` and `revoke`), and 64 hex digits of secret, 256
//! random bits. Checking one looks the id up and compares digests in constant
//! time ([`check`]); nothing here reads a clock or draws randomness, so the state
//! machine stays pure ([`mint`] takes the random bytes it is given).

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Timestamp;

/// The prefix of every token.
pub const TOKEN_PREFIX: &str = "archon_";

/// The prefix of the URI subject alternative name that states a certificate's
/// role: `urn:archon:role:manager`.
pub const ROLE_URI: &str = "urn:archon:role:";

/// How many tokens the state keeps at most (live and expired, until revoked).
pub const MAX_TOKENS: usize = 10_000;

/// The longest token name.
pub const MAX_TOKEN_NAME: usize = 128;

/// What a token lets its bearer do. Every scope can read; `admin` can do
/// everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// See jobs, runs, output, workers, workflows, schedules and the cluster.
    Read,
    /// Submit jobs and workflows.
    Submit,
    /// Cancel runs, jobs and workflows; drain workers; pause, resume, trigger
    /// and backfill schedules.
    Operate,
    /// Create, list and revoke tokens; everything else.
    Admin,
}

impl Scope {
    /// Every scope, weakest first.
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Submit, Scope::Operate, Scope::Admin];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Submit => "submit",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    /// Whether holding `self` allows what `wanted` guards.
    pub fn grants(self, wanted: Scope) -> bool {
        self == wanted || self == Scope::Admin || wanted == Scope::Read
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a scope (read, submit, operate or admin)"))
    }
}

/// What a certificate lets its holder be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A manager: serves clients and workers, speaks Raft with its peers.
    Manager,
    /// A worker: opens a worker session to the managers.
    Worker,
    /// A client: the CLI, the dashboard's users, programs using the API.
    Client,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Manager, Role::Worker, Role::Client];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
            Role::Client => "client",
        }
    }

    /// The role a URI SAN states, if it states one.
    pub fn from_uri(uri: &str) -> Option<Role> {
        uri.strip_prefix(ROLE_URI)?.parse().ok()
    }

    /// The URI SAN that states this role.
    pub fn uri(self) -> String {
        format!("{ROLE_URI}{}", self.as_str())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a role (manager, worker or client)"))
    }
}

/// Who a verified certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The role its certificate states.
    pub role: Role,
    /// Its name (the certificate's common name): a manager's, worker's or client's.
    pub name: String,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.role, self.name)
    }
}

/// The other end of a connection, as the listener saw it: put in every request's
/// extensions by the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// Its address.
    pub addr: Option<SocketAddr>,
    /// Its verified certificate's identity: `None` over plaintext, or over TLS
    /// when it showed no certificate (allowed only where browsers sign in).
    pub identity: Option<Identity>,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// A token's public id: 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenId(String);

impl TokenId {
    /// The id spelt by `bytes`.
    pub fn from_bytes(bytes: [u8; 8]) -> TokenId {
        TokenId(hex(&bytes))
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TokenId {
    type Err = String;

    fn from_str(s: &str) -> Result<TokenId, String> {
        // An id may be given alone or as the start of a whole token.
        let id = s.strip_prefix(TOKEN_PREFIX).map_or(s, |rest| rest.split('_').next().unwrap_or(rest));
        if id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(TokenId(id.to_owned()))
        } else {
            Err(format!("{s:?} is not a token id (16 hex digits, as `archon token list` shows)"))
        }
    }
}

/// A token as the state keeps it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its public id.
    pub id: TokenId,
    /// What it is for, as its creator named it.
    pub name: String,
    /// What it allows.
    pub scopes: BTreeSet<Scope>,
    /// The salt, 16 random bytes in hex.
    pub salt: String,
    /// SHA-256 of the salt and the secret, in hex.
    pub digest: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
}

impl TokenRecord {
    /// Whether it has expired at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }
}

/// A token as the API shows it: neither its secret nor its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Its public id.
    pub id: TokenId,
    /// What it is for.
    pub name: String,
    /// What it allows.
    pub scopes: BTreeSet<Scope>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
}

impl From<&TokenRecord> for TokenInfo {
    fn from(r: &TokenRecord) -> TokenInfo {
        TokenInfo {
            id: r.id.clone(),
            name: r.name.clone(),
            scopes: r.scopes.clone(),
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

/// A token just issued by the API: the whole token, shown this once, and what
/// it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The token to give its bearer: `archon_<id>_<secret>`.
    pub token: String,
    /// What it is.
    pub info: TokenInfo,
}

/// What a token to be created is for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenSpec {
    /// Its name (1–128 characters).
    pub name: String,
    /// Its scopes (at least one).
    pub scopes: BTreeSet<Scope>,
    /// How long it lasts; `None`: until revoked.
    pub ttl: Option<std::time::Duration>,
}

impl TokenSpec {
    /// Checks the name and scopes, naming the field that is wrong.
    pub fn validate(&self) -> Result<(), crate::Error> {
        if self.name.trim().is_empty()
            || self.name.chars().count() > MAX_TOKEN_NAME
            || self.name.chars().any(char::is_control)
        {
            return Err(crate::Error::invalid(
                "name",
                format!("must be 1–{MAX_TOKEN_NAME} characters without control characters (e.g. ci-deploy)"),
            ));
        }
        if self.scopes.is_empty() {
            return Err(crate::Error::invalid("scopes", "give at least one: read, submit, operate or admin"));
        }
        if self.ttl.is_some_and(|ttl| ttl.is_zero()) {
            return Err(crate::Error::invalid("ttl", "must be more than zero (e.g. 30d), or none for no expiry"));
        }
        Ok(())
    }
}

/// A token just created: the only time its secret is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// The whole token to give the bearer: `archon_<id>_<secret>`.
    pub token: String,
    /// Its record, as stored.
    pub record: TokenRecord,
}

/// Makes a token from 8 bytes of id, 32 of secret and 16 of salt, all random.
pub fn mint(
    spec: &TokenSpec,
    id: [u8; 8],
    secret: [u8; 32],
    salt: [u8; 16],
    now: Timestamp,
) -> Result<NewToken, crate::Error> {
    spec.validate()?;
    let id = TokenId::from_bytes(id);
    let secret = hex(&secret);
    let salt = hex(&salt);
    let expires_at = spec.ttl.map(|ttl| now.plus(ttl));
    let record = TokenRecord {
        digest: digest(&salt, &secret),
        id: id.clone(),
        name: spec.name.clone(),
        scopes: spec.scopes.clone(),
        salt,
        created_at: now,
        expires_at,
    };
    Ok(NewToken { token: format!("{TOKEN_PREFIX}{id}_{secret}"), record })
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No token came with it.
    #[error(
        "a bearer token is required (Authorization: Bearer archon_…; the CLI reads --token, ARCHON_TOKEN or its settings file)"
    )]
    Missing,
    /// What came is not a token.
    #[error("the bearer token is malformed (a token reads archon_<16 hex digits>_<64 hex digits>)")]
    Malformed,
    /// No such token: never created, or revoked.
    #[error("the bearer token is not valid (unknown or revoked)")]
    Unknown,
    /// It expired.
    #[error("the bearer token expired at {0}")]
    Expired(Timestamp),
    /// It lacks the scope this call needs.
    #[error("this call needs the {needed} scope; the token has {has}")]
    Scope {
        /// The scope needed.
        needed: Scope,
        /// Those it has, comma-separated.
        has: String,
    },
    /// The connection has no client certificate from the cluster CA.
    #[error("a client certificate from the cluster CA is required")]
    NoCertificate,
    /// The connection's certificate is of a role that may not make this call.
    #[error("a {role} certificate may not call {what} (it needs a {needed} certificate)")]
    Role {
        /// The certificate's role.
        role: Role,
        /// What was called.
        what: String,
        /// The roles that may.
        needed: String,
    },
    /// A cross-site request: its CSRF token is missing or wrong.
    #[error("the request's CSRF token is missing or wrong; reload the page")]
    Csrf,
}

impl Denied {
    /// Whether the refusal is for who is asking (401) rather than what they may
    /// do (403).
    pub fn unauthenticated(&self) -> bool {
        matches!(
            self,
            Denied::Missing | Denied::Malformed | Denied::Unknown | Denied::Expired(_) | Denied::NoCertificate
        )
    }
}

/// What a request may do, once its token (or certificate) is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who: the token's name and id, or the certificate's identity.
    pub who: String,
    /// What it may do.
    pub scopes: BTreeSet<Scope>,
}

impl Grant {
    /// Everything: a manager's certificate, or a cluster with authorization off.
    pub fn all(who: impl Into<String>) -> Grant {
        Grant { who: who.into(), scopes: BTreeSet::from([Scope::Admin]) }
    }

    /// Whether it allows what `needed` guards, or the refusal.
    pub fn allow(&self, needed: Scope) -> Result<(), Denied> {
        if self.scopes.iter().any(|s| s.grants(needed)) {
            return Ok(());
        }
        let has: Vec<&str> = self.scopes.iter().map(|s| s.as_str()).collect();
        Err(Denied::Scope { needed, has: if has.is_empty() { "none".into() } else { has.join(", ") } })
    }
}

/// Checks bearer tokens against the tokens a manager's state holds.
pub trait Authenticator: Send + Sync + 'static {
    /// What `bearer` (the whole token) may do now, or why not.
    fn authenticate(&self, bearer: &str) -> Result<Grant, Denied>;
}

/// Splits a token into its id and secret.
pub fn parse(bearer: &str) -> Result<(TokenId, &str), Denied> {
    let rest = bearer.trim().strip_prefix(TOKEN_PREFIX).ok_or(Denied::Malformed)?;
    let (id, secret) = rest.split_once('_').ok_or(Denied::Malformed)?;
    let id: TokenId = id.parse().map_err(|_| Denied::Malformed)?;
    if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(Denied::Malformed);
    }
    Ok((id, secret))
}

/// Checks `bearer` against `record` (the record of its id) at `now`.
pub fn check(record: Option<&TokenRecord>, secret: &str, now: Timestamp) -> Result<Grant, Denied> {
    let record = record.ok_or(Denied::Unknown)?;
    if !constant_time_eq(digest(&record.salt, secret).as_bytes(), record.digest.as_bytes()) {
        return Err(Denied::Unknown);
    }
    if let Some(at) = record.expires_at.filter(|_| record.expired(now)) {
        return Err(Denied::Expired(at));
    }
    Ok(Grant { who: format!("token {} ({})", record.id, record.name), scopes: record.scopes.clone() })
}

/// SHA-256 of the salt and the secret, in hex.
fn digest(salt: &str, secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(secret.as_bytes());
    hex(&hasher.finalize())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scopes: &[Scope]) -> TokenSpec {
        TokenSpec { name: "ci".into(), scopes: scopes.iter().copied().collect(), ttl: None }
    }

    #[test]
    fn a_minted_token_checks_against_its_record_only() {
        let now = Timestamp(1_000);
        let t = mint(&spec(&[Scope::Submit]), [1; 8], [2; 32], [3; 16], now).unwrap();
        assert!(t.token.starts_with("archon_0101010101010101_0202"));
        assert!(!t.record.digest.contains("0202020202"), "the record keeps no secret");
        let (id, secret) = parse(&t.token).unwrap();
        assert_eq!(id, t.record.id);
        let grant = check(Some(&t.record), secret, now).unwrap();
        grant.allow(Scope::Submit).unwrap();
        grant.allow(Scope::Read).unwrap();
        assert!(matches!(grant.allow(Scope::Operate), Err(Denied::Scope { needed: Scope::Operate, .. })));
        let other = mint(&spec(&[Scope::Admin]), [1; 8], [9; 32], [3; 16], now).unwrap();
        let (_, wrong) = parse(&other.token).unwrap();
        assert_eq!(check(Some(&t.record), wrong, now), Err(Denied::Unknown));
        assert_eq!(check(None, secret, now), Err(Denied::Unknown));
    }

    #[test]
    fn tokens_expire_and_malformed_ones_are_told_apart() {
        let now = Timestamp(1_000_000);
        let mut s = spec(&[Scope::Read]);
        s.ttl = Some(std::time::Duration::from_secs(60));
        let t = mint(&s, [1; 8], [2; 32], [3; 16], now).unwrap();
        let (_, secret) = parse(&t.token).unwrap();
        check(Some(&t.record), secret, now.plus(std::time::Duration::from_secs(59))).unwrap();
        let later = now.plus(std::time::Duration::from_secs(60));
        assert!(matches!(check(Some(&t.record), secret, later), Err(Denied::Expired(_))));
        for bad in ["", "Bearer x", "archon_", "archon_0101_00", &t.token[..t.token.len() - 1], &t.token.to_uppercase()]
        {
            assert_eq!(parse(bad).map(|_| ()), Err(Denied::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn admin_grants_all_and_specs_are_checked() {
        let all = Grant::all("manager m1");
        for s in Scope::ALL {
            all.allow(s).unwrap();
        }
        assert!(spec(&[]).validate().unwrap_err().to_string().contains("scopes"));
        let mut s = spec(&[Scope::Read]);
        s.name = String::new();
        assert!(s.validate().unwrap_err().to_string().contains("name"));
        s.name = "\u{98}\u{bb}J".into(); // a C1 control, as schemathesis sent
        assert!(s.validate().unwrap_err().to_string().contains("name"));
        s.name = "é".repeat(MAX_TOKEN_NAME); // 128 characters, 256 bytes
        s.validate().unwrap();
        assert_eq!("operate".parse::<Scope>(), Ok(Scope::Operate));
        assert!("root".parse::<Scope>().unwrap_err().contains("read, submit, operate or admin"));
        assert_eq!(Role::from_uri("urn:archon:role:worker"), Some(Role::Worker));
        assert_eq!(Role::from_uri("urn:archon:role:root"), None);
        assert_eq!("0123456789abcdef".parse::<TokenId>().unwrap().as_str(), "0123456789abcdef");
        assert!("xyz".parse::<TokenId>().is_err());
    }
}
