//! Credential methods: the seam every way of proving who you are plugs into.
//!
//! A method is one row of [`Method`]: its wire name (the `method` a submit names, the
//! `authentication_methods[].method` of a session), the UI group of its nodes, the flows it
//! takes part in and the assurance level completing it contributes. The method's own room
//! (`code.rs`, `totp.rs`, `lookup.rs`, `webauthn.rs`, `passkey.rs`; `oidc.rs` next) holds what it adds
//! to a flow's form and how it checks a submission; the flow rooms in `selfservice/` call
//! those and stay free of method details. `factor.rs` holds what the second factors share
//! (the pending secret a settings flow keeps, throttling, audit). `password` predates the
//! seam: its nodes and check live in `selfservice/form.rs` and `credentials.rs`.

pub mod code;
pub mod factor;
pub mod lookup;
pub mod oidc;
pub mod passkey;
pub mod totp;
pub mod webauthn;

use crate::flow::FlowKind;

/// Authenticator assurance levels (NIST 800-63B), as Kratos names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Aal {
    Aal1,
    Aal2,
}

impl Aal {
    pub const fn as_str(self) -> &'static str {
        match self {
            Aal::Aal1 => "aal1",
            Aal::Aal2 => "aal2",
        }
    }

    /// `aal1` or `aal2` (the login flow's `aal` parameter, a stored session's level).
    pub fn parse(s: &str) -> Option<Aal> {
        match s {
            "aal1" => Some(Aal::Aal1),
            "aal2" => Some(Aal::Aal2),
            _ => None,
        }
    }
}

/// The methods this server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Identifier and password.
    Password,
    /// A one-time code sent to an address (verification; passwordless sign-in later).
    Code,
    /// A recovery code: signs the user in to set a new password.
    CodeRecovery,
    /// A recovery link made by an admin (`POST /admin/recovery/link`).
    LinkRecovery,
    /// A code of an authenticator app (RFC 6238): a second factor.
    Totp,
    /// One of twelve single-use backup codes: a second factor.
    LookupSecret,
    /// A code sent to an address of the identity, as a second factor (`code.mfa_enabled`):
    /// named `code` like the first factor, as Kratos does, at aal2.
    CodeSecondFactor,
    /// A security key (WebAuthn) as a second factor.
    WebAuthn,
    /// A security key signing in on its own (`webauthn.config.passwordless`): named
    /// `webauthn` like the second factor, as Kratos does, at aal1.
    WebAuthnPasswordless,
    /// A passkey: a discoverable WebAuthn credential that signs in on its own.
    Passkey,
    /// An account at an OpenID Connect or OAuth2 provider (social sign-in).
    Oidc,
}

impl Method {
    /// The name in submits and in a session's `authentication_methods`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Code | Method::CodeSecondFactor => "code",
            Method::CodeRecovery => "code_recovery",
            Method::LinkRecovery => "link_recovery",
            Method::Totp => "totp",
            Method::LookupSecret => "lookup_secret",
            Method::WebAuthn | Method::WebAuthnPasswordless => "webauthn",
            Method::Passkey => "passkey",
            Method::Oidc => "oidc",
        }
    }

    /// The UI group of the method's nodes.
    pub const fn group(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Code | Method::CodeRecovery | Method::CodeSecondFactor => "code",
            Method::LinkRecovery => "link",
            Method::Totp => "totp",
            Method::LookupSecret => "lookup_secret",
            Method::WebAuthn | Method::WebAuthnPasswordless => "webauthn",
            Method::Passkey => "passkey",
            Method::Oidc => "oidc",
        }
    }

    /// What completing the method proves: a first factor (aal1) or a second (aal2).
    pub const fn aal(self) -> Aal {
        match self {
            Method::Password
            | Method::Code
            | Method::CodeRecovery
            | Method::LinkRecovery
            | Method::Passkey
            | Method::Oidc
            | Method::WebAuthnPasswordless => Aal::Aal1,
            Method::Totp | Method::LookupSecret | Method::CodeSecondFactor | Method::WebAuthn => {
                Aal::Aal2
            }
        }
    }

    /// The flows whose forms offer the method.
    pub fn flows(self) -> &'static [FlowKind] {
        match self {
            Method::Password => &[FlowKind::Login, FlowKind::Registration, FlowKind::Settings],
            Method::Code => &[FlowKind::Verification],
            Method::CodeSecondFactor => &[FlowKind::Login],
            Method::CodeRecovery | Method::LinkRecovery => &[FlowKind::Recovery],
            Method::Totp | Method::LookupSecret | Method::WebAuthn => {
                &[FlowKind::Login, FlowKind::Settings]
            }
            Method::Passkey | Method::WebAuthnPasswordless | Method::Oidc => {
                &[FlowKind::Login, FlowKind::Registration, FlowKind::Settings]
            }
        }
    }
}
