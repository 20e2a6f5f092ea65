//! Signing in by a code mailed to the identifier (`selfservice.methods.code.passwordless_enabled`):
//! `{method: code, identifier}` sends the code and answers with the flow asking for it
//! (400, `state: sent_email`, 1010014); `{method: code, identifier, code}` signs in (AMR
//! `code`, aal1) and marks the address verified, since its owner read the code there.
//!
//! Unlike Kratos (4000035 "This account does not exist"), an unknown or inactive identifier
//! gets the same answer as a known one and no mail: the form must not tell who has an account.

use super::address::CodeCheck;
use crate::courier::TemplateKind;
use crate::error::{Result, SubmitError, SubmitResult};
use crate::flow::Flow;
use crate::identity::Identity;
use crate::methods::code::{nodes as code_nodes, normalise_address};
use crate::service::{Caller, Core};
use crate::store::Effects;
use crate::ui::{msg, UiNode, UiText};
use crate::webhooks::EventKind;
use serde_json::json;
use time::OffsetDateTime;

fn code_sent() -> UiText {
    UiText::info(
        1010014,
        "A code was sent to the address you provided. If you didn't receive it, please check the spelling of the address and try again.",
    )
}

fn code_invalid() -> UiText {
    UiText::error(
        4010008,
        "The login code is invalid or has already been used. Please try again.",
        None,
    )
}

impl Core {
    /// The code method of the first step: sends a code, or checks the one sent. `Ok` is the
    /// identity to sign in; the flow comes back (as a [`SubmitError::FlowInvalid`]) asking
    /// for the code, or saying it was wrong.
    pub(super) async fn login_with_code(
        &self,
        flow: &mut Flow,
        identifier: Option<String>,
        code: Option<String>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Identity> {
        flow.active = Some("code".into());
        let identifier = identifier
            .map(|i| normalise_address(&i))
            .unwrap_or_default();
        if identifier.is_empty() {
            flow.ui
                .add_message(Some("identifier"), msg::required("identifier"));
            return Err(self.reject(flow, None, now).await);
        }
        let sent_here = flow.code.as_ref().is_some_and(|c| c.address == identifier);
        match code.filter(|c| !c.trim().is_empty()) {
            Some(code) if sent_here => self.check_login_code(flow, &code, now).await,
            Some(_) | None => Err(self.send_login_code(flow, &identifier, caller, now).await),
        }
    }

    async fn send_login_code(
        &self,
        flow: &mut Flow,
        identifier: &str,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitError {
        let found = match self.find_by_code_identifier(identifier).await {
            Ok(found) => found.filter(Identity::is_active),
            Err(e) => return e.into(),
        };
        let templates = (TemplateKind::LoginCodeValid, TemplateKind::LoginCodeValid);
        let message = match self
            .issue_code(
                flow,
                identifier,
                found.as_ref(),
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
        let mut id_node = UiNode::input("default", "identifier", "hidden", None);
        id_node.set_value(json!(identifier));
        let resend = ("identifier", identifier);
        let label = UiText::info(1070013, "Login code");
        self.ask_for_code(flow, vec![id_node], label, resend, code_sent(), message)
            .await
    }

    /// A flow that sent a code now asks for it: `kept` (the hidden fields naming where it
    /// went, or what it was sent for), the code input (`label`), Continue, and a resend button
    /// sending `resend`; `sent` says so. Stored with the code's mail in one transaction;
    /// answered as a flow to show again.
    pub(super) async fn ask_for_code(
        &self,
        flow: &mut Flow,
        kept: Vec<UiNode>,
        label: UiText,
        resend: (&str, &str),
        sent: UiText,
        message: Option<crate::courier::Message>,
    ) -> SubmitError {
        flow.ui.nodes.retain(|n| n.name() == "csrf_token");
        flow.ui.nodes.extend(kept);
        flow.ui.nodes.extend([
            code_nodes::method_hidden(),
            code_nodes::code_input(label),
            code_nodes::submit(),
            UiNode::input(
                "code",
                resend.0,
                "submit",
                Some(UiText::info(1070008, "Resend code")),
            )
            .with_attr("value", json!(resend.1)),
        ]);
        flow.ui.messages = vec![sent];
        let fx = message.map_or_else(Effects::none, |m| Effects::none().message(m));
        if let Err(e) = self.store.update_flow_with(flow, &fx).await {
            return e.into();
        }
        super::invalid(flow.clone(), None)
    }

    async fn check_login_code(
        &self,
        flow: &mut Flow,
        code: &str,
        now: OffsetDateTime,
    ) -> SubmitResult<Identity> {
        let found = match self.check_code(flow, code, now).await? {
            CodeCheck::Valid(id) => self.store.get_identity(id).await?,
            CodeCheck::Wrong | CodeCheck::Exhausted => None,
        };
        let Some(identity) = found.filter(Identity::is_active) else {
            flow.ui.messages.push(code_invalid());
            for n in &mut flow.ui.nodes {
                if n.name() == "code" && !n.is_submit() {
                    n.set_value(json!(""));
                }
            }
            return Err(self.reject(flow, None, now).await);
        };
        let address = flow
            .code
            .as_ref()
            .map(|c| c.address.clone())
            .unwrap_or_default();
        Ok(self.verified_by_code(identity, &address, now).await?)
    }

    /// The identity a sign-in code goes to: the one whose `code` credential has the address
    /// (it signed up by code; looked up first, so another account's username equal to the
    /// address cannot catch its codes), else the one with the password identifier.
    async fn find_by_code_identifier(&self, identifier: &str) -> Result<Option<Identity>> {
        let by_code = self
            .store
            .find_identity_by_identifier(crate::methods::Method::Code.as_str(), identifier)
            .await?;
        match by_code {
            Some(found) => Ok(Some(found)),
            None => self.find_by_password_identifier(identifier).await,
        }
    }

    /// The address a sign-in code was read at is verified.
    async fn verified_by_code(
        &self,
        mut identity: Identity,
        address: &str,
        now: OffsetDateTime,
    ) -> Result<Identity> {
        if !identity.verify_address(address, now) {
            return Ok(identity);
        }
        self.store
            .update_identity(&mut identity, &Effects::event(EventKind::UserUpdated))
            .await?;
        Ok(identity)
    }
}
