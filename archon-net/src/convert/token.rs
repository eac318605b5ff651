//! API tokens on the wire: specs, listings and the one-time issued token.

use std::collections::BTreeSet;
use std::time::Duration;

use archon_core::Error;
use archon_core::auth::{IssuedToken, Scope, TokenId, TokenInfo, TokenSpec};

use super::{At, instant, required, timestamp};
use crate::proto;

/// A token id, naming `field` when it is not one.
pub(crate) fn token_id(id: &str, field: &str) -> Result<TokenId, Error> {
    id.parse().map_err(|e: String| Error::invalid(field, e))
}

fn scopes(names: Vec<String>, field: &str) -> Result<BTreeSet<Scope>, Error> {
    names.iter().map(|s| s.parse().map_err(|e: String| Error::invalid(field, e))).collect()
}

fn scope_names(scopes: &BTreeSet<Scope>) -> Vec<String> {
    scopes.iter().map(|s| s.as_str().to_owned()).collect()
}

impl From<TokenInfo> for proto::TokenInfo {
    fn from(t: TokenInfo) -> Self {
        proto::TokenInfo {
            id: t.id.to_string(),
            scopes: scope_names(&t.scopes),
            name: t.name,
            created_at_ms: instant(t.created_at),
            expires_at_ms: t.expires_at.map(instant),
        }
    }
}

impl TryFrom<proto::TokenInfo> for TokenInfo {
    type Error = Error;

    fn try_from(t: proto::TokenInfo) -> Result<Self, Error> {
        Ok(TokenInfo {
            id: token_id(&t.id, "id")?,
            name: t.name,
            scopes: scopes(t.scopes, "scopes")?,
            created_at: timestamp(t.created_at_ms),
            expires_at: t.expires_at_ms.map(timestamp),
        })
    }
}

impl From<TokenSpec> for proto::CreateTokenRequest {
    fn from(s: TokenSpec) -> Self {
        proto::CreateTokenRequest {
            scopes: scope_names(&s.scopes),
            name: s.name,
            ttl_seconds: s.ttl.map(|d| d.as_secs().max(1)),
        }
    }
}

impl TryFrom<proto::CreateTokenRequest> for TokenSpec {
    type Error = Error;

    fn try_from(r: proto::CreateTokenRequest) -> Result<Self, Error> {
        Ok(TokenSpec { name: r.name, scopes: scopes(r.scopes, "scopes")?, ttl: r.ttl_seconds.map(Duration::from_secs) })
    }
}

impl From<IssuedToken> for proto::CreateTokenResponse {
    fn from(t: IssuedToken) -> Self {
        proto::CreateTokenResponse { token: t.token, info: Some(t.info.into()) }
    }
}

impl TryFrom<proto::CreateTokenResponse> for IssuedToken {
    type Error = Error;

    fn try_from(r: proto::CreateTokenResponse) -> Result<Self, Error> {
        let info = required(r.info, "info")?.try_into().at("info")?;
        Ok(IssuedToken { token: r.token, info })
    }
}
