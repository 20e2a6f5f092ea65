//! Sign-ups from Clerk's Frontend API (`<SignUp/>`): an address, a password and the names,
//! then the code mailed to the address. Each is a registration flow (an API flow, held by the
//! browser's sealed Clerk client rather than by a flow token) on the code method's path: the
//! account is made only when the code comes back, its address verified and its password set,
//! with the registration's web hooks, events and enumeration rules (a taken address is refused
//! as the Kratos face refuses it, or under mitigation answered like a free one and mailed
//! nothing, so no code ever matches).

use crate::error::{Error, Result, SubmitError};
use crate::flow::{Flow, FlowKind, FlowType};
use crate::identity::Identity;
use crate::methods::Method;
use crate::service::{Authenticated, Caller, Core};
use crate::ui::{msg, UiText};
use crate::webhooks::set_trait;
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// What `<SignUp/>` sends first.
#[derive(Debug, Clone, Default)]
pub struct ClerkSignUp {
    pub email: String,
    pub password: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// A refusal, at the Clerk field it concerns (`email_address`, `password`, `first_name`,
/// `last_name`, `code`), or the whole sign-up (`None`).
#[derive(Debug, Clone)]
pub struct FieldProblem {
    pub param: Option<String>,
    pub text: UiText,
}

/// Where a Clerk sign-up stands after a step.
pub enum SignUpStep {
    /// A code is on its way to the address (or seems to be); it is good until `expires_at`.
    CodeSent {
        flow_id: Uuid,
        expires_at: OffsetDateTime,
    },
    /// Refused; nothing was made.
    Refused(Vec<FieldProblem>),
    /// The sign-up's flow expired: it must start again.
    Expired,
    /// The account exists, and (with the `session` hook, or none configured) its first session.
    Complete(Box<Authenticated>),
}

impl Core {
    /// `POST /v1/client/sign_ups`: checks the fields and mails the code.
    pub async fn clerk_sign_up(
        &self,
        fields: ClerkSignUp,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<SignUpStep> {
        let request_url = format!("{}/v1/client/sign_ups", self.public_url());
        let flow = self
            .new_registration_flow(FlowType::Api, request_url, caller, now)
            .await?;
        let map = &self.config.webhooks.clerk_mapping;
        let mut traits = json!({});
        set_trait(&mut traits, &map.email, &json!(fields.email.trim()));
        for (path, value) in [
            (&map.first_name, &fields.first_name),
            (&map.last_name, &fields.last_name),
        ] {
            if let Some(v) = value {
                set_trait(&mut traits, path, &json!(v.trim()));
            }
        }
        let schema = self.default_schema()?;
        let mut problems = self.trait_problems(&traits)?;
        let identifiers = schema.derive(&traits).password_identifiers;
        let password = match fields.password.as_str() {
            "" => Some(msg::required("password")),
            p => self.password_problem(p, &identifiers),
        };
        if let Some(text) = password {
            problems.push(FieldProblem {
                param: Some("password".into()),
                text,
            });
        }
        if !problems.is_empty() {
            return Ok(SignUpStep::Refused(problems));
        }
        let hash = self.hasher.hash(fields.password).await?;
        self.clerk_sign_up_step(flow, traits, None, Some(hash), caller, now)
            .await
    }

    /// `prepare_verification`: mails a new code for the sign-up `flow_id`.
    pub async fn clerk_sign_up_resend(
        &self,
        flow_id: Uuid,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<SignUpStep> {
        match self.clerk_sign_up_flow(flow_id, now).await? {
            Some((flow, traits)) => {
                self.clerk_sign_up_step(flow, traits, None, None, caller, now)
                    .await
            }
            None => Ok(SignUpStep::Expired),
        }
    }

    /// `attempt_verification`: the code; right, the account is made.
    pub async fn clerk_sign_up_verify(
        &self,
        flow_id: Uuid,
        code: &str,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<SignUpStep> {
        if code.trim().is_empty() {
            return Ok(SignUpStep::Refused(vec![FieldProblem {
                param: Some("code".into()),
                text: msg::required("code"),
            }]));
        }
        match self.clerk_sign_up_flow(flow_id, now).await? {
            Some((flow, traits)) => {
                let code = Some(code.to_string());
                self.clerk_sign_up_step(flow, traits, code, None, caller, now)
                    .await
            }
            None => Ok(SignUpStep::Expired),
        }
    }

    /// The sign-up's flow and the traits its code was sent for; `None` once it expired.
    async fn clerk_sign_up_flow(
        &self,
        flow_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<Option<(Flow, Value)>> {
        let flow = self.stored_flow(FlowKind::Registration, flow_id).await?;
        if flow.is_expired(now) {
            return Ok(None);
        }
        let traits = flow
            .pending
            .as_ref()
            .and_then(|p| p.sign_up.as_ref())
            .map(|s| s.traits.clone())
            .ok_or_else(|| Error::not_found("The sign-up has not sent a code."))?;
        Ok(Some((flow, traits)))
    }

    /// The code method's step of the registration `flow`, then (with the right code) the
    /// account.
    async fn clerk_sign_up_step(
        &self,
        mut flow: Flow,
        traits: Value,
        code: Option<String>,
        password_hash: Option<String>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<SignUpStep> {
        let schema = self.default_schema()?;
        let derived = schema.derive(&traits);
        let mut identity = Identity::new(&schema.id, traits, now);
        identity.apply_derived(&derived, now);
        flow.ui.reset_messages();
        if flow.state == "passed_challenge" {
            return Ok(SignUpStep::Refused(vec![FieldProblem {
                param: None,
                text: super::form::already_completed(4040002),
            }]));
        }
        let step = self
            .register_with_code(
                &mut flow,
                &mut identity,
                code,
                false,
                password_hash,
                caller,
                now,
            )
            .await;
        let refused = match step {
            Ok(()) => {
                self.finish_registration(flow, identity, Method::Code, None, caller, now)
                    .await
            }
            Err(e) => Err(e),
        };
        match refused {
            Ok(done) => Ok(SignUpStep::Complete(Box::new(done))),
            Err(SubmitError::FlowInvalid { flow, .. }) => Ok(self.step_of(&flow)),
            Err(SubmitError::Refused(e)) => Err(e),
        }
    }

    /// A flow the code method sent back: asking for the code, or refusing.
    fn step_of(&self, flow: &Flow) -> SignUpStep {
        let mut problems: Vec<FieldProblem> = flow
            .ui
            .messages
            .iter()
            .filter(|t| t.kind == "error")
            .map(|t| FieldProblem {
                // The flow's "an account with this identifier exists" is about the address,
                // and "the code is invalid" about the code, in Clerk's form.
                param: match t.id {
                    4000007 => Some("email_address".into()),
                    4040003 => Some("code".into()),
                    _ => None,
                },
                text: t.clone(),
            })
            .collect();
        for node in &flow.ui.nodes {
            for t in node.messages.iter().filter(|t| t.kind == "error") {
                problems.push(FieldProblem {
                    param: Some(self.clerk_param(node.name())),
                    text: t.clone(),
                });
            }
        }
        match (&flow.code, problems.is_empty()) {
            (Some(sent), true) => SignUpStep::CodeSent {
                flow_id: flow.id,
                expires_at: sent.expires_at,
            },
            _ => SignUpStep::Refused(problems),
        }
    }

    /// What the schema says of `traits`, at Clerk's fields.
    pub(super) fn trait_problems(&self, traits: &Value) -> Result<Vec<FieldProblem>> {
        Ok(self
            .default_schema()?
            .validate(traits)
            .into_iter()
            .map(|(node, text)| FieldProblem {
                param: node.map(|n| self.clerk_param(&n)),
                text,
            })
            .collect())
    }

    /// The Clerk field a flow node stands for: a mapped trait's (`traits.email` is
    /// `email_address`), else the node's own name.
    fn clerk_param(&self, node: &str) -> String {
        let map = &self.config.webhooks.clerk_mapping;
        let Some(path) = node.strip_prefix("traits.") else {
            return node.to_string();
        };
        [
            (&map.email, "email_address"),
            (&map.first_name, "first_name"),
            (&map.last_name, "last_name"),
            (&map.username, "username"),
        ]
        .into_iter()
        .find(|(p, _)| p.as_str() == path)
        .map_or_else(|| path.to_string(), |(_, name)| name.to_string())
    }
}
