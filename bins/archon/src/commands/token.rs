//! `archon token create|list|revoke`.

use std::collections::BTreeSet;
use std::process::ExitCode;

use archon_core::auth::{TokenId, TokenSpec};

use super::{bad, connect, print};
use crate::cli::{Format, TokenCommand};

pub(super) async fn dispatch(server: &str, format: Format, command: TokenCommand) -> anyhow::Result<ExitCode> {
    let api = connect(server).await?;
    match command {
        TokenCommand::Create { name, scopes, ttl } => {
            let spec = TokenSpec { name, scopes: scopes.into_iter().collect::<BTreeSet<_>>(), ttl };
            let issued = api.create_token(spec).await?;
            let view = crate::render::TokenView::from(&issued.info);
            match format {
                Format::Json => {
                    let doc = serde_json::json!({ "token": issued.token, "info": view });
                    super::print_line(format_args!("{}", serde_json::to_string_pretty(&doc)?));
                }
                Format::Table => {
                    super::print_line(format_args!("{}", issued.token));
                    eprintln!(
                        "token {} ({}) with scopes {}{}: shown once, keep it (e.g. ARCHON_TOKEN or the settings file)",
                        view.id,
                        view.name,
                        view.scopes.join(","),
                        view.expires_at.as_deref().map(|t| format!(", expires {t}")).unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List => {
            let tokens = api.list_tokens().await?;
            let views: Vec<_> = tokens.iter().map(crate::render::TokenView::from).collect();
            print(format, &views, || crate::render::tokens(&views))
        }
        TokenCommand::Revoke { id } => {
            let id: TokenId = id.parse().map_err(|e: String| bad(format!("ID: {e}")))?;
            api.revoke_token(id.clone()).await?;
            super::print_line(format_args!("token {id} revoked"));
            Ok(ExitCode::SUCCESS)
        }
    }
}
