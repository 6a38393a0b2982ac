//! Continue tokens: where a paginated list goes on, sealed with an HMAC under a server key
//! so that a client can hand one back but cannot forge it, nor use it on another list or as
//! another caller.
//!
//! A token carries only the position after the last item its caller was shown (see
//! [`Position`]), never a key the caller could not see. The key is kept in the store, so
//! every server of one store accepts every other's tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dialtone_store::registry::{Position, Registry};
use dialtone_store::{Txn, TxnOutcome};
use dialtone_types::{ApiError, Reason};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::auth::Principal;
use crate::error::HttpError;

const KEY: &str = "/keys/continue-tokens";

pub struct ContinueTokens {
    key: Vec<u8>,
}

fn malformed() -> HttpError {
    ApiError::new(
        Reason::BadRequest,
        "the continue token is malformed, or was issued for another list or caller; list again from the start",
    )
    .into()
}

impl ContinueTokens {
    /// The installation's key, created by the first server to start.
    pub async fn load(registry: &Registry) -> anyhow::Result<Self> {
        let store = registry.store();
        loop {
            if let Some(kv) = store.get(KEY.as_bytes()).await? {
                return Ok(ContinueTokens { key: kv.value });
            }
            let mut key = vec![0u8; 32];
            rand::rng().fill_bytes(&mut key);
            let txn = Txn::default().when(KEY, 0).put(KEY, key.clone());
            if let TxnOutcome::Committed { .. } = store.txn(txn).await? {
                return Ok(ContinueTokens { key });
            }
            // Another server wrote it first: read theirs.
        }
    }

    fn mac(&self, caller: &Principal, list: &str, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        for part in [caller.identity_uid.as_bytes(), list.as_bytes(), payload] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The token that resumes `list` at `position` for `caller`.
    pub fn seal(&self, caller: &Principal, list: &str, position: &Position) -> String {
        let payload = serde_json::to_vec(position).expect("a position serializes");
        let tag = self.mac(caller, list, &payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The position a token sealed for `caller` and `list` names.
    pub fn open(&self, caller: &Principal, list: &str, token: &str) -> Result<Position, HttpError> {
        let (payload, tag) = token.split_once('.').ok_or_else(malformed)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| malformed())?;
        // `verify_slice` compares in constant time.
        self.mac(caller, list, &payload)
            .verify_slice(&tag)
            .map_err(|_| malformed())?;
        serde_json::from_slice(&payload).map_err(|_| malformed())
    }

    /// `seal` for an optional position.
    pub fn seal_next(
        &self,
        caller: &Principal,
        list: &str,
        next: Option<&Position>,
    ) -> Option<String> {
        next.map(|position| self.seal(caller, list, position))
    }

    /// `open` for an optional token.
    pub fn open_query(
        &self,
        caller: &Principal,
        list: &str,
        token: Option<&String>,
    ) -> Result<Option<Position>, HttpError> {
        token
            .filter(|t| !t.is_empty())
            .map(|t| self.open(caller, list, t))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(uid: &str) -> Principal {
        Principal {
            org: "acme".into(),
            identity: "alice".into(),
            org_uid: "o".into(),
            identity_uid: uid.into(),
            platform_admin: false,
        }
    }

    #[test]
    fn a_token_opens_only_for_its_list_and_caller() {
        let tokens = ContinueTokens { key: vec![7; 32] };
        let position = Position {
            revision: Some(42),
            start: b"/o/orgs/acme\0".to_vec(),
        };
        let token = tokens.seal(&caller("u1"), "orgs", &position);
        assert_eq!(
            tokens.open(&caller("u1"), "orgs", &token).unwrap(),
            position
        );
        assert!(tokens.open(&caller("u2"), "orgs", &token).is_err());
        assert!(tokens.open(&caller("u1"), "folders:acme", &token).is_err());
        // A position of the caller's choosing, with the old tag, is refused.
        let forged = Position {
            revision: Some(42),
            start: b"/o/orgs/zeta".to_vec(),
        };
        let tag = token.split_once('.').unwrap().1;
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert!(
            tokens
                .open(&caller("u1"), "orgs", &format!("{payload}.{tag}"))
                .is_err()
        );
        let other_key = ContinueTokens { key: vec![8; 32] };
        assert!(other_key.open(&caller("u1"), "orgs", &token).is_err());
    }
}
