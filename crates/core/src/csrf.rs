//! Anti-CSRF tokens for browser flows, the way nosurf (and so Kratos) does them: a random
//! secret lives in an HttpOnly cookie, and pages carry the secret masked with a fresh one-time
//! pad, so the value in the HTML differs on every render (no BREACH-style leak) while any
//! rendering verifies against the cookie.
//!
//! Once a browser has a session, its secret is no longer random: it is derived from the session
//! and the server's cookie secret ([`session_secret`]), and a browser is only believed to hold
//! it if one of its cookies carries exactly that value. A cookie planted by a sibling subdomain
//! (which knows neither input) then never matches (security review F18).
//!
//! Written here rather than taken from a crate: the Rust CSRF crates bind tokens to their own
//! cookie formats and middleware, while this needs exactly the double-submit check of Kratos'
//! wire contract (`csrf_token` field or `X-CSRF-Token` header against the cookie).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;

const LEN: usize = 32;

/// A new cookie secret (32 random bytes, base64url).
pub fn new_secret() -> String {
    let mut b = [0u8; LEN];
    rand::rngs::OsRng.fill_bytes(&mut b);
    B64.encode(b)
}

/// The secret of a browser signed in with the session whose token hashes to `token_hash`:
/// HMAC-SHA256 under the server's cookie key, so it needs no storage, changes with every
/// session and cannot be computed from the session cookie alone.
pub fn session_secret(key: &[u8], token_hash: &str) -> String {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm is never taken.
        Err(_) => return new_secret(),
    };
    mac.update(b"portcullis csrf secret\0");
    mac.update(token_hash.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// Whether two secrets are equal, in constant time.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Whether `s` is a well-formed cookie secret (a tampered cookie is treated as absent).
pub fn is_secret(s: &str) -> bool {
    decode_secret(s).is_some()
}

fn decode_secret(s: &str) -> Option<[u8; LEN]> {
    B64.decode(s).ok()?.try_into().ok()
}

/// The secret masked with a fresh one-time pad: `base64url(pad || pad ^ secret)`.
pub fn mask(secret: &str) -> Option<String> {
    let secret = decode_secret(secret)?;
    let mut out = [0u8; 2 * LEN];
    let (pad, masked) = out.split_at_mut(LEN);
    rand::rngs::OsRng.fill_bytes(pad);
    for ((m, p), s) in masked.iter_mut().zip(pad.iter()).zip(secret) {
        *m = p ^ s;
    }
    Some(B64.encode(out))
}

/// Whether the masked `token` unmasks to `secret`, compared in constant time.
pub fn verify(secret: &str, token: &str) -> bool {
    let (Some(secret), Ok(raw)) = (decode_secret(secret), B64.decode(token.trim())) else {
        return false;
    };
    let (pad, masked) = match raw.split_at_checked(LEN) {
        Some((pad, masked)) if masked.len() == LEN => (pad, masked),
        _ => return false,
    };
    let mut unmasked = [0u8; LEN];
    for ((u, p), m) in unmasked.iter_mut().zip(pad).zip(masked) {
        *u = p ^ m;
    }
    unmasked.ct_eq(&secret).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_secrets_are_well_formed_and_bound_to_key_and_session() {
        let a = session_secret(b"key one", "hash-a");
        assert!(is_secret(&a), "usable as a cookie secret");
        assert_eq!(a, session_secret(b"key one", "hash-a"));
        assert_ne!(a, session_secret(b"key one", "hash-b"));
        assert_ne!(a, session_secret(b"key two", "hash-a"));
        assert!(same_secret(&a, &a.clone()) && !same_secret(&a, &new_secret()));
    }

    #[test]
    fn masked_tokens_differ_but_verify_against_their_secret_only() {
        let s = new_secret();
        let a = mask(&s).unwrap_or_default();
        let b = mask(&s).unwrap_or_default();
        assert_ne!(a, b, "every rendering gets a fresh pad");
        assert!(verify(&s, &a) && verify(&s, &b));
        assert!(
            !verify(&new_secret(), &a),
            "another cookie's token is refused"
        );
        assert!(!verify(&s, &s), "the bare secret is not a token");
        assert!(!verify(&s, ""));
        assert!(!verify("not-a-secret", &a));
        assert!(mask("short").is_none());
        let mut tampered = a.clone().into_bytes();
        tampered[70] = if tampered[70] == b'A' { b'B' } else { b'A' };
        assert!(!verify(
            &s,
            &String::from_utf8(tampered).unwrap_or_default()
        ));
    }
}
