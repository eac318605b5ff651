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
    /// What it is for (1–128 characters).
    name: String,
    /// What it may do: read, submit, operate, admin.
    scopes: Vec<String>,
    /// How long it lasts (`30d`, `12h`); absent: until revoked.
    #[serde(default)]
    ttl: Option<String>,
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
    let scopes = draft
        .scopes
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(|e| Error::bad("scopes", e))?;
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
