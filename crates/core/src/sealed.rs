//! Secrets at rest: AES-256-GCM under a key derived from one configured secret and a purpose
//! label, so a signing key and a TOTP secret sealed under the same `secrets.cipher` entry use
//! different keys. The additional data binds a sealed value to what it belongs to (a key id,
//! an identity id): moved to another row it no longer opens.
//!
//! Stored form: standard base64 of a 12-byte random nonce, the ciphertext and its 16-byte tag.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// What a sealed value is for; each purpose derives its own key from a secret.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// A signing key's private half (`keys.rs`).
    SigningKey,
    /// A second factor's secret: a TOTP key, lookup codes waiting to be revealed.
    Factor,
    /// The `state` of a social sign-in (its flow's id).
    OidcState,
    /// A social sign-in provider's tokens, kept with the `oidc` credential.
    UpstreamToken,
    /// A native app's session token, waiting in its flow for the exchange.
    ExchangeToken,
    /// A browser's Clerk client (its sign-in and its sessions' tokens), in its `__client` cookie.
    ClerkClient,
}

impl Purpose {
    const fn label(self) -> &'static [u8] {
        match self {
            // The label the first stored keys were sealed with; never change it.
            Purpose::SigningKey => b"portcullis signing-key encryption v1\0",
            Purpose::Factor => b"portcullis second-factor secret v1\0",
            Purpose::OidcState => b"portcullis oidc state v1\0",
            Purpose::UpstreamToken => b"portcullis upstream token v1\0",
            Purpose::ExchangeToken => b"portcullis exchange token v1\0",
            Purpose::ClerkClient => b"portcullis clerk client v1\0",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("no randomness or the cipher refused the key")]
    Seal,
    /// No configured secret opens it (secrets changed), or it was moved or altered.
    #[error("the sealed value cannot be opened with any configured secret")]
    Open,
    #[error("the sealed value is corrupt: {0}")]
    Corrupt(String),
}

fn key(secret: &str, purpose: Purpose) -> Result<LessSafeKey, SealError> {
    let mut h = Sha256::new();
    h.update(purpose.label());
    h.update(secret.as_bytes());
    let key = UnboundKey::new(&AES_256_GCM, &h.finalize()).map_err(|_| SealError::Seal)?;
    Ok(LessSafeKey::new(key))
}

/// Seals `plain` under `secret` for `purpose`, bound to `aad`.
pub fn seal(secret: &str, purpose: Purpose, plain: &[u8], aad: &str) -> Result<String, SealError> {
    let key = key(secret, purpose)?;
    let mut nonce = [0u8; 12];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError::Seal)?;
    let mut buf = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad.as_bytes()),
        &mut buf,
    )
    .map_err(|_| SealError::Seal)?;
    let mut out = nonce.to_vec();
    out.extend(buf);
    Ok(STANDARD.encode(out))
}

/// Opens a value [`seal`]ed under any of `secrets` (newest first, so they can rotate).
pub fn open(
    secrets: &[String],
    purpose: Purpose,
    blob: &str,
    aad: &str,
) -> Result<Vec<u8>, SealError> {
    let raw = STANDARD
        .decode(blob)
        .map_err(|e| SealError::Corrupt(e.to_string()))?;
    let (nonce, sealed) = match raw.split_first_chunk::<12>() {
        Some((nonce, sealed)) if sealed.len() >= 16 => (nonce, sealed),
        _ => return Err(SealError::Corrupt("too short".into())),
    };
    for s in secrets {
        let key = key(s, purpose)?;
        let mut buf = sealed.to_vec();
        if let Ok(plain) = key.open_in_place(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad.as_bytes()),
            &mut buf,
        ) {
            return Ok(plain.to_vec());
        }
    }
    Err(SealError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_secret_purpose_and_binding() {
        let blob = seal("s1", Purpose::Factor, b"JBSWY3DP", "identity-a").unwrap_or_default();
        assert!(!blob.contains("JBSWY3DP"));
        let secrets = vec!["new".to_string(), "s1".to_string()];
        let opened = open(&secrets, Purpose::Factor, &blob, "identity-a").ok();
        assert_eq!(opened.as_deref(), Some(&b"JBSWY3DP"[..]));
        assert!(open(&secrets, Purpose::Factor, &blob, "identity-b").is_err());
        assert!(open(&secrets, Purpose::SigningKey, &blob, "identity-a").is_err());
        assert!(open(&["other".into()], Purpose::Factor, &blob, "identity-a").is_err());
        assert!(matches!(
            open(&secrets, Purpose::Factor, "AAAA", "identity-a"),
            Err(SealError::Corrupt(_))
        ));
    }
}
