//! What recovery and verification share: both send a code to an address and take it back on
//! the flow that sent it. The submit they parse, their two forms (ask for the address; ask
//! for the code), sending a code with the same answer and timing for every address, and
//! checking a submitted code against the flow's attempt budget.

use super::form::already_completed;
use crate::courier::TemplateKind;
use crate::error::{Result, SubmitResult};
use crate::flow::Flow;
use crate::identity::Identity;
use crate::methods::code::{self, nodes, SEND_FLOOR};
use crate::service::{Caller, Core};
use crate::store::Effects;
use crate::ui::{msg, UiNode, UiText};
use time::OffsetDateTime;
use uuid::Uuid;

/// A recovery or verification submit, as the face parsed it.
#[derive(Debug, Clone)]
pub struct AddressSubmit {
    pub method: AddressSubmitMethod,
    pub csrf_token: Option<String>,
}

#[derive(Debug, Clone)]
pub enum AddressSubmitMethod {
    /// `method=code`: `email` asks for a (new) code, `code` answers one. Elements blanks
    /// `email` when it sends `code`; a code wins when both come.
    Code {
        email: Option<String>,
        code: Option<String>,
    },
    /// A method this server does not offer for the flow (or none).
    Unknown,
}

/// What a submit asks for, once the shared checks passed.
pub(super) enum AddressStep {
    /// A code for the flow's sent code.
    Code(String),
    /// A (new) code for this address, normalised.
    Address(String),
}

/// What a submitted code turned out to be.
pub(super) enum CodeCheck {
    /// The code the flow sent, for this identity.
    Valid(Uuid),
    /// Wrong, expired, malformed or never sent.
    Wrong,
    /// The flow has used up its attempts; it must be started over.
    Exhausted,
}

/// The texts that differ between the two flows.
pub(super) struct AddressTexts {
    /// `code/code`'s label.
    pub code_label: UiText,
    /// "A code has been sent" in `ui.messages`.
    pub sent: UiText,
    /// "The code is invalid or has already been used."
    pub wrong: UiText,
    /// "The flow reached a failure state and must be retried."
    pub exhausted: UiText,
    pub templates: (TemplateKind, TemplateKind),
    /// "Already completed" (4060001 / 4070002).
    pub completed: u32,
    /// "Could not find a strategy …" (4010005 / 4010006).
    pub no_strategy: UiText,
}

impl Core {
    /// The checks a recovery or verification submit shares once its flow is loaded: a
    /// completed flow, another method, and a missing address or code are answered on the flow;
    /// otherwise the step it asks for (a code wins over an address once one was sent).
    pub(super) async fn address_step(
        &self,
        mut flow: Flow,
        method: AddressSubmitMethod,
        t: &AddressTexts,
        now: OffsetDateTime,
    ) -> SubmitResult<(Flow, AddressStep)> {
        flow.ui.reset_messages();
        if flow.state == "passed_challenge" {
            flow.ui.messages.push(already_completed(t.completed));
            return Err(self.reject(&mut flow, None, now).await);
        }
        let AddressSubmitMethod::Code { email, code } = method else {
            flow.ui.messages.push(t.no_strategy.clone());
            return Err(self.reject(&mut flow, None, now).await);
        };
        let code = code.filter(|c| !c.trim().is_empty());
        let email = email.filter(|e| !e.trim().is_empty());
        match (code, email) {
            (Some(code), _) if flow.code.is_some() => Ok((flow, AddressStep::Code(code))),
            (_, Some(email)) => Ok((flow, AddressStep::Address(code::normalise_address(&email)))),
            (Some(_), None) | (None, None) => {
                let field = if flow.code.is_some() { "code" } else { "email" };
                if flow.code.is_some() {
                    self.render_sent(&mut flow, t);
                }
                flow.ui.add_message(Some(field), msg::required(field));
                Err(self.reject(&mut flow, None, now).await)
            }
        }
    }

    /// The first form: the address to send a code to.
    pub(super) fn render_choose_method(&self, flow: &mut Flow) {
        keep_csrf(flow);
        flow.ui.nodes.push(nodes::email_input());
        flow.ui.nodes.push(nodes::submit());
    }

    /// The second form: the code, with a button that sends a new one to the same address.
    pub(super) fn render_sent(&self, flow: &mut Flow, texts: &AddressTexts) {
        keep_csrf(flow);
        let address = flow
            .code
            .as_ref()
            .map(|c| c.address.clone())
            .unwrap_or_default();
        flow.ui
            .nodes
            .push(nodes::code_input(texts.code_label.clone()));
        flow.ui.nodes.push(nodes::method_hidden());
        flow.ui.nodes.push(nodes::submit());
        flow.ui.nodes.push(nodes::resend(&address));
    }

    /// Sends a code for `address` (to `identity` when it owns it) and saves the flow in the
    /// `sent_email` state with the message, in one transaction. The answer is the same, and
    /// takes at least [`SEND_FLOOR`], whether or not the address has an account.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send_code(
        &self,
        flow: &mut Flow,
        address: &str,
        identity: Option<&Identity>,
        notify_unknown: bool,
        texts: &AddressTexts,
        fx: Effects,
        caller: &Caller,
        now: OffsetDateTime,
        started: tokio::time::Instant,
    ) -> Result<()> {
        let message = self
            .issue_code(
                flow,
                address,
                identity,
                texts.templates,
                notify_unknown,
                caller,
                now,
            )
            .await?;
        self.render_sent(flow, texts);
        flow.ui.messages = vec![texts.sent.clone()];
        let fx = match message {
            Some(m) => fx.message(m),
            None => fx,
        };
        self.store.update_flow_with(flow, &fx).await?;
        tokio::time::sleep_until(started + SEND_FLOOR).await;
        Ok(())
    }

    /// Checks `submitted` against the flow's code. A malformed code is wrong without counting;
    /// every well-formed one counts against `max_submissions`, atomically in the store.
    pub(super) async fn check_code(
        &self,
        flow: &Flow,
        submitted: &str,
        now: OffsetDateTime,
    ) -> Result<CodeCheck> {
        let Some(sent) = &flow.code else {
            return Ok(CodeCheck::Wrong);
        };
        let submitted = submitted.trim();
        if !code::well_formed(submitted) {
            return Ok(CodeCheck::Wrong);
        }
        let max = self.config.selfservice.methods.code.config.max_submissions;
        let attempts = self.store.add_code_attempt(flow.id).await?;
        if attempts > max {
            return Ok(CodeCheck::Exhausted);
        }
        // The identity's budget spans its flows: opening new flows brings no new guesses.
        let wrong_key = sent.identity_id.map(code::wrong_codes_key);
        if let Some(k) = &wrong_key {
            if self.hourly_count(k, now).await? >= code::MAX_WRONG_CODES_PER_HOUR {
                return Ok(CodeCheck::Exhausted);
            }
        }
        if sent.expires_at <= now || !self.code_matches(sent, flow.id, submitted) {
            if let Some(k) = wrong_key {
                self.store
                    .record_login_failure(std::slice::from_ref(&k), now)
                    .await?;
            }
            return Ok(CodeCheck::Wrong);
        }
        Ok(match sent.identity_id {
            Some(id) => CodeCheck::Valid(id),
            None => CodeCheck::Wrong,
        })
    }
}

/// Clears a flow's form down to its anti-CSRF token.
fn keep_csrf(flow: &mut Flow) {
    let keep: Vec<UiNode> = flow
        .ui
        .nodes
        .iter()
        .filter(|n| n.name() == "csrf_token")
        .cloned()
        .collect();
    flow.ui.nodes = keep;
}
