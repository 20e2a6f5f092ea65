//! Signing keys: generation, encryption at rest, the JWKS, and the key ring used to sign and
//! verify every JWT Portcullis issues.
//!
//! Keys are asymmetric (ES256 by default, EdDSA and RS256 by configuration) and generated with
//! aws-lc-rs, which also backs `jsonwebtoken` here; it carries no open advisory (unlike the
//! pure-Rust `rsa` crate's Marvin timing issue). Private keys are stored AES-256-GCM encrypted
//! under a key derived from the configured secrets. HS256 exists only when an operator sets a
//! shared secret, and is then never published in the JWKS.

use crate::config::TokenAlgorithm;
use crate::sealed::{self, Purpose, SealError};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("a stored signing key cannot be decrypted with any configured secret (were secrets.cipher/secrets.default changed?)")]
    Decrypt,
    #[error("stored key {0} is corrupt: {1}")]
    Corrupt(String, String),
    #[error("unsupported signing algorithm {0:?}: expected ES256, EdDSA, RS256 or HS256")]
    Algorithm(String),
}

/// A signing key as stored: the private half encrypted, the public half as a JWK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    /// `next` (published, not yet signing), `current` (signs new tokens) or `retired`
    /// (verifies until `drop_after`).
    pub state: String,
    pub private_enc: String,
    pub public_jwk: Value,
    pub created_at: OffsetDateTime,
    /// When the key became `current`.
    pub activated_at: Option<OffsetDateTime>,
    /// When a retired key leaves the JWKS: after the last token it signed has expired.
    pub drop_after: Option<OffsetDateTime>,
}

pub fn parse_alg(alg: &str) -> Result<Algorithm, KeyError> {
    match alg {
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        "RS256" => Ok(Algorithm::RS256),
        "HS256" => Ok(Algorithm::HS256),
        other => Err(KeyError::Algorithm(other.to_string())),
    }
}

fn encrypt(secret: &str, plain: &[u8], kid: &str) -> Result<String, KeyError> {
    sealed::seal(secret, Purpose::SigningKey, plain, kid)
        .map_err(|_| KeyError::Generate("encryption failed".into()))
}

fn decrypt(secrets: &[String], blob: &str, kid: &str) -> Result<Vec<u8>, KeyError> {
    sealed::open(secrets, Purpose::SigningKey, blob, kid).map_err(|e| match e {
        SealError::Corrupt(why) => KeyError::Corrupt(kid.into(), why),
        SealError::Seal | SealError::Open => KeyError::Decrypt,
    })
}

/// Generates a new key for `alg`, encrypted under `secret`, in state `state`.
pub fn generate(
    alg: TokenAlgorithm,
    state: &str,
    secret: &str,
    now: OffsetDateTime,
) -> Result<StoredKey, KeyError> {
    let rng = SystemRandom::new();
    let kid = format!(
        "{}-{}",
        alg.as_str().to_ascii_lowercase(),
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let (private, mut jwk) = match alg {
        TokenAlgorithm::Es256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            // Uncompressed SEC1 point: 0x04 || X (32) || Y (32).
            let (x, y) = match pair.public_key().as_ref().split_first() {
                Some((_, xy)) if xy.len() == 64 => xy.split_at(32),
                _ => {
                    return Err(KeyError::Generate(
                        "unexpected P-256 public key size".into(),
                    ))
                }
            };
            (
                doc.as_ref().to_vec(),
                json!({ "kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y) }),
            )
        }
        TokenAlgorithm::EdDsa => {
            let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            (
                doc.as_ref().to_vec(),
                json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()) }),
            )
        }
        TokenAlgorithm::Rs256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let public = pair.public_key();
            let n = public.modulus().big_endian_without_leading_zero().to_vec();
            let e = public.exponent().big_endian_without_leading_zero().to_vec();
            (
                der.as_ref().to_vec(),
                json!({ "kty": "RSA", "n": b64(&n), "e": b64(&e) }),
            )
        }
        // HS256 has no key pair: it signs with the configured shared secret.
        TokenAlgorithm::Hs256 => return Err(KeyError::Algorithm(alg.to_string())),
    };
    if let Some(o) = jwk.as_object_mut() {
        o.insert("kid".into(), json!(kid));
        o.insert("alg".into(), json!(alg.as_str()));
        o.insert("use".into(), json!("sig"));
    }
    Ok(StoredKey {
        private_enc: encrypt(secret, &private, &kid)?,
        kid,
        alg: alg.as_str().to_string(),
        state: state.to_string(),
        public_jwk: jwk,
        created_at: now,
        activated_at: (state == "current").then_some(now),
        drop_after: None,
    })
}

/// A usable key: what signs, what verifies.
pub struct LoadedKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: Option<EncodingKey>,
    pub decoding: DecodingKey,
    pub public_jwk: Option<Value>,
    pub current: bool,
}

impl LoadedKey {
    pub fn from_stored(k: &StoredKey, secrets: &[String]) -> Result<LoadedKey, KeyError> {
        let alg = parse_alg(&k.alg)?;
        let corrupt =
            |e: jsonwebtoken::errors::Error| KeyError::Corrupt(k.kid.clone(), e.to_string());
        let jwk_str = |f: &str| {
            k.public_jwk
                .get(f)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let current = k.state == "current";
        // Retired keys only verify; their private half is not even decrypted.
        let private = if current {
            Some(decrypt(secrets, &k.private_enc, &k.kid)?)
        } else {
            None
        };
        let (encoding, decoding) = match alg {
            Algorithm::ES256 => (
                private.map(|p| EncodingKey::from_ec_der(&p)),
                DecodingKey::from_ec_components(&jwk_str("x"), &jwk_str("y")).map_err(corrupt)?,
            ),
            Algorithm::EdDSA => (
                private.map(|p| EncodingKey::from_ed_der(&p)),
                DecodingKey::from_ed_components(&jwk_str("x")).map_err(corrupt)?,
            ),
            Algorithm::RS256 => {
                let enc = match private {
                    Some(p) => {
                        let pem = format!(
                            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                            STANDARD.encode(p)
                        );
                        Some(EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(corrupt)?)
                    }
                    None => None,
                };
                (
                    enc,
                    DecodingKey::from_rsa_components(&jwk_str("n"), &jwk_str("e"))
                        .map_err(corrupt)?,
                )
            }
            _ => return Err(KeyError::Algorithm(k.alg.clone())),
        };
        Ok(LoadedKey {
            kid: k.kid.clone(),
            alg,
            encoding,
            decoding,
            public_jwk: Some(k.public_jwk.clone()),
            current,
        })
    }

    /// The operator's shared HS256 secret (never in the JWKS).
    pub fn hs256(secret: &str) -> LoadedKey {
        // The kid is keyed by the secret (HMAC), not a plain hash of it: a hash would let
        // anyone test guessed secrets offline and link deployments sharing one (F17).
        let kid = format!("hs256-{}", hs256_kid_digest(secret));
        LoadedKey {
            kid,
            alg: Algorithm::HS256,
            encoding: Some(EncodingKey::from_secret(secret.as_bytes())),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            public_jwk: None,
            current: true,
        }
    }
}

/// How long a loaded key ring is trusted before the database is read again, so a rotation
/// made by another instance reaches this one within this time. An unknown `kid` forces a
/// reload at once.
pub const RING_TTL: Duration = Duration::from_secs(30);

/// The keys that sign and verify, loaded and decrypted: the current signing key, every key a
/// token may still be verified with (by `kid`), and the published JWKS.
pub struct Ring {
    pub current: Arc<LoadedKey>,
    pub keys: HashMap<String, Arc<LoadedKey>>,
    pub jwks: Value,
    /// When the signing key became current (scheduled rotation counts from it).
    pub current_activated_at: Option<OffsetDateTime>,
}

#[derive(Default)]
pub struct KeyRingCache {
    pub(crate) cached: tokio::sync::RwLock<Option<(Instant, Arc<Ring>)>>,
}

impl KeyRingCache {
    /// The cached ring, if it was loaded less than [`RING_TTL`] ago.
    pub(crate) async fn fresh(&self) -> Option<Arc<Ring>> {
        match self.cached.read().await.as_ref() {
            Some((at, ring)) if at.elapsed() < RING_TTL => Some(ring.clone()),
            _ => None,
        }
    }
}

fn hs256_kid_digest(secret: &str) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(b"portcullis hs256 kid");
    let bytes = mac.finalize().into_bytes();
    hex::encode(bytes.get(..8).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const NOW: OffsetDateTime = time::macros::datetime!(2026-01-01 00:00 UTC);

    #[test]
    fn the_hs256_kid_is_keyed_by_the_secret_not_a_plain_hash_of_it() {
        let kid = LoadedKey::hs256(SECRET).kid;
        let plain = hex::encode(Sha256::digest(SECRET.as_bytes()));
        assert!(kid.starts_with("hs256-") && kid.len() == "hs256-".len() + 16);
        assert!(!plain.starts_with(&kid["hs256-".len()..]), "{kid}");
        assert_eq!(kid, LoadedKey::hs256(SECRET).kid, "stable across restarts");
        assert_ne!(
            kid,
            LoadedKey::hs256("another secret of 32 characters!").kid
        );
    }

    #[test]
    fn each_algorithm_generates_a_key_that_signs_and_verifies() {
        for alg in [
            TokenAlgorithm::Es256,
            TokenAlgorithm::EdDsa,
            TokenAlgorithm::Rs256,
        ] {
            let k = generate(alg, "current", SECRET, NOW).unwrap();
            assert_eq!(k.public_jwk["alg"], alg.as_str());
            assert_eq!(k.public_jwk["kid"], k.kid);
            assert!(
                k.public_jwk.get("d").is_none(),
                "no private material in the JWK"
            );
            let loaded = LoadedKey::from_stored(&k, &[SECRET.to_string()]).unwrap();
            let mut header = jsonwebtoken::Header::new(loaded.alg);
            header.kid = Some(k.kid.clone());
            let t = jsonwebtoken::encode(
                &header,
                &json!({ "sub": "x", "exp": 4_000_000_000u64 }),
                loaded.encoding.as_ref().unwrap(),
            )
            .unwrap();
            let v = jsonwebtoken::Validation::new(loaded.alg);
            assert!(
                jsonwebtoken::decode::<Value>(&t, &loaded.decoding, &v).is_ok(),
                "{alg}"
            );
        }
    }

    #[test]
    fn private_keys_are_encrypted_and_need_a_configured_secret() {
        let k = generate(TokenAlgorithm::Es256, "current", SECRET, NOW).unwrap();
        assert!(!k.private_enc.contains("PRIVATE"));
        let other = "another secret that is long enough".to_string();
        assert!(matches!(
            LoadedKey::from_stored(&k, std::slice::from_ref(&other)),
            Err(KeyError::Decrypt)
        ));
        // Rotated secrets: any configured secret may open the key.
        assert!(LoadedKey::from_stored(&k, &[other, SECRET.to_string()]).is_ok());
    }
}
