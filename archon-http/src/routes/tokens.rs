//! `/api/v1/tokens`: create (the token is in the answer, once), list and revoke
//! API tokens. Every route here needs the admin scope.

use std::collections::BTreeSet;

use archon_core::auth::{Scope, TokenId, TokenSpec};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::Body;
use super::{AppState, Problems};
use crate::error::Error;
use crate::views::{IssuedTokenView, TokenView, TokensView};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_token, list_tokens)).routes(routes!(revoke_token))
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenDraft {
    /// What it is for (1–128 characters, no control characters, C0 or C1).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
    /// What it may do: read, submit, operate, admin.
    #[schema(min_items = 1)]
    scopes: Vec<ScopeName>,
    /// How long it lasts (`30d`, `12h`); absent: until revoked.
    #[serde(default)]
    #[schema(pattern = r"^[1-9][0-9]{0,5}(s|m|h|d)$")]
    ttl: Option<String>,
}

/// A scope, as written.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ScopeName {
    /// Reads.
    Read,
    /// Submits.
    Submit,
    /// Cancel, drain, schedules.
    Operate,
    /// Everything.
    Admin,
}

impl From<ScopeName> for Scope {
    fn from(s: ScopeName) -> Scope {
        match s {
            ScopeName::Read => Scope::Read,
            ScopeName::Submit => Scope::Submit,
            ScopeName::Operate => Scope::Operate,
            ScopeName::Admin => Scope::Admin,
        }
    }
}

/// Creates a token. The answer holds it, once: it is stored only as a digest.
#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "tokens",
    request_body(content = TokenDraft),
    responses((status = 201, description = "Created", body = IssuedTokenView), Problems)
)]
async fn create_token(
    State(state): State<AppState>,
    Body(draft): Body<TokenDraft>,
) -> Result<(StatusCode, Json<IssuedTokenView>), Error> {
    let scopes: BTreeSet<Scope> = draft.scopes.into_iter().map(Scope::from).collect();
    let ttl = draft
        .ttl
        .as_deref()
        .map(archon_core::model::units::parse_duration)
        .transpose()
        .map_err(|e| Error::bad("ttl", e.to_string()))?;
    let issued = state.api.create_token(TokenSpec { name: draft.name, scopes, ttl }).await?;
    Ok((StatusCode::CREATED, Json(IssuedTokenView::from(&issued))))
}

/// Every token: ids, names, scopes and expiry, never secrets.
#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, description = "The tokens", body = TokensView), Problems)
)]
async fn list_tokens(State(state): State<AppState>) -> Result<Json<TokensView>, Error> {
    let items = state.api.list_tokens().await?.iter().map(TokenView::from).collect();
    Ok(Json(TokensView { items }))
}

/// Revokes a token: every manager refuses it once the revoke commits.
#[utoipa::path(
    delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, pattern = r"^[0-9a-f]{16}$", description = "The token's id")),
    responses((status = 204, description = "Revoked"), Problems)
)]
async fn revoke_token(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, Error> {
    let id: TokenId = id.parse().map_err(|e: String| Error::bad("id", e))?;
    state.api.revoke_token(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
