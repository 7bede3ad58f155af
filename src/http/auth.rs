//! HTTP basic authentication against `basic_auth_users` (bcrypt hashes).
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10), so a
//! credential that was verified is remembered, as a SHA-256 digest of user,
//! password and hash, never the password itself: a scrape every 15 s pays
//! for bcrypt once. Failures are never remembered, and an unknown user
//! costs a bcrypt run too, so timing does not tell which users exist. The
//! memory is bounded (`MAX_REMEMBERED`) and is emptied when full. How many
//! bcrypt runs may go at once is the server's bound (`AUTH_SLOTS`): a
//! remembered credential never waits for one.

use std::collections::HashSet;
use std::sync::Mutex;

use base64::Engine;
use ring::digest::{digest, SHA256};

/// Verified credentials remembered at most.
const MAX_REMEMBERED: usize = 256;

/// A hash of a random password nobody kept (htpasswd, cost 10), checked
/// for unknown users so that they cost as much as known ones.
const DUMMY_HASH: &str = "$2y$10$jKWiNxEJ6.WK1M9vRMysLOVChMOR7JG1ndhy5ePhAloGGA.xFu7y.";

pub struct BasicAuth {
    users: Vec<(String, String)>,
    remembered: Mutex<HashSet<[u8; 32]>>,
}

impl BasicAuth {
    pub fn new(users: Vec<(String, String)>) -> BasicAuth {
        BasicAuth {
            users,
            remembered: Mutex::new(HashSet::new()),
        }
    }

    /// Whether an `Authorization` header value names a user and password
    /// that match. Blocking (bcrypt): call it off the async runtime, and
    /// only with a place under the bcrypt bound (`AUTH_SLOTS` in the
    /// server).
    pub fn check(&self, header: Option<&[u8]>) -> bool {
        self.verify(header, false)
    }

    /// Whether the header holds a credential verified before: a SHA-256,
    /// no bcrypt, cheap enough for the async runtime. False says nothing
    /// yet: `check` decides.
    pub fn remembered(&self, header: Option<&[u8]>) -> bool {
        self.verify(header, true)
    }

    fn verify(&self, header: Option<&[u8]>, remembered_only: bool) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let hash = self
            .users
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, h)| h.as_str());
        let key = remember_key(&user, &password, hash.unwrap_or(DUMMY_HASH));
        if hash.is_some() && self.lock().contains(&key) {
            return true;
        }
        if remembered_only {
            return false;
        }
        // bcrypt reads at most 72 bytes; longer passwords are refused by
        // the crate, and so by us.
        let ok = bcrypt::verify(&password, hash.unwrap_or(DUMMY_HASH)).unwrap_or(false);
        if ok && hash.is_some() {
            let mut remembered = self.lock();
            if remembered.len() >= MAX_REMEMBERED {
                remembered.clear();
            }
            remembered.insert(key);
            return true;
        }
        false
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.remembered.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn remember_key(user: &str, password: &[u8], hash: &str) -> [u8; 32] {
    let mut input = Vec::with_capacity(user.len() + password.len() + hash.len() + 2);
    input.extend_from_slice(user.as_bytes());
    input.push(0);
    input.extend_from_slice(hash.as_bytes());
    input.push(0);
    input.extend_from_slice(password);
    let mut key = [0u8; 32];
    key.copy_from_slice(digest(&SHA256, &input).as_ref());
    key
}

/// `Basic base64(user:password)` into user and password bytes.
fn parse_basic(header: &[u8]) -> Option<(String, Vec<u8>)> {
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, value) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn the_right_password_passes_and_wrong_ones_and_unknown_users_do_not() {
        // Cost 4 keeps the test quick; the format is htpasswd's.
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = BasicAuth::new(vec![("prom".into(), hash)]);
        assert!(auth.check(Some(header("prom:s3cret").as_bytes())));
        assert!(
            auth.check(Some(header("prom:s3cret").as_bytes())),
            "remembered"
        );
        assert!(!auth.check(Some(header("prom:wrong").as_bytes())));
        assert!(!auth.check(Some(header("other:s3cret").as_bytes())));
        assert!(!auth.check(Some(b"Bearer abc")));
        assert!(!auth.check(Some(b"Basic !!!")));
        assert!(!auth.check(None));
        assert_eq!(auth.lock().len(), 1, "only the success is remembered");
        assert!(auth.remembered(Some(header("prom:s3cret").as_bytes())));
        assert!(!auth.remembered(Some(header("prom:wrong").as_bytes())));
    }

    #[test]
    fn nothing_is_remembered_before_a_bcrypt_check() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = BasicAuth::new(vec![("prom".into(), hash)]);
        assert!(!auth.remembered(Some(header("prom:s3cret").as_bytes())));
        assert!(auth.check(Some(header("prom:s3cret").as_bytes())));
        assert!(auth.remembered(Some(header("prom:s3cret").as_bytes())));
    }

    #[test]
    fn the_dummy_hash_is_a_valid_bcrypt_hash_that_nothing_matches() {
        assert!(matches!(bcrypt::verify("", DUMMY_HASH), Ok(false)));
        assert!(matches!(bcrypt::verify("password", DUMMY_HASH), Ok(false)));
    }

    #[test]
    fn a_password_may_hold_colons() {
        assert_eq!(
            parse_basic(header("u:a:b").as_bytes()),
            Some(("u".to_string(), b"a:b".to_vec()))
        );
    }
}
