//! The `totp` method: codes of an authenticator app (RFC 6238) as a second factor.
//!
//! Exactly Kratos's parameters (SHA-1, 6 digits, 30 s, one step of skew either way) and its
//! `otpauth://` URL, so keys move between the two. Unlike Kratos v1.3, a code is accepted once:
//! the credential remembers the last step it accepted, and a code of that step or an earlier
//! one is wrong. The key is sealed at rest ([`crate::sealed`]); the credential's config holds
//! `{totp_url_encrypted, last_step}`.

use super::factor::{Checked, Pending};
use super::Method;
use crate::audit::{AuditKind, Origin};
use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::identity::{Credential, Identity};
use crate::service::{urlencode, Core};
use crate::store::{Effects, StoreError};
use crate::ui::{UiNode, UiText};
use rand::RngCore;
use serde_json::json;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use totp_rs::{Algorithm, Secret, TOTP};
use uuid::Uuid;
use zeroize::Zeroizing;

pub const DIGITS: usize = 6;
pub const STEP_SECONDS: u64 = 30;
/// Kratos's key size: 160 bits (32 base32 characters).
const SECRET_BYTES: usize = 20;
/// The QR code's display size (the node's `width`/`height`), as Kratos.
const QR_SIZE: u32 = 256;

pub mod msg {
    use crate::ui::UiText;
    use serde_json::json;

    pub fn wrong_code() -> UiText {
        UiText::error(
            4000008,
            "The provided authentication code is invalid, please try again.",
            None,
        )
    }
    pub fn no_device() -> UiText {
        UiText::error(4000011, "You have no TOTP device set up.", None)
    }
    pub fn qr_label() -> UiText {
        UiText::info(1050005, "Authenticator app QR code")
    }
    pub fn secret(secret: &str) -> UiText {
        let mut t = UiText::info(1050006, secret);
        t.context = Some(json!({ "secret": secret }));
        t
    }
    pub fn secret_label() -> UiText {
        UiText::info(
            1050017,
            "This is your authenticator app secret. Use it if you can not scan the QR code.",
        )
    }
    pub fn verify_code() -> UiText {
        UiText::info(1070006, "Verify code")
    }
    pub fn unlink() -> UiText {
        UiText::info(1050004, "Unlink TOTP Authenticator App")
    }
    pub fn login_label() -> UiText {
        UiText::info(1010006, "Authentication code")
    }
    pub fn login_submit() -> UiText {
        UiText::info(1010009, "Use Authenticator")
    }
}

/// A key made for an identity and not linked yet ([`Core::new_totp_key`]).
pub struct NewTotpKey {
    /// The `otpauth://` URL, sealed to the identity.
    pub sealed: String,
    pub url: Zeroizing<String>,
    /// The base32 secret.
    pub secret: Zeroizing<String>,
}

fn totp(secret: Vec<u8>) -> TOTP {
    TOTP::new_unchecked(Algorithm::SHA1, DIGITS, 1, STEP_SECONDS, secret)
}

/// The base32 form of a key (what the user types into an app without a camera).
pub fn base32(secret: &[u8]) -> String {
    match &Secret::Raw(secret.to_vec()).to_encoded() {
        Secret::Encoded(s) => s.clone(),
        Secret::Raw(_) => String::new(),
    }
}

/// The `otpauth://` URL exactly as Kratos writes it (query keys sorted).
pub fn otpauth_url(issuer: &str, account: &str, secret_base32: &str) -> String {
    let path = |s: &str| urlencode(s).replace('+', "%20");
    format!(
        "otpauth://totp/{}:{}?algorithm=SHA1&digits={DIGITS}&issuer={}&period={STEP_SECONDS}&secret={secret_base32}",
        path(issuer),
        path(account),
        urlencode(issuer),
    )
}

/// The key inside an `otpauth://` URL.
fn secret_of_url(url: &str) -> Option<Zeroizing<Vec<u8>>> {
    let parsed = url::Url::parse(url).ok()?;
    let encoded = parsed
        .query_pairs()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.to_uppercase())?;
    Secret::Encoded(encoded).to_bytes().ok().map(Zeroizing::new)
}

/// The time step of `code` for `secret` within one step of `unix`, later than `after` (the
/// last step accepted). Every candidate is computed and compared in constant time.
pub fn matching_step(secret: &[u8], code: &str, unix: u64, after: Option<u64>) -> Option<u64> {
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret.to_vec());
    let now = unix / STEP_SECONDS;
    let mut found = None;
    for step in [now.saturating_sub(1), now, now + 1] {
        let candidate = t.generate(step * STEP_SECONDS);
        let same: bool = candidate.as_bytes().ct_eq(code.as_bytes()).into();
        if same && after.is_none_or(|a| step > a) {
            found = Some(step);
        }
    }
    found
}

/// A PNG of the QR code of `text`, as a `data:` URL.
fn qr_data_url(text: &str) -> Result<String> {
    use base64::Engine;
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| Error::Internal(format!("QR code: {e}")))?;
    let modules = code.width();
    let colors = code.to_colors();
    // A quiet zone of four modules, scaled to the largest whole factor within QR_SIZE.
    let side = modules + 8;
    let scale = (QR_SIZE as usize / side).max(1);
    let px = side * scale;
    let mut pixels = vec![255u8; px * px];
    for (i, c) in colors.iter().enumerate() {
        if *c != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + 4, i / modules + 4);
        for y in my * scale..(my + 1) * scale {
            let row = y * px;
            if let Some(line) = pixels.get_mut(row + mx * scale..row + (mx + 1) * scale) {
                line.fill(0);
            }
        }
    }
    let mut png_bytes = vec![];
    let size = u32::try_from(px).map_err(|_| Error::Internal("QR code too large".into()))?;
    let mut enc = png::Encoder::new(&mut png_bytes, size, size);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let png_err = |e: png::EncodingError| Error::Internal(format!("QR code PNG: {e}"));
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(&pixels).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png_bytes)
    ))
}

fn key_image(src: String) -> UiNode {
    UiNode::image("totp", "totp_qr", src, QR_SIZE, msg::qr_label())
}

fn key_text(secret: &str) -> UiNode {
    UiNode::text(
        "totp",
        "totp_secret_key",
        msg::secret(secret),
        msg::secret_label(),
    )
}

/// The login form's nodes for a second step with TOTP.
pub fn login_nodes() -> Vec<UiNode> {
    let mut code = UiNode::input("totp", "totp_code", "text", Some(msg::login_label()))
        .with_attr("required", json!(true))
        .with_attr("autocomplete", json!("one-time-code"));
    code.set_value(json!(""));
    let submit = UiNode::input("totp", "method", "submit", Some(msg::login_submit()))
        .with_attr("value", json!("totp"));
    vec![code, submit]
}

impl Core {
    /// A fresh key for `identity`: sealed (to keep until a code of it comes back), and as the
    /// `otpauth://` URL and the base32 secret an authenticator app takes.
    pub(crate) fn new_totp_key(&self, identity: &Identity) -> Result<NewTotpKey> {
        let mut secret = Zeroizing::new(vec![0u8; SECRET_BYTES]);
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let encoded = Zeroizing::new(base32(&secret));
        let schema = self.schema(&identity.schema_id)?;
        let account = schema
            .totp_account_name(&identity.traits)
            .unwrap_or_else(|| identity.id.to_string());
        let issuer = &self.config.selfservice.methods.totp.config.issuer;
        let url = Zeroizing::new(otpauth_url(issuer, &account, &encoded));
        Ok(NewTotpKey {
            sealed: self.seal_factor(identity.id, url.as_bytes())?,
            url,
            secret: encoded,
        })
    }

    /// The settings form's TOTP nodes: an unlink button once linked; otherwise a fresh key
    /// (kept sealed in the flow until a code of it is submitted) as a QR code and as text,
    /// and the code input.
    pub(crate) fn totp_settings_nodes(
        &self,
        flow: &mut Flow,
        identity: &Identity,
    ) -> Result<Vec<UiNode>> {
        if !self.factor_enabled(Method::Totp) {
            return Ok(vec![]);
        }
        if identity.credentials.contains_key(Method::Totp.as_str()) {
            let unlink = UiNode::input("totp", "totp_unlink", "submit", Some(msg::unlink()))
                .with_attr("value", json!("true"));
            return Ok(vec![unlink]);
        }
        let key = self.new_totp_key(identity)?;
        let pending = flow.pending.get_or_insert_with(Pending::default);
        pending.totp = Some(key.sealed);
        // Stored empty: the answer fills the key in (`show_totp_key`).
        let code = UiNode::input("totp", "totp_code", "text", Some(msg::verify_code()))
            .with_attr("required", json!(true))
            .with_attr("autocomplete", json!("one-time-code"));
        let save = UiNode::input(
            "totp",
            "method",
            "submit",
            Some(crate::ui::msg::label_save()),
        )
        .with_attr("value", json!("totp"));
        Ok(vec![key_image(String::new()), key_text(""), code, save])
    }

    /// Fills the pending key `sealed` into the QR code and text nodes of a flow's answer.
    pub(crate) fn show_totp_key(
        &self,
        flow: &mut Flow,
        identity: &Identity,
        sealed: &str,
    ) -> Result<()> {
        let url = Zeroizing::new(self.open_factor(identity.id, sealed)?);
        let url = Zeroizing::new(String::from_utf8_lossy(&url).into_owned());
        let secret = secret_of_url(&url)
            .ok_or_else(|| Error::Internal("a pending TOTP key has no secret".into()))?;
        let (image, text) = (key_image(qr_data_url(&url)?), key_text(&base32(&secret)));
        for n in &mut flow.ui.nodes {
            match n.attributes.get("id").and_then(serde_json::Value::as_str) {
                Some("totp_qr") => *n = image.clone(),
                Some("totp_secret_key") => *n = text.clone(),
                _ => {}
            }
        }
        Ok(())
    }

    /// Links the key the settings flow showed when `code` is one of its codes. `Err(text)` is
    /// the message for the `totp_code` node.
    pub(crate) async fn link_totp(
        &self,
        flow: &Flow,
        identity: &mut Identity,
        code: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<(), UiText>> {
        if code.is_empty() {
            return Ok(Err(crate::ui::msg::required("totp_code")));
        }
        let Some(sealed_url) = flow.pending.as_ref().and_then(|p| p.totp.clone()) else {
            return Ok(Err(msg::wrong_code()));
        };
        let credential = match self
            .proven_totp_key(identity.id, sealed_url, code, origin, now)
            .await?
        {
            Ok(c) => c,
            Err(text) => return Ok(Err(text)),
        };
        identity
            .credentials
            .insert(Method::Totp.as_str().into(), credential);
        self.save_credential_change(
            identity,
            AuditKind::SecondFactorAdded,
            Method::Totp,
            origin,
            now,
        )
        .await?;
        Ok(Ok(()))
    }

    /// The credential of the pending key `sealed_url` once `code` is one of its codes (its
    /// step used up); a wrong code is counted against the identity's second-factor budget.
    pub(crate) async fn proven_totp_key(
        &self,
        identity: Uuid,
        sealed_url: String,
        code: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<Credential, UiText>> {
        self.admit_second_factor(identity, now).await?;
        let url = Zeroizing::new(self.open_factor(identity, &sealed_url)?);
        let url_text = Zeroizing::new(String::from_utf8_lossy(&url).into_owned());
        let secret = secret_of_url(&url_text)
            .ok_or_else(|| Error::Internal("a pending TOTP key has no secret".into()))?;
        let Some(step) = matching_step(&secret, code.trim(), unix(now), None) else {
            self.second_factor_failed(identity, Method::Totp, "wrong_code", origin, now)
                .await?;
            return Ok(Err(msg::wrong_code()));
        };
        Ok(Ok(Credential {
            id: Uuid::new_v4(),
            kind: Method::Totp.as_str().into(),
            identifiers: vec![identity.to_string()],
            config: json!({ "totp_url_encrypted": sealed_url, "last_step": step }),
            version: 0,
            created_at: now,
            updated_at: now,
        }))
    }

    /// Checks a TOTP code of `identity` and uses up its step.
    pub(crate) async fn check_totp(
        &self,
        identity: &Identity,
        code: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<Checked> {
        let Some(cred) = identity.credentials.get(Method::Totp.as_str()) else {
            return Ok(Checked::Refused(msg::no_device()));
        };
        self.admit_second_factor(identity.id, now).await?;
        let sealed_url = cred
            .config
            .get("totp_url_encrypted")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let url = Zeroizing::new(self.open_factor(identity.id, sealed_url)?);
        let secret = secret_of_url(&String::from_utf8_lossy(&url))
            .ok_or_else(|| Error::Internal("a stored TOTP key has no secret".into()))?;
        let last = cred
            .config
            .get("last_step")
            .and_then(serde_json::Value::as_u64);
        let Some(step) = matching_step(&secret, code.trim(), unix(now), last) else {
            self.second_factor_failed(identity.id, Method::Totp, "wrong_code", origin, now)
                .await?;
            return Ok(Checked::Refused(msg::wrong_code()));
        };
        let mut used = identity.clone();
        if let Some(c) = used.credentials.get_mut(Method::Totp.as_str()) {
            if let Some(o) = c.config.as_object_mut() {
                o.insert("last_step".into(), json!(step));
            }
        }
        // The identity's version makes this the one use of the step: of two racing submits
        // of one code, the second finds the identity changed and is refused.
        match self
            .store
            .update_identity(&mut used, &Effects::none())
            .await
        {
            Ok(()) => Ok(Checked::Accepted(Box::new(used))),
            Err(StoreError::Stale) => Ok(Checked::Refused(msg::wrong_code())),
            Err(e) => Err(e.into()),
        }
    }
}

fn unix(now: OffsetDateTime) -> u64 {
    u64::try_from(now.unix_timestamp()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (8-digit vectors cut to their last six digits).
    #[test]
    fn codes_match_the_rfc_vectors_within_one_step_and_only_after_the_last_used() {
        let secret = b"12345678901234567890";
        assert_eq!(matching_step(secret, "287082", 59, None), Some(1));
        assert_eq!(
            matching_step(secret, "081804", 1_111_111_109, None),
            Some(37_037_036)
        );
        // One step early or late is still accepted, two are not.
        assert_eq!(
            matching_step(secret, "081804", 1_111_111_109 + 30, None),
            Some(37_037_036)
        );
        assert_eq!(
            matching_step(secret, "081804", 1_111_111_109 + 60, None),
            None
        );
        // A step already used is refused: no replay.
        assert_eq!(
            matching_step(secret, "081804", 1_111_111_109, Some(37_037_036)),
            None
        );
        assert_eq!(matching_step(secret, "28708", 59, None), None);
        assert_eq!(matching_step(secret, "28708x", 59, None), None);
    }

    #[test]
    fn the_url_reads_as_kratos_writes_it_and_gives_back_its_key() {
        let key = [7u8; 20];
        let url = otpauth_url("Imp Run", "ada@example.com", &base32(&key));
        assert_eq!(
            url,
            format!(
                "otpauth://totp/Imp%20Run:ada%40example.com?algorithm=SHA1&digits=6&issuer=Imp+Run&period=30&secret={}",
                base32(&key)
            )
        );
        assert_eq!(base32(&key).len(), 32);
        assert_eq!(
            secret_of_url(&url).as_deref().map(Vec::as_slice),
            Some(&key[..])
        );
    }

    #[test]
    fn the_qr_code_is_a_png_data_url() {
        use base64::Engine;
        let url = qr_data_url("otpauth://totp/x:y?secret=AAAA").unwrap_or_default();
        let b64 = url
            .strip_prefix("data:image/png;base64,")
            .unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default();
        assert_eq!(bytes.get(..8), Some(&b"\x89PNG\r\n\x1a\n"[..]));
    }
}
