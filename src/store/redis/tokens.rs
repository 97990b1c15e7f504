//! Tokens in Redis: creating, reading and listing them, the management
//! changes of `update_token.lua`, and finding the identity a token id
//! belongs to (the prefix registry, else the token index).

use super::keys::*;
use super::record::*;
use super::scripts::{CREATE_TOKEN, UPDATE_TOKEN};
use super::RedisStore;
use crate::model::TokenRecord;
use crate::store::StoreError;
use crate::token::Id;

impl RedisStore {
    pub(super) async fn add_token(&self, t: &TokenRecord) -> Result<bool, StoreError> {
        let iid = t.identity_id;
        // A token id that does not lead to its identity by its first 8 bytes
        // is listed in the token index, before the token exists: a crash in
        // between leaves an index entry for nothing, never a token that
        // cannot be found.
        if self.identity_by_prefix(t.id).await? != Some(iid) {
            self.query::<()>(
                redis::cmd("HSET")
                    .arg(TOKEN_INDEX)
                    .arg(t.id.hex())
                    .arg(iid.hex()),
            )
            .await?;
        }
        let mut inv = CREATE_TOKEN.prepare_invoke();
        inv.key(config_key(iid))
            .key(tokens_key(iid))
            .arg(&t.id.0[..])
            .arg(encode_token(t));
        let n: i64 = self.script(&inv).await?;
        Ok(n == 1)
    }

    pub(super) async fn read_token(&self, token_id: Id) -> Result<Option<TokenRecord>, StoreError> {
        let Some(iid) = self.token_identity(token_id).await? else {
            return Ok(None);
        };
        let _settled = self.uses_settled().await;
        let rec: Option<Vec<u8>> = self
            .query(redis::cmd("HGET").arg(tokens_key(iid)).arg(&token_id.0[..]))
            .await?;
        rec.map(|b| decode_token(iid, token_id, &b).map(|t| self.with_pending(t)))
            .transpose()
    }

    // All of an identity's tokens are one hash, read whole and sorted here:
    // listing is a management call, and a per-token index would cost every
    // token memory for as long as it exists.
    pub(super) async fn read_tokens(
        &self,
        identity: Id,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let _settled = self.uses_settled().await;
        let all: Vec<(Vec<u8>, Vec<u8>)> = self
            .query(redis::cmd("HGETALL").arg(tokens_key(identity)))
            .await?;
        let mut tokens = Vec::with_capacity(all.len());
        for (tid, rec) in &all {
            let tid = <[u8; 16]>::try_from(tid.as_slice()).map_err(|_| corrupt("token id"))?;
            tokens.push(decode_token(identity, Id(tid), rec)?);
        }
        // Newest first; ties by id, so pages do not overlap.
        tokens.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let count = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        Ok(tokens
            .into_iter()
            .skip(start)
            .take(count)
            .map(|t| self.with_pending(t))
            .collect())
    }

    /// Runs `update_token.lua`'s `what` on a token; `false` if it does not exist.
    pub(super) async fn update_token(
        &self,
        token_id: Id,
        what: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let Some(iid) = self.token_identity(token_id).await? else {
            return Ok(false);
        };
        let mut inv = UPDATE_TOKEN.prepare_invoke();
        inv.key(tokens_key(iid))
            .arg(&token_id.0[..])
            .arg(what)
            .arg(value);
        let n: i64 = self.script(&inv).await?;
        self.forget(iid);
        Ok(n == 1)
    }

    /// The identity a token id belongs to (see `keys.rs`): the identity
    /// its first 8 bytes name, if that identity has the token, else the
    /// index of tokens whose ids do not name their identity.
    async fn token_identity(&self, tid: Id) -> Result<Option<Id>, StoreError> {
        if let Some(iid) = self.identity_by_prefix(tid).await? {
            let has: bool = self
                .query(redis::cmd("HEXISTS").arg(tokens_key(iid)).arg(&tid.0[..]))
                .await?;
            if has {
                return Ok(Some(iid));
            }
        }
        let iid: Option<String> = self
            .query(redis::cmd("HGET").arg(TOKEN_INDEX).arg(tid.hex()))
            .await?;
        Ok(iid.as_deref().and_then(Id::parse))
    }

    /// The identity registered under the first 8 bytes of `id`.
    async fn identity_by_prefix(&self, id: Id) -> Result<Option<Id>, StoreError> {
        let iid: Option<Vec<u8>> = self
            .query(
                redis::cmd("HGET")
                    .arg(IDENTITY_PREFIXES)
                    .arg(&id.prefix()[..]),
            )
            .await?;
        Ok(iid.and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok().map(Id)))
    }
}
