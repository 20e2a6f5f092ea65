//! The second step of a sign-in (`aal=aal2`): the inputs of the second factors the signed-in
//! identity has, and their submits. A TOTP or backup code, or a security key's answer, is
//! checked at once; an emailed code
//! (`selfservice.methods.code.mfa_enabled`) is first sent to an address the identity owns,
//! then checked like a recovery code. Completing the step raises the caller's session to
//! aal2: the same session, id and token.

use super::address::CodeCheck;
use super::form::already_completed;
use super::login::LoginMethod;
use crate::audit::{Actor, AuditKind, AuditRecord};
use crate::courier::TemplateKind;
use crate::error::{Error, SubmitError, SubmitResult};
use crate::flow::Flow;
use crate::identity::Identity;
use crate::methods::code::normalise_address;
use crate::methods::factor::Checked;
use crate::methods::{lookup, totp, Method};
use crate::service::{Authenticated, Caller, Core};
use crate::store::Effects;
use crate::ui::UiNode;
use serde_json::json;
use time::OffsetDateTime;

mod msg {
    use crate::ui::UiText;
    use serde_json::json;

    pub fn send_code_to(address: &str) -> UiText {
        let mut t = UiText::info(1010023, format!("Send code to {address}"));
        t.context = Some(json!({ "address": address, "channel": "email" }));
        t
    }
    pub fn code_sent() -> UiText {
        UiText::info(
            1010025,
            "A code was sent to your address. If you didn't receive it, please try again.",
        )
    }
    pub fn code_invalid() -> UiText {
        UiText::error(
            4010008,
            "The login code is invalid or has already been used. Please try again.",
            None,
        )
    }
    /// Kratos's "too many attempts" text for a code flow that must be started over.
    pub fn start_over() -> UiText {
        UiText::error(
            4000001,
            "The request was submitted too often. Please request another code.",
            Some(
                json!({ "reason": "The request was submitted too often. Please request another code." }),
            ),
        )
    }
    pub fn no_strategy() -> UiText {
        UiText::error(
            4010002,
            "Could not find a strategy to log you in with. Did you fill out the form correctly?",
            None,
        )
    }
}

/// The e-mail addresses an emailed second-factor code may go to: the verified ones only, so
/// an address put in with the password alone is no second factor.
pub(crate) fn code_addresses(identity: &Identity) -> Vec<&str> {
    identity
        .verifiable_addresses
        .iter()
        .filter(|a| a.via == "email" && a.verified)
        .map(|a| a.value.as_str())
        .collect()
}

impl Core {
    /// The second-step nodes for `identity`: one form per second factor it has (a security
    /// key's ceremony is kept in `flow`).
    pub(super) fn second_factor_nodes(
        &self,
        flow: &mut Flow,
        identity: &Identity,
    ) -> crate::error::Result<Vec<UiNode>> {
        let mut nodes = vec![];
        if self.config.selfservice.methods.code.mfa_enabled {
            for address in code_addresses(identity) {
                nodes.push(
                    UiNode::input(
                        "code",
                        "address",
                        "submit",
                        Some(msg::send_code_to(address)),
                    )
                    .with_attr("value", json!(address)),
                );
            }
        }
        let has =
            |m: Method| self.factor_enabled(m) && identity.credentials.contains_key(m.as_str());
        if has(Method::Totp) {
            nodes.extend(totp::login_nodes());
        }
        if has(Method::LookupSecret) {
            nodes.extend(lookup::login_nodes());
        }
        nodes.extend(self.security_key_login_nodes(flow, identity)?);
        Ok(nodes)
    }

    /// A submit of the second step, from the signed-in identity the flow was started for.
    pub(super) async fn submit_second_factor(
        &self,
        mut flow: Flow,
        method: LoginMethod,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Authenticated> {
        let Some((session, identity)) = &caller.session else {
            return Err(Error::Aal1Required.into());
        };
        if flow.identity_id != Some(identity.id) {
            return Err(Error::IdentityMismatch.into());
        }
        flow.ui.reset_messages();
        if flow.state == "passed_challenge" {
            flow.ui.messages.push(already_completed(4010007));
            return Err(self.reject(&mut flow, None, now).await);
        }
        let origin = caller.origin();
        let (checked, used) = match method {
            LoginMethod::Totp { code } if self.factor_enabled(Method::Totp) => (
                self.check_totp(identity, &code, &origin, now).await?,
                Method::Totp,
            ),
            LoginMethod::LookupSecret { code } if self.factor_enabled(Method::LookupSecret) => (
                self.check_lookup(identity, &code, &origin, now).await?,
                Method::LookupSecret,
            ),
            LoginMethod::WebAuthn { response, .. } if self.security_keys_enabled() => (
                self.check_security_key(&flow, identity, &response, &origin, now)
                    .await?,
                Method::WebAuthn,
            ),
            LoginMethod::Code { address, code, .. }
                if self.config.selfservice.methods.code.mfa_enabled =>
            {
                match code.filter(|c| !c.trim().is_empty()) {
                    Some(code) => (
                        self.check_mailed_code(&flow, identity, &code, &origin, now)
                            .await?,
                        Method::CodeSecondFactor,
                    ),
                    None => {
                        return Err(self
                            .send_second_factor_code(flow, identity, address, caller, now)
                            .await)
                    }
                }
            }
            _ => {
                flow.ui.messages.push(msg::no_strategy());
                return Err(self.reject(&mut flow, None, now).await);
            }
        };
        flow.active = Some(used.group().into());
        let identity = match checked {
            Checked::Accepted(i) => *i,
            Checked::Refused(text) => {
                // Kratos shows a wrong code for the whole form and empties the input.
                flow.ui.messages.push(text);
                for n in &mut flow.ui.nodes {
                    if matches!(n.name(), "totp_code" | "lookup_secret" | "code") {
                        n.set_value(json!(""));
                    }
                }
                return Err(self.reject(&mut flow, None, now).await);
            }
        };
        let flow = self.complete_login_flow(flow, now).await?;
        let mut s = session.clone();
        s.add_method(used, now);
        let record = AuditRecord::new(
            AuditKind::LoginSucceeded,
            Actor::Identity(identity.id),
            &origin,
            now,
        )
        .about(identity.id)
        .details(json!({ "method": used.as_str(), "aal": s.aal }));
        if !self
            .store
            .update_session(&s, now, &Effects::none().audited(record))
            .await?
        {
            return Err(Error::SessionInactive.into());
        }
        Ok(Authenticated {
            identity,
            session: Some(s),
            token: None,
            flow_type: flow.flow_type,
            return_to: flow.return_to,
            continue_with: vec![],
            next_page: None,
            second_factor: None,
        })
    }

    /// Sends a second-factor code to `address`, which must be one of the identity's; the
    /// flow comes back asking for it (Kratos answers 400 with the flow, state `sent_email`).
    async fn send_second_factor_code(
        &self,
        mut flow: Flow,
        identity: &Identity,
        address: Option<String>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitError {
        let wanted = address
            .as_deref()
            .map(normalise_address)
            .unwrap_or_default();
        let Some(address) = code_addresses(identity)
            .into_iter()
            .find(|a| normalise_address(a) == wanted)
            .map(str::to_string)
        else {
            flow.ui.messages.push(msg::no_strategy());
            return self.reject(&mut flow, None, now).await;
        };
        // No "unknown address" mail: the address is the identity's own.
        let templates = (TemplateKind::LoginCodeValid, TemplateKind::LoginCodeValid);
        let message = match self
            .issue_code(
                &mut flow,
                &address,
                Some(identity),
                templates,
                false,
                caller,
                now,
            )
            .await
        {
            Ok(m) => m,
            Err(e) => return e.into(),
        };
        let kept =
            UiNode::input("code", "address", "hidden", None).with_attr("value", json!(address));
        let label = crate::ui::UiText::info(1070013, "Login code");
        self.ask_for_code(
            &mut flow,
            vec![kept],
            label,
            ("address", &address),
            msg::code_sent(),
            message,
        )
        .await
    }

    /// Checks an emailed second-factor code against the one the flow sent to `identity`.
    async fn check_mailed_code(
        &self,
        flow: &Flow,
        identity: &Identity,
        code: &str,
        origin: &crate::audit::Origin,
        now: OffsetDateTime,
    ) -> crate::error::Result<Checked> {
        self.admit_second_factor(identity.id, now).await?;
        match self.check_code(flow, code, now).await? {
            CodeCheck::Valid(id) if id == identity.id => {
                Ok(Checked::Accepted(Box::new(identity.clone())))
            }
            // A malformed code, or a flow whose attempts are spent, costs no guess.
            _ if !crate::methods::code::well_formed(code.trim()) => {
                Ok(Checked::Refused(msg::code_invalid()))
            }
            CodeCheck::Exhausted => Ok(Checked::Refused(msg::start_over())),
            _ => {
                let m = Method::CodeSecondFactor;
                self.second_factor_failed(identity.id, m, "wrong_code", origin, now)
                    .await?;
                Ok(Checked::Refused(msg::code_invalid()))
            }
        }
    }
}
