//! Capability tokens for upload sessions handed to another host (the upload gateway): the
//! `Location` of a session carries `?_state=<token>`, an HMAC over the repository, the upload id,
//! the session's owner and an expiry, because clients drop or keep `Authorization` unpredictably
//! when the host changes. A request holding only the token acts as that owner, whose account and
//! role are checked again on every use (see `access::guard`).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::metadata::UnixTime;
use crate::oci::{RepoName, UploadId};

type HmacSha256 = hmac::Hmac<Sha256>;

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// No `_state` parameter where one is required.
    #[error("this upload location requires its _state token")]
    Missing,
    /// Not of the token's shape.
    #[error("upload token is malformed")]
    Malformed,
    /// The signature does not match this repository and upload.
    #[error("upload token is not valid for this upload")]
    BadSignature,
    /// Past its expiry.
    #[error("upload token expired")]
    Expired,
}

/// Mints and checks upload tokens with one secret key shared by the API functions and the gateway.
#[derive(Clone)]
pub struct UploadTokens {
    key: Vec<u8>,
    ttl: Duration,
}

impl std::fmt::Debug for UploadTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadTokens").field("key", &"<redacted>").field("ttl", &self.ttl).finish()
    }
}

impl UploadTokens {
    /// Tokens signed with `key`, valid for `ttl` after minting.
    pub fn new(key: Vec<u8>, ttl: Duration) -> UploadTokens {
        UploadTokens { key, ttl }
    }

    fn mac(&self, repo: &RepoName, id: &UploadId, owner: &str, expires: UnixTime) -> Result<HmacSha256, TokenError> {
        let mut mac = HmacSha256::new_from_slice(&self.key).map_err(|_| TokenError::Malformed)?;
        mac.update(format!("{repo}\n{id}\n{owner}\n{expires}").as_bytes());
        Ok(mac)
    }

    /// A token for upload `id` of `repo`, opened by `owner`:
    /// `<expiry>.<base64url owner>.<base64url signature>`.
    pub fn mint(&self, repo: &RepoName, id: &UploadId, owner: &str, now: UnixTime) -> Result<String, TokenError> {
        let expires = now + self.ttl.as_secs() as i64;
        let sig = self.mac(repo, id, owner, expires)?.finalize().into_bytes();
        Ok(format!("{expires}.{}.{}", URL_SAFE_NO_PAD.encode(owner), URL_SAFE_NO_PAD.encode(sig)))
    }

    /// Checks a token presented for upload `id` of `repo` (constant-time comparison) and returns
    /// the owner it was minted for.
    pub fn verify(&self, token: &str, repo: &RepoName, id: &UploadId, now: UnixTime) -> Result<String, TokenError> {
        let mut parts = token.splitn(3, '.');
        let (Some(expires), Some(owner), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let expires: UnixTime = expires.parse().map_err(|_| TokenError::Malformed)?;
        let owner =
            URL_SAFE_NO_PAD.decode(owner).ok().and_then(|o| String::from_utf8(o).ok()).ok_or(TokenError::Malformed)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| TokenError::Malformed)?;
        self.mac(repo, id, &owner, expires)?.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
        if now > expires {
            return Err(TokenError::Expired);
        }
        Ok(owner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_bind_repository_upload_owner_and_time() {
        let t = UploadTokens::new(b"secret key".to_vec(), Duration::from_secs(60));
        let repo = RepoName::parse("team/app", None).unwrap();
        let id = UploadId::generate();
        let token = t.mint(&repo, &id, "alice", 1000).unwrap();
        assert_eq!(t.verify(&token, &repo, &id, 1059), Ok("alice".to_string()));
        // another owner spliced in keeps the signature of the first
        let (expires, rest) = token.split_once('.').unwrap();
        let sig = rest.split_once('.').unwrap().1;
        let mallory = format!("{expires}.{}.{sig}", URL_SAFE_NO_PAD.encode("mallory"));
        assert_eq!(t.verify(&mallory, &repo, &id, 1000), Err(TokenError::BadSignature));
        assert_eq!(t.verify(&token, &repo, &id, 1061), Err(TokenError::Expired));
        let other = RepoName::parse("team/other", None).unwrap();
        assert_eq!(t.verify(&token, &other, &id, 1000), Err(TokenError::BadSignature));
        assert_eq!(t.verify(&token, &repo, &UploadId::generate(), 1000), Err(TokenError::BadSignature));
        // a later expiry forged onto the old signature fails
        let forged = format!("9999999999.{rest}");
        assert_eq!(t.verify(&forged, &repo, &id, 1000), Err(TokenError::BadSignature));
        assert_eq!(t.verify("garbage", &repo, &id, 1000), Err(TokenError::Malformed));
        let wrong_key = UploadTokens::new(b"other key".to_vec(), Duration::from_secs(60));
        assert_eq!(wrong_key.verify(&token, &repo, &id, 1000), Err(TokenError::BadSignature));
    }
}
