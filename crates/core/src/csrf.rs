//! Anti-CSRF tokens for browser flows, the way nosurf (and so Kratos) does them: a random
//! secret lives in an HttpOnly cookie, and pages carry the secret masked with a fresh one-time
//! pad, so the value in the HTML differs on every render (no BREACH-style leak) while any
//! rendering verifies against the cookie.
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
