//! What a signed-in user changes of their own account from Clerk's `<UserProfile/>`: the
//! names, the password (the current one first, as Clerk asks), the e-mail address (a code to
//! the new one; once it comes back the new address replaces the old, verified, since the
//! schema holds one), the profile image, and, where `clerk.frontend.delete_self` allows, the
//! account itself.
//! Every change is the session's identity's own, needs the session the whoami check accepts
//! (a second factor where it is enforced), and is saved as any other change of the identity
//! (the `user.updated` event, the audit record).

use super::address::CodeCheck;
use super::clerk_sign_up::FieldProblem;
use crate::audit::{Actor, By, Origin};
use crate::courier::TemplateKind;
use crate::error::{Error, Result};
use crate::flow::{Flow, FlowKind, FlowType};
use crate::identity::Identity;
use crate::methods::code::normalise_address;
use crate::service::{Caller, Core};
use crate::session::Session;
use crate::store::Effects;
use crate::ui::{msg, UiText};
use crate::webhooks::set_trait;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

/// What a change ends in.
pub enum AccountChange {
    Saved(Box<Identity>),
    Refused(Vec<FieldProblem>),
}

/// An address on its way to replacing the account's (its code flow).
#[derive(Debug, Clone)]
pub struct NewAddress {
    pub flow_id: Uuid,
    pub address: String,
    /// When the code sent last stops working; `None` before one was sent.
    pub expires_at: Option<OffsetDateTime>,
    pub verified: bool,
}

fn at(param: &str, text: UiText) -> AccountChange {
    AccountChange::Refused(vec![FieldProblem {
        param: Some(param.into()),
        text,
    }])
}

fn wrong_password() -> UiText {
    UiText::error(
        4000006,
        "The provided credentials are invalid, check for spelling mistakes in your password or username, email address, or phone number.",
        None,
    )
}

impl Core {
    /// The actor of a change `session` makes to its own identity, once the session is strong
    /// enough for it.
    fn own_change(&self, session: &Session, identity: &Identity, origin: &Origin) -> Result<By> {
        self.require_whoami_aal(session, identity)?;
        Ok(By {
            actor: Actor::Identity(identity.id),
            origin: origin.clone(),
        })
    }

    /// Saves `identity` (changed from `before`) after the schema accepted its traits.
    async fn save_own(
        &self,
        before: &Identity,
        mut identity: Identity,
        by: &By,
        now: OffsetDateTime,
    ) -> Result<AccountChange> {
        let schema = self.schema(&identity.schema_id)?;
        let problems = self.trait_problems(&identity.traits)?;
        if !problems.is_empty() {
            return Ok(AccountChange::Refused(problems));
        }
        identity.apply_derived(&schema.derive(&identity.traits), now);
        identity.updated_at = now;
        // A new address someone else holds is the user's to hear about; any other conflict (a
        // concurrent change) is answered as one.
        match self.save_identity(before, &mut identity, by, now).await {
            Ok(()) => Ok(AccountChange::Saved(Box::new(identity))),
            Err(Error::Conflict { .. }) if self.address_held(&identity).await? => {
                Ok(at("email_address", msg::duplicate_credentials()))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether another identity holds one of `identity`'s e-mail addresses.
    async fn address_held(&self, identity: &Identity) -> Result<bool> {
        for a in identity
            .verifiable_addresses
            .iter()
            .filter(|a| a.via == "email")
        {
            let holder = self
                .store
                .find_identity_by_address("verifiable", &normalise_address(&a.value))
                .await?;
            if holder.is_some_and(|h| h.id != identity.id) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `PATCH /v1/me`: the names (`None` leaves one as it is; empty removes it).
    pub async fn clerk_set_names(
        &self,
        session: &Session,
        identity: &Identity,
        first_name: Option<&str>,
        last_name: Option<&str>,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<AccountChange> {
        let by = self.own_change(session, identity, origin)?;
        let map = &self.config.webhooks.clerk_mapping;
        let mut changed = identity.clone();
        for (path, value) in [(&map.first_name, first_name), (&map.last_name, last_name)] {
            if let Some(v) = value {
                set_trait(&mut changed.traits, path, &json!(v.trim()));
            }
        }
        self.save_own(identity, changed, &by, now).await
    }

    /// `POST /v1/me/profile_image` (`Some`) and `DELETE` (`None`): the user's own picture.
    pub async fn clerk_set_own_image(
        &self,
        session: &Session,
        identity: &Identity,
        upload: Option<(crate::profile_image::ImageSlot, Vec<u8>)>,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<crate::profile_image::ImageChange> {
        let by = self.own_change(session, identity, origin)?;
        self.set_profile_image(identity, upload, &by, now).await
    }

    /// `POST /v1/me/change_password`: the current password (when the account has one), then
    /// the new one under the password policy, saved with the "password changed" mail the
    /// settings flow sends; every other session ends when asked or when the policy says so.
    #[allow(clippy::too_many_arguments)]
    pub async fn clerk_change_password(
        &self,
        session: &Session,
        identity: &Identity,
        current: &str,
        new: &str,
        sign_out_others: bool,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<AccountChange> {
        let origin = &caller.origin();
        let by = self.own_change(session, identity, origin)?;
        if identity.password_hash().is_some() {
            if current.is_empty() {
                return Ok(at("current_password", msg::required("current_password")));
            }
            let right = self
                .check_identity_password(identity, current, origin, now)
                .await?;
            if right != Some(true) {
                return Ok(at("current_password", wrong_password()));
            }
        }
        let identifiers = self
            .schema(&identity.schema_id)?
            .derive(&identity.traits)
            .password_identifiers;
        let problem = match new {
            "" => Some(msg::required("new_password")),
            p => self.password_problem(p, &identifiers),
        };
        if let Some(text) = problem {
            return Ok(at("new_password", text));
        }
        let mut changed = identity.clone();
        let hash = self.hasher.hash(new.to_string()).await?;
        changed.set_password_hash(hash, identifiers, now);
        changed.updated_at = now;
        let notices = self.password_changed_notices(&changed, caller, now)?;
        self.save_identity_with(identity, &mut changed, &by, None, notices, now)
            .await?;
        self.password_changed(identity.id).await?;
        if sign_out_others || self.password_change_ends_other_sessions() {
            self.revoke_other_sessions(identity.id, session.id, origin, "password_changed")
                .await?;
        }
        Ok(AccountChange::Saved(Box::new(changed)))
    }

    /// `POST /v1/me/email_addresses`: an address to replace the account's, awaiting its code.
    pub async fn clerk_new_address(
        &self,
        session: &Session,
        identity: &Identity,
        address: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<NewAddress, AccountChange>> {
        self.own_change(session, identity, origin)?;
        let address = normalise_address(address);
        let map = &self.config.webhooks.clerk_mapping;
        let mut traits = identity.traits.clone();
        set_trait(&mut traits, &map.email, &json!(address));
        let problems = self.trait_problems(&traits)?;
        if !problems.is_empty() {
            return Ok(Err(AccountChange::Refused(problems)));
        }
        let taken = self.address_taken(&address).await?;
        if taken && !self.config.security.account_enumeration.mitigate {
            return Ok(Err(at("email_address", msg::duplicate_credentials())));
        }
        let lifespan = self.config.selfservice.flows.verification.lifespan.0;
        let mut flow = Flow::new(
            FlowKind::Verification,
            FlowType::Api,
            format!("{}/v1/me/email_addresses", self.public_url()),
            self.public_url(),
            lifespan,
            now,
        );
        flow.identity_id = Some(identity.id);
        flow.pending = Some(crate::methods::factor::Pending {
            new_address: Some(address.clone()),
            ..Default::default()
        });
        self.store.insert_flow(&flow).await?;
        Ok(Ok(NewAddress {
            flow_id: flow.id,
            address,
            expires_at: None,
            verified: false,
        }))
    }

    /// The new address `flow_id` of `identity`, if it is one.
    async fn new_address_flow(&self, identity: &Identity, flow_id: Uuid) -> Result<(Flow, String)> {
        let flow = self.stored_flow(FlowKind::Verification, flow_id).await?;
        let address = flow.pending.as_ref().and_then(|p| p.new_address.clone());
        match address {
            Some(a) if flow.identity_id == Some(identity.id) => Ok((flow, a)),
            _ => Err(Error::not_found("Unable to locate the resource")),
        }
    }

    /// `prepare_verification`: mails a code to the new address (a taken one, under
    /// mitigation, gets none, and no code matches).
    pub async fn clerk_send_address_code(
        &self,
        session: &Session,
        identity: &Identity,
        flow_id: Uuid,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<NewAddress> {
        let started = tokio::time::Instant::now();
        self.own_change(session, identity, &caller.origin())?;
        let (mut flow, address) = self.new_address_flow(identity, flow_id).await?;
        if flow.is_expired(now) || flow.state == "passed_challenge" {
            return Err(Error::bad_request(
                "This address's verification has expired; add it again.",
            ));
        }
        // A taken address, or one past its hourly cap, gets no code that could match. Both are
        // asked whatever the first says, and the answer takes at least SEND_FLOOR, so a taken
        // address is not told by the time it takes.
        let taken = self.address_taken(&address).await?;
        let capped = self.address_codes_capped(&address, now).await?;
        let refused = taken || capped;
        let owner = (!refused).then_some(identity);
        let templates = (
            TemplateKind::VerificationCodeValid,
            TemplateKind::VerificationCodeValid,
        );
        let message = self
            .issue_code(&mut flow, &address, owner, templates, false, caller, now)
            .await?;
        let fx = message.map_or_else(Effects::none, |m| Effects::none().message(m));
        self.store.update_flow_with(&flow, &fx).await?;
        tokio::time::sleep_until(started + crate::methods::code::SEND_FLOOR).await;
        Ok(NewAddress {
            flow_id,
            address,
            expires_at: flow.code.as_ref().map(|c| c.expires_at),
            verified: false,
        })
    }

    /// `attempt_verification`: the right code makes the new address the account's, verified.
    pub async fn clerk_verify_address(
        &self,
        session: &Session,
        identity: &Identity,
        flow_id: Uuid,
        code: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<NewAddress, AccountChange>> {
        let by = self.own_change(session, identity, origin)?;
        let (mut flow, address) = self.new_address_flow(identity, flow_id).await?;
        if flow.state == "passed_challenge" {
            return Ok(Ok(NewAddress {
                flow_id,
                address,
                expires_at: None,
                verified: true,
            }));
        }
        match self.check_code(&flow, code, now).await? {
            CodeCheck::Valid(id) if id == identity.id => {}
            _ => {
                let wrong = UiText::error(
                    4070006,
                    "The verification code is invalid or has already been used. Please try again.",
                    None,
                );
                return Ok(Err(at("code", wrong)));
            }
        }
        let map = &self.config.webhooks.clerk_mapping;
        let mut changed = identity.clone();
        set_trait(&mut changed.traits, &map.email, &json!(address));
        let derived = self.schema(&changed.schema_id)?.derive(&changed.traits);
        changed.apply_derived(&derived, now);
        changed.verify_address(&address, now);
        let saved = self.save_own(identity, changed, &by, now).await?;
        if let AccountChange::Refused(_) = saved {
            return Ok(Err(saved));
        }
        flow.state = "passed_challenge".into();
        flow.updated_at = now;
        self.store.complete_flow(&flow).await?;
        Ok(Ok(NewAddress {
            flow_id,
            address,
            expires_at: None,
            verified: true,
        }))
    }

    /// `DELETE /v1/me`, where `clerk.frontend.delete_self` allows it.
    pub async fn clerk_delete_self(
        &self,
        session: &Session,
        identity: &Identity,
        origin: &Origin,
    ) -> Result<()> {
        if !self.config.clerk.frontend.delete_self {
            return Err(Error::bad_request(
                "Deleting one's own account is not enabled (clerk.frontend.delete_self).",
            ));
        }
        let by = self.own_change(session, identity, origin)?;
        self.admin_delete_identity(identity.id, &by).await
    }

    /// The identity's active sessions, newest first (`GET /v1/me/sessions/active`).
    pub async fn clerk_own_sessions(
        &self,
        identity: &Identity,
        now: OffsetDateTime,
    ) -> Result<Vec<Session>> {
        let q = crate::store::SessionQuery {
            identity_id: Some(identity.id),
            active: Some(true),
            page_size: 50,
            after: None,
            except: None,
        };
        Ok(self
            .list_sessions(&q, now)
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .collect())
    }
}
