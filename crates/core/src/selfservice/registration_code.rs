//! Signing up by a code mailed to the new account's address (`code.passwordless_enabled`, as
//! in Kratos): `{method: code, traits}` checks the traits and mails a code to their first
//! e-mail address (400 with the flow, `state: sent_email`, 1040005, the traits kept as
//! hidden fields); `{method: code, traits, code}` lets the account be created, without a
//! password and with that address verified. Traits changed between the steps: 4000036; a
//! wrong code 4040003; `resend` mails a new code.
//!
//! A taken address is refused (4000007) before any mail, or with enumeration mitigation
//! answered like a free one and mailed nothing, so the code never matches. An address gets
//! at most ten sign-up codes an hour, however many flows ask.

use super::address::CodeCheck;
use crate::courier::TemplateKind;
use crate::error::{SubmitError, SubmitResult};
use crate::flow::Flow;
use crate::identity::{Credential, Identity};
use crate::methods::code::normalise_address;
use crate::methods::factor::{Pending, SignUp};
use crate::methods::Method;
use crate::service::{Caller, Core};
use crate::ui::{msg, UiNode, UiText};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

fn code_sent() -> UiText {
    UiText::info(
        1040005,
        "An email containing a code has been sent to the email address you provided. If you have not received an email, check the spelling of the address and retry the registration.",
    )
}

fn code_invalid() -> UiText {
    UiText::error(
        4040003,
        "The registration code is invalid or has already been used. Please try again.",
        None,
    )
}

fn traits_changed() -> UiText {
    UiText::error(
        4000036,
        "The provided traits do not match the traits previously associated with this flow.",
        None,
    )
}

fn no_address() -> UiText {
    msg::generic("The traits hold no e-mail address to send a sign-up code to.")
}

impl Core {
    /// The code method of a registration whose traits are valid: `Ok` when `identity` (built
    /// from them) may be created, its address verified by the code; otherwise the flow comes
    /// back asking for the code, or saying why not.
    ///
    /// `password_hash` (a Clerk sign-up's, hashed) is kept with the code sent, and becomes the
    /// account's password with it; a resend without one keeps the one before.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn register_with_code(
        &self,
        flow: &mut Flow,
        identity: &mut Identity,
        code: Option<String>,
        resend: bool,
        password_hash: Option<String>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<()> {
        let address = identity
            .verifiable_addresses
            .iter()
            .find(|a| a.via == "email")
            .map(|a| normalise_address(&a.value));
        let Some(address) = address else {
            flow.ui.messages.push(no_address());
            return Err(self.reject(flow, None, now).await);
        };
        let sent = flow.pending.as_ref().and_then(|p| p.sign_up.clone());
        let (code, sent) = match (code.filter(|c| !c.trim().is_empty()), sent) {
            (Some(code), Some(sent)) if !resend => (code, sent),
            (_, sent) => {
                let hash = password_hash.or(sent.and_then(|s| s.password_hash));
                return Err(self
                    .send_sign_up_code(flow, identity, &address, hash, caller, now)
                    .await);
            }
        };
        if sent.traits != identity.traits {
            flow.ui.messages.push(traits_changed());
            return Err(self.reject(flow, None, now).await);
        }
        match self.check_code(flow, &code, now).await? {
            CodeCheck::Valid(id) if id == sent.identity_id => {}
            _ => {
                flow.ui.messages.push(code_invalid());
                for n in &mut flow.ui.nodes {
                    if n.name() == "code" && !n.is_submit() {
                        n.set_value(json!(""));
                    }
                }
                return Err(self.reject(flow, None, now).await);
            }
        }
        identity.id = sent.identity_id;
        identity.verify_address(&address, now);
        if let Some(hash) = sent.password_hash {
            let identifiers = self
                .schema(&identity.schema_id)?
                .derive(&identity.traits)
                .password_identifiers;
            identity.set_password_hash(hash, identifiers, now);
        }
        // Kratos's `code` credential: the address signs in by code later.
        identity.credentials.insert(
            Method::Code.as_str().into(),
            Credential {
                id: Uuid::new_v4(),
                kind: Method::Code.as_str().into(),
                identifiers: vec![address.clone()],
                config: json!({ "addresses": [{ "channel": "email", "address": address }] }),
                version: 0,
                created_at: now,
                updated_at: now,
            },
        );
        Ok(())
    }

    /// Mails a sign-up code for `identity` to `address` (a taken address gets none) and asks
    /// for it.
    async fn send_sign_up_code(
        &self,
        flow: &mut Flow,
        identity: &Identity,
        address: &str,
        password_hash: Option<String>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitError {
        let taken = match self.address_taken(address).await {
            Ok(t) => t,
            Err(e) => return e.into(),
        };
        if taken && !self.config.security.account_enumeration.mitigate {
            flow.ui.messages.push(msg::duplicate_credentials());
            return self.reject(flow, None, now).await;
        }
        // The code belongs to the account about to be made (the id it will have).
        let mut future = identity.clone();
        future.id = Uuid::new_v4();
        // Past the address's hourly cap the flow looks the same and no code exists.
        let capped = match self.address_codes_capped(address, now).await {
            Ok(c) => c,
            Err(e) => return e.into(),
        };
        let recipient = (!taken && !capped).then_some(&future);
        let templates = (
            TemplateKind::RegistrationCodeValid,
            TemplateKind::RegistrationCodeValid,
        );
        let message = match self
            .issue_code(flow, address, recipient, templates, false, caller, now)
            .await
        {
            Ok(m) => m,
            Err(e) => return e.into(),
        };
        flow.pending.get_or_insert_with(Pending::default).sign_up = Some(SignUp {
            identity_id: future.id,
            traits: identity.traits.clone(),
            password_hash,
        });
        // The traits go along as hidden fields (Kratos's second step), checked against these;
        // the submit filled their values in.
        let kept: Vec<UiNode> = flow
            .ui
            .nodes
            .iter()
            .filter(|n| n.name().starts_with("traits."))
            .cloned()
            .map(|mut n| {
                if let Some(a) = n.attributes.as_object_mut() {
                    a.insert("type".into(), json!("hidden"));
                    a.remove("required");
                }
                n.messages.clear();
                n.meta = json!({});
                n
            })
            .collect();
        let label = UiText::info(1070012, "Registration code");
        self.ask_for_code(flow, kept, label, ("resend", "code"), code_sent(), message)
            .await
    }

    /// Whether an account already has `address` (as an address or a password identifier).
    pub(super) async fn address_taken(&self, address: &str) -> crate::error::Result<bool> {
        if self
            .store
            .find_identity_by_address("verifiable", address)
            .await?
            .is_some()
        {
            return Ok(true);
        }
        Ok(self.find_by_password_identifier(address).await?.is_some())
    }
}
