//! Universal-auth machine login (Infisical's): a client id and secret are exchanged for a
//! short-lived access token, which can be renewed up to a maximum lifetime and dies with
//! its identity.
//!
//! An access token is `kmsgw_at_` + base64url(payload ‖ tag), payload = identity id (16
//! bytes) ‖ u64be(expiry) ‖ u64be(end of the maximum lifetime), tag =
//! HMAC-SHA256(K_at, "kms-gateway/v1/access-token" ‖ payload) with
//! `K_at = HKDF-SHA256(IRK, info "kms-gateway/v1/access-token-mac")`. Every gateway on the
//! same store has the IRK, so any of them checks any token; nothing is stored per token.
//! The identity is looked up on every use (cached for seconds), so revoking it ends its
//! tokens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

const PREFIX: &str = "kmsgw_at_";
const TAG_DOMAIN: &[u8] = b"kms-gateway/v1/access-token";
const KEY_INFO: &[u8] = b"kms-gateway/v1/access-token-mac";
const PAYLOAD_LEN: usize = 32;
const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a valid access token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    pub identity: Uuid,
    /// Seconds since the epoch.
    pub expires_at: u64,
    /// Seconds since the epoch; no renewal goes past it.
    pub max_at: u64,
}

/// Makes and checks access tokens.
pub struct AccessTokens {
    key: Zeroizing<[u8; 32]>,
}

pub fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl AccessTokens {
    pub fn new(irk: &[u8; 32]) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit of 255 × 32: this cannot fail.
        let _ = Hkdf::<Sha256>::new(None, irk).expand(KEY_INFO, key.as_mut_slice());
        Self { key }
    }

    fn tag(&self, payload: &[u8]) -> [u8; 32] {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(TAG_DOMAIN);
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }

    pub fn issue(&self, claims: Claims) -> Zeroizing<String> {
        let mut raw = Zeroizing::new(Vec::with_capacity(PAYLOAD_LEN + 32));
        raw.extend_from_slice(claims.identity.as_bytes());
        raw.extend_from_slice(&claims.expires_at.to_be_bytes());
        raw.extend_from_slice(&claims.max_at.to_be_bytes());
        let tag = self.tag(&raw);
        raw.extend_from_slice(&tag);
        Zeroizing::new(format!("{PREFIX}{}", B64URL.encode(raw.as_slice())))
    }

    /// Whether `token` has the form of an access token (rather than an identity's own token).
    pub fn is_access_token(token: &str) -> bool {
        token.starts_with(PREFIX)
    }

    /// The claims of an authentic token, expired or not; `None` if it is not authentic.
    pub fn check(&self, token: &str) -> Option<Claims> {
        let raw = Zeroizing::new(B64URL.decode(token.strip_prefix(PREFIX)?).ok()?);
        if raw.len() != PAYLOAD_LEN + 32 {
            return None;
        }
        let (payload, tag) = raw.split_at(PAYLOAD_LEN);
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.tag(payload), tag).ok()?;
        let number = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&payload[r]);
            u64::from_be_bytes(b)
        };
        Some(Claims {
            identity: Uuid::from_slice(&payload[..16]).ok()?,
            expires_at: number(16..24),
            max_at: number(24..32),
        })
    }
}

/// How many failed logins a client id, or an address, may have in one window.
const MAX_FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);
/// Entries kept at most (the map is cleared past this: an attacker cannot grow it).
const MAX_ENTRIES: usize = 100_000;

/// Slows down online guessing of client secrets: after `MAX_FAILURES` failed logins for
/// one client id or from one address within a minute, logins for it are refused (429)
/// until the minute is over.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginThrottle {
    /// Seconds to wait if any of `keys` has used up its failures, else `None`.
    pub fn blocked(&self, keys: &[&str]) -> Option<u32> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| map.get(*k))
            .filter(|(start, n)| *n >= MAX_FAILURES && start.elapsed() < WINDOW)
            .map(|(start, _)| (WINDOW.saturating_sub(start.elapsed()).as_secs() as u32).max(1))
            .max()
    }

    pub fn failed(&self, keys: &[&str]) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        for k in keys {
            let entry = map.entry((*k).to_owned()).or_insert((Instant::now(), 0));
            if entry.0.elapsed() >= WINDOW {
                *entry = (Instant::now(), 0);
            }
            entry.1 += 1;
        }
    }

    pub fn succeeded(&self, client_id: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(client_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_tampering() {
        let tokens = AccessTokens::new(&[7u8; 32]);
        let claims = Claims {
            identity: Uuid::from_bytes([1; 16]),
            expires_at: 1_000,
            max_at: 2_000,
        };
        let token = tokens.issue(claims);
        assert!(AccessTokens::is_access_token(&token));
        assert_eq!(tokens.check(&token), Some(claims));
        // Another instance root key, a changed character, a truncated token.
        assert_eq!(AccessTokens::new(&[8u8; 32]).check(&token), None);
        let mut changed = token.to_string();
        let last = changed.pop().unwrap();
        changed.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(tokens.check(&changed), None);
        assert_eq!(tokens.check(&token[..token.len() - 4]), None);
        assert_eq!(tokens.check("kmsgw_at_!!"), None);
    }

    #[test]
    fn throttle_blocks_after_five_failures() {
        let t = LoginThrottle::default();
        for _ in 0..4 {
            t.failed(&["client", "127.0.0.1"]);
        }
        assert_eq!(t.blocked(&["client"]), None);
        t.failed(&["client", "127.0.0.1"]);
        assert!(t
            .blocked(&["client"])
            .is_some_and(|s| (1..=60).contains(&s)));
        assert!(t.blocked(&["other", "127.0.0.1"]).is_some());
        assert_eq!(t.blocked(&["other", "127.0.0.2"]), None);
        t.succeeded("client");
        assert_eq!(t.blocked(&["client"]), None);
    }
}
