//! API tokens as the REST API and the CLI show them: never a secret.

use archon_core::auth::{IssuedToken, TokenInfo};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{time, time_opt};

/// A token: its public id, name, scopes and validity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// Its public id (16 hex digits).
    pub id: String,
    /// What it is for.
    pub name: String,
    /// What it allows: read, submit, operate, admin.
    pub scopes: Vec<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it stops working; absent: until revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl From<&TokenInfo> for TokenView {
    fn from(t: &TokenInfo) -> TokenView {
        TokenView {
            id: t.id.to_string(),
            name: t.name.clone(),
            scopes: t.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: time(t.created_at),
            expires_at: time_opt(t.expires_at),
        }
    }
}

/// Every token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokensView {
    /// Oldest first.
    pub items: Vec<TokenView>,
}

/// A token just created: the token itself, shown this once, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuedTokenView {
    /// `archon_<id>_<secret>`: send it as `Authorization: Bearer …`.
    pub token: String,
    /// What it is.
    pub info: TokenView,
}

impl From<&IssuedToken> for IssuedTokenView {
    fn from(t: &IssuedToken) -> IssuedTokenView {
        IssuedTokenView { token: t.token.clone(), info: TokenView::from(&t.info) }
    }
}
