//! The self-service submit body and its reading as each flow's typed submission: which
//! method a body names (HTML buttons and the WebAuthn script send fields without `method`),
//! and the fields each method takes.

use super::{content_type, form_to_json, read_body, JsonBody};
use crate::error::EdgeError;
use axum::extract::{FromRequest, Request};
use portcullis_core::selfservice::{
    LoginMethod, LoginSubmit, RegistrationMethod, RegistrationSubmit, SettingsMethod,
    SettingsSubmit,
};
use serde_json::{json, Value};

/// A self-service submit body: JSON, or an HTML form whose dotted names (`traits.email`)
/// become nested objects. The handler reads it as the flow's typed submission
/// ([`SubmitBody::login`] …); `form` makes the core coerce trait strings to schema types.
pub struct SubmitBody {
    body: Value,
    form: bool,
}

impl<S: Send + Sync> FromRequest<S> for SubmitBody {
    type Rejection = EdgeError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // The routes set the lower `serve.max_submit_size` (see `public::router`).
        let named = |e| match e {
            EdgeError::PayloadTooLarge(_) => EdgeError::PayloadTooLarge("serve.max_submit_size"),
            e => e,
        };
        if !content_type(req.headers()).starts_with("application/x-www-form-urlencoded") {
            return JsonBody::from_request(req, state)
                .await
                .map(|JsonBody(body)| SubmitBody { body, form: false })
                .map_err(named);
        }
        let bytes = read_body(req, state).await.map_err(named)?;
        let body = form_to_json(&bytes).map_err(EdgeError::BadRequest)?;
        Ok(SubmitBody { body, form: true })
    }
}

impl SubmitBody {
    /// A string field; absent or not a string reads as empty.
    fn text(&self, key: &str) -> String {
        self.body
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    fn method(&self) -> String {
        self.text("method")
    }

    /// A boolean field: JSON `true`, or the string `true` an HTML button sends.
    fn flag(&self, key: &str) -> bool {
        match self.body.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => false,
        }
    }

    /// The `lookup_secret_*` button that was pressed.
    fn lookup_action(&self) -> Option<portcullis_core::methods::lookup::LookupAction> {
        use portcullis_core::methods::lookup::LookupAction;
        [
            ("lookup_secret_regenerate", LookupAction::Regenerate),
            ("lookup_secret_confirm", LookupAction::Confirm),
            ("lookup_secret_reveal", LookupAction::Reveal),
            ("lookup_secret_disable", LookupAction::Disable),
        ]
        .into_iter()
        .find(|(k, _)| self.flag(k))
        .map(|(_, a)| a)
    }

    fn csrf_token(&self) -> Option<String> {
        Some(self.text("csrf_token")).filter(|t| !t.is_empty())
    }

    /// A social sign-in's fields: `provider`, `upstream_parameters` (the core keeps the
    /// allowed ones), and a native app's `id_token` with its `id_token_nonce`.
    fn oidc(&self) -> portcullis_core::methods::oidc::OidcSubmit {
        let some = |k: &str| Some(self.text(k)).filter(|v| !v.is_empty());
        portcullis_core::methods::oidc::OidcSubmit {
            provider: self.text("provider"),
            upstream: self
                .body
                .get("upstream_parameters")
                .cloned()
                .unwrap_or(Value::Null),
            id_token: some("id_token"),
            id_token_nonce: some("id_token_nonce"),
        }
    }

    fn traits(&self) -> Value {
        self.body
            .get("traits")
            .cloned()
            .unwrap_or_else(|| json!({}))
    }

    pub fn login(&self) -> LoginSubmit {
        // An HTML "Send code to …" button sends only its `address`.
        let mut method = self.method();
        if method.is_empty() && !self.text("address").is_empty() {
            method = "code".into();
        }
        // The WebAuthn script submits the form with the answer alone; a provider's button
        // sends its `provider`.
        for (field, name) in [
            ("passkey_login", "passkey"),
            ("webauthn_login", "webauthn"),
            ("provider", "oidc"),
        ] {
            if method.is_empty() && !self.text(field).is_empty() {
                method = name.into();
            }
        }
        let method = match method.as_str() {
            "oidc" => LoginMethod::Oidc(self.oidc()),
            "password" => LoginMethod::Password {
                // `password_identifier` is the older name of the field.
                identifier: self
                    .body
                    .get("identifier")
                    .or_else(|| self.body.get("password_identifier"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                password: self.text("password"),
            },
            "totp" => LoginMethod::Totp {
                code: self.text("totp_code"),
            },
            "lookup_secret" => LoginMethod::LookupSecret {
                code: self.text("lookup_secret"),
            },
            "code" => LoginMethod::Code {
                identifier: Some(self.text("identifier")).filter(|a| !a.is_empty()),
                address: Some(self.text("address")).filter(|a| !a.is_empty()),
                code: Some(self.text("code")).filter(|c| !c.is_empty()),
            },
            "webauthn" => LoginMethod::WebAuthn {
                identifier: self.text("identifier"),
                response: self.text("webauthn_login"),
            },
            "passkey" => LoginMethod::Passkey {
                response: self.text("passkey_login"),
            },
            _ => LoginMethod::Unknown,
        };
        LoginSubmit {
            method,
            csrf_token: self.csrf_token(),
        }
    }

    pub fn registration(&self) -> RegistrationSubmit {
        let mut method = self.method();
        if method.is_empty() && !self.text("passkey_register").is_empty() {
            method = "passkey".into();
        }
        if method.is_empty() && !self.text("provider").is_empty() {
            method = "oidc".into();
        }
        // A passwordless security key's form always has its name field, filled or not.
        if method.is_empty()
            && ["webauthn_register", "webauthn_register_displayname"]
                .iter()
                .any(|f| self.body.get(*f).is_some())
        {
            method = "webauthn".into();
        }
        let method = match method.as_str() {
            "oidc" => RegistrationMethod::Oidc(self.oidc()),
            "password" => RegistrationMethod::Password {
                password: self.text("password"),
            },
            "passkey" => RegistrationMethod::Passkey {
                response: self.text("passkey_register"),
            },
            "webauthn" => RegistrationMethod::WebAuthn {
                response: self.text("webauthn_register"),
                display_name: self.text("webauthn_register_displayname"),
            },
            "code" => RegistrationMethod::Code {
                code: Some(self.text("code")).filter(|c| !c.is_empty()),
                resend: self.text("resend") == "code",
            },
            _ => RegistrationMethod::Unknown,
        };
        RegistrationSubmit {
            method,
            traits: self.traits(),
            form: self.form,
            csrf_token: self.csrf_token(),
        }
    }

    /// A recovery or verification submit (`method=code` with `email` or `code`).
    pub fn address(&self) -> portcullis_core::selfservice::AddressSubmit {
        use portcullis_core::selfservice::{AddressSubmit, AddressSubmitMethod};
        let some = |k: &str| Some(self.text(k)).filter(|v| !v.is_empty());
        let method = match self.method().as_str() {
            "code" => AddressSubmitMethod::Code {
                email: some("email"),
                code: some("code"),
            },
            _ => AddressSubmitMethod::Unknown,
        };
        AddressSubmit {
            method,
            csrf_token: self.csrf_token(),
        }
    }

    pub fn settings(&self) -> SettingsSubmit {
        // A button of a second factor (an HTML form sends only the pressed button) names
        // its method by itself.
        let mut method = self.method();
        if method.is_empty() && self.flag("totp_unlink") {
            method = "totp".into();
        }
        if method.is_empty() && self.lookup_action().is_some() {
            method = "lookup_secret".into();
        }
        // The WebAuthn script submits the form without a `method`. A passkey answer or
        // removal decides first; then a security-key removal; then the security-key form,
        // which always has its name field, filled or not.
        let filled = |f: &str| !self.text(f).is_empty();
        if method.is_empty() {
            if filled("passkey_settings_register") || filled("passkey_remove") {
                method = "passkey".into();
            } else if filled("link") || filled("unlink") {
                method = "oidc".into();
            } else if filled("webauthn_remove")
                || ["webauthn_register", "webauthn_register_displayname"]
                    .iter()
                    .any(|f| self.body.get(*f).is_some())
            {
                method = "webauthn".into();
            }
        }
        let some = |k: &str| Some(self.text(k)).filter(|v| !v.is_empty());
        let method = match method.as_str() {
            "profile" => SettingsMethod::Profile {
                traits: self.traits(),
                form: self.form,
            },
            "password" => SettingsMethod::Password {
                password: self.text("password"),
            },
            "totp" => SettingsMethod::Totp {
                code: self.text("totp_code"),
                unlink: self.flag("totp_unlink"),
            },
            "lookup_secret" => SettingsMethod::LookupSecret {
                action: self.lookup_action(),
            },
            "webauthn" => SettingsMethod::WebAuthn {
                register: self.text("webauthn_register"),
                display_name: self.text("webauthn_register_displayname"),
                remove: some("webauthn_remove"),
            },
            "passkey" => SettingsMethod::Passkey {
                register: self.text("passkey_settings_register"),
                remove: some("passkey_remove"),
            },
            "oidc" => SettingsMethod::Oidc {
                link: some("link"),
                unlink: some("unlink"),
            },
            _ => SettingsMethod::Unknown,
        };
        SettingsSubmit {
            method,
            csrf_token: self.csrf_token(),
        }
    }
}
