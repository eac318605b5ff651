//! API tokens on the manager: minted from fresh randomness here (the state
//! machine draws none), created and revoked through the state machine, and
//! checked against the applied state — so a follower honours a revoke as soon
//! as it applies it.

use crate::auth::{self, Authenticator, Denied, Grant, IssuedToken, TokenId, TokenInfo, TokenSpec};
use crate::error::Error;
use crate::state::{Command, Rejection};
use crate::store::StoreExt;

use super::Manager;

/// How many fresh ids a create tries when one collides (1 in 2^64 each).
const ID_TRIES: usize = 3;

impl Manager {
    /// Creates a token for `spec`; the result holds the secret, shown this once.
    pub(super) async fn issue_token(&self, spec: TokenSpec) -> Result<IssuedToken, Error> {
        self.ensure_leader().await?;
        spec.validate()?;
        let at = self.shared.clock.now();
        for _ in 0..ID_TRIES {
            let (mut id, mut secret, mut salt) = ([0u8; 8], [0u8; 32], [0u8; 16]);
            for bytes in [&mut id[..], &mut secret[..], &mut salt[..]] {
                getrandom::fill(bytes).map_err(|e| Error::Internal(format!("no randomness for a token: {e}")))?;
            }
            let minted = auth::mint(&spec, id, secret, salt, at)?;
            let info = TokenInfo::from(&minted.record);
            match self.propose_one(Command::CreateToken { at, token: minted.record }).await {
                Ok(()) => {
                    tracing::info!(token = %info.id, name = %info.name, "token created");
                    return Ok(IssuedToken { token: minted.token, info });
                }
                Err(Error::Rejected(Rejection::TokenExists(_))) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Internal("three random token ids in a row were taken".into()))
    }

    /// Every token, oldest first.
    pub(super) fn token_list(&self) -> Vec<TokenInfo> {
        let mut tokens: Vec<TokenInfo> = self.shared.store.query(|s| s.tokens().values().map(Into::into).collect());
        tokens.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        tokens
    }

    /// Revokes a token.
    pub(super) async fn revoke(&self, token: TokenId) -> Result<(), Error> {
        self.ensure_leader().await?;
        if self.shared.store.query(|s| !s.tokens().contains_key(&token)) {
            return Err(Error::NotFound(format!("token {token}")));
        }
        let at = self.shared.clock.now();
        self.propose_one(Command::RevokeToken { at, token: token.clone() }).await?;
        tracing::info!(%token, "token revoked");
        Ok(())
    }
}

impl Authenticator for Manager {
    fn authenticate(&self, bearer: &str) -> Result<Grant, Denied> {
        let (id, secret) = auth::parse(bearer)?;
        let now = self.shared.clock.now();
        self.shared.store.query(|s| auth::check(s.tokens().get(&id), secret, now))
    }
}
