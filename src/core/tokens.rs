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
use std::net::IpAddr;
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

/// How many login attempts that did not succeed a client id, or an address, may have in
/// one window.
const MAX_FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);
/// Entries kept at most per map; past it, expired entries are dropped (an address can
/// add at most `MAX_FAILURES` client ids a minute, so the client map cannot be flooded
/// from few addresses).
const MAX_ENTRIES: usize = 100_000;

/// Counts of one key in the current window.
type Counts<K> = HashMap<K, (Instant, u32)>;

/// Slows down online guessing of client secrets: after `MAX_FAILURES` unsuccessful
/// logins for one client id or from one address within a minute, logins for it are
/// refused (429) until the minute is over. An attempt counts when it starts (so parallel
/// requests cannot guess more) and is taken back when it succeeds. Addresses and client
/// ids are counted apart (a client id cannot block an address, nor the reverse).
#[derive(Default)]
pub struct LoginThrottle {
    counts: Mutex<(Counts<IpAddr>, Counts<Uuid>)>,
}

fn wait_of(entry: Option<&(Instant, u32)>) -> Option<u32> {
    let (start, n) = entry?;
    (*n >= MAX_FAILURES && start.elapsed() < WINDOW)
        .then(|| (WINDOW.saturating_sub(start.elapsed()).as_secs() as u32).max(1))
}

fn count<K: std::hash::Hash + Eq + Copy>(map: &mut Counts<K>, key: K) {
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, (start, _)| start.elapsed() < WINDOW);
    }
    let entry = map.entry(key).or_insert((Instant::now(), 0));
    if entry.0.elapsed() >= WINDOW {
        *entry = (Instant::now(), 0);
    }
    entry.1 += 1;
}

impl LoginThrottle {
    /// Starts an attempt: `Err(seconds to wait)` if the address or the client id has used
    /// up its attempts, else counts it for both.
    pub fn attempt(&self, address: Option<IpAddr>, client: Option<Uuid>) -> Result<(), u32> {
        let mut guard = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (by_address, by_client) = &mut *guard;
        let wait = address
            .and_then(|a| wait_of(by_address.get(&a)))
            .max(client.and_then(|c| wait_of(by_client.get(&c))));
        if let Some(w) = wait {
            return Err(w);
        }
        if let Some(a) = address {
            count(by_address, a);
        }
        if let Some(c) = client {
            count(by_client, c);
        }
        Ok(())
    }

    /// The attempt succeeded: it does not count against the address, and the client id
    /// starts afresh.
    pub fn succeeded(&self, address: Option<IpAddr>, client: Uuid) {
        let mut guard = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (by_address, by_client) = &mut *guard;
        by_client.remove(&client);
        if let Some(e) = address.and_then(|a| by_address.get_mut(&a)) {
            e.1 = e.1.saturating_sub(1);
        }
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
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let there: IpAddr = "127.0.0.2".parse().unwrap();
        let client = Uuid::from_bytes([3; 16]);
        let other = Uuid::from_bytes([4; 16]);
        for _ in 0..5 {
            assert_eq!(t.attempt(Some(here), Some(client)), Ok(()));
        }
        // Used up for that address and that client id, not for others.
        assert!(t
            .attempt(Some(here), Some(other))
            .is_err_and(|s| (1..=60).contains(&s)));
        assert!(t.attempt(Some(there), Some(client)).is_err());
        assert_eq!(t.attempt(Some(there), Some(other)), Ok(()));
        // A success takes its attempt back and clears the client id.
        t.succeeded(Some(there), other);
        for _ in 0..4 {
            assert_eq!(t.attempt(Some(there), None), Ok(()));
        }
        assert!(t.attempt(Some(there), None).is_ok());
        assert!(t.attempt(Some(there), None).is_err());
    }
}
