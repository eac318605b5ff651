//! API tokens: created with their digest (never the secret), revoked by id.

use crate::auth::{MAX_TOKENS, TokenId, TokenRecord};
use crate::model::Timestamp;

use super::super::{ClusterState, Outcome, Rejection};

impl ClusterState {
    pub(in crate::state) fn apply_create_token(&mut self, _at: Timestamp, token: &TokenRecord) -> Outcome {
        if self.tokens.contains_key(&token.id) {
            return Outcome::Rejected(Rejection::TokenExists(token.id.clone()));
        }
        if self.tokens.len() >= MAX_TOKENS {
            return Outcome::Rejected(Rejection::TooManyTokens(self.tokens.len()));
        }
        self.tokens.insert(token.id.clone(), token.clone());
        Outcome::Applied(Vec::new())
    }

    pub(in crate::state) fn apply_revoke_token(&mut self, _at: Timestamp, token: &TokenId) -> Outcome {
        match self.tokens.remove(token) {
            Some(_) => Outcome::Applied(Vec::new()),
            None => Outcome::Rejected(Rejection::UnknownToken(token.clone())),
        }
    }
}
