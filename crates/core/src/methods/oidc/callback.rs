//! The provider's answer: the callback's checks, in Kratos's order (the state, its flow, the
//! browser, the provider's error, the code), the code exchanged and the claims read, then the
//! flow it lands on: a sign-in for a known subject, a registration for a new one
//! (`register.rs`), a link in settings (`settings.rs`).

use super::*;

impl Core {
    /// `GET /self-service/methods/oidc/callback/{provider}`: the provider's answer.
    ///
    /// Every check that fails before a flow is known (no state, a state not ours, spent or for
    /// another provider) is an error page; after, the flow shows the reason. Nothing here
    /// issues a session unless the ID token passed every check.
    pub async fn oidc_callback(
        &self,
        provider_id: &str,
        cb: Callback,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Landed> {
        let state = cb
            .state
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::bad_request(NO_STATE))?;
        let flow_id = self
            .open_state(&state)
            .ok_or_else(|| Error::bad_request(BAD_STATE))?;
        let mut flow = self
            .store
            .get_flow(flow_id)
            .await?
            .ok_or_else(|| Error::bad_request(BAD_STATE))?;
        // Spent (or never started): the state is good for one answer.
        let started = flow
            .pending
            .as_ref()
            .and_then(|p| p.oidc.clone())
            .filter(|s| crate::csrf::same_secret(&s.state_hash, &hash_token(&state)))
            .ok_or_else(|| Error::bad_request(BAD_STATE))?;
        if started.provider != provider_id {
            return Err(Error::bad_request(
                "Unable to complete OpenID Connect flow because of a provider mismatch between internal state and URL.",
            )
            .into());
        }
        // The browser that started the flow must be the one coming back (login CSRF).
        self.check_flow_cookie(&flow, caller)?;
        if let Some(p) = flow.pending.as_mut() {
            p.oidc = None;
        }
        flow.ui.reset_messages();
        if flow.is_expired(now) {
            self.store.update_flow(&flow).await?;
            return Err(self.expired(&flow, caller, now).await.into());
        }
        self.store.update_flow(&flow).await?;
        let p = self.provider(provider_id)?;
        if let Some(err) = cb.error.filter(|e| !e.is_empty()) {
            let why = format!(
                "the provider returned error \"{}\": {}",
                crate::ui::echo(&err),
                crate::ui::echo(cb.error_description.as_deref().unwrap_or(""))
            );
            return Err(self.provider_failed(&mut flow, p, &why, now).await);
        }
        let Some(code) = cb.code.filter(|c| !c.is_empty()) else {
            let why = "the provider did not return the code query parameter";
            return Err(self.provider_failed(&mut flow, p, why, now).await);
        };
        if caller.session.is_some() && !flow.refresh && flow.kind != FlowKind::Settings {
            return Err(Error::AlreadySignedIn.into());
        }
        let native = (flow.flow_type == FlowType::Api).then(|| flow.clone());
        let answer = self.provider_answer(p, &code, &started, &state, now).await;
        let (claims, tokens) = match answer {
            Ok((mut claims, tokens)) => {
                if p.config.provider == crate::config::OidcProviderKind::Apple {
                    apple::add_user_field(&mut claims, cb.user.as_deref());
                }
                (claims, tokens)
            }
            Err(ProviderError(why)) => {
                return Err(self.provider_failed(&mut flow, p, &why, now).await)
            }
        };
        let landed = match flow.kind {
            FlowKind::Login => {
                self.social_login(flow, p, claims, tokens, caller, now)
                    .await?
            }
            FlowKind::Registration => {
                self.social_registration(flow, p, claims, tokens, started.traits, caller, now)
                    .await?
            }
            FlowKind::Settings => {
                let credential = self.oidc_credential(p, &claims, &tokens, now)?;
                self.link_in_settings(flow, p, credential, caller, now)
                    .await?
            }
            _ => return Err(Error::bad_request(BAD_STATE).into()),
        };
        match (landed, native) {
            (Landed::Authenticated(a, _), Some(flow)) => Ok(self.hand_over(&flow, &a, now).await?),
            (landed, _) => Ok(landed),
        }
    }

    /// The code traded for tokens, and the claims they carry.
    pub(super) async fn provider_answer(
        &self,
        p: &Provider,
        code: &str,
        started: &Started,
        state: &str,
        now: OffsetDateTime,
    ) -> std::result::Result<(Claims, Tokens), ProviderError> {
        let up = &*self.upstream;
        let d = p.endpoints(&self.oidc.cache, up, now).await?;
        let redirect_uri = self.redirect_uri(p.id());
        let tokens = p
            .exchange(
                up,
                &d,
                code,
                &redirect_uri,
                started.verifier.as_deref(),
                state,
                now,
            )
            .await?;
        let claims = p
            .claims(&self.oidc.cache, up, &d, &tokens, Some(&started.nonce), now)
            .await?;
        Ok((claims, tokens))
    }

    pub(super) fn identifier(p: &Provider, claims: &Claims) -> String {
        format!("{}:{}", p.id(), claims.sub)
    }

    /// A login flow's answer: the identity linked to this subject signs in; an unknown
    /// subject registers, in the same request.
    pub(super) async fn social_login(
        &self,
        flow: Flow,
        p: &Provider,
        claims: Claims,
        tokens: Tokens,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Landed> {
        let identifier = Self::identifier(p, &claims);
        let found = self
            .store
            .find_identity_by_identifier("oidc", &identifier)
            .await?;
        match found {
            Some(identity) => self.sign_in_linked(flow, p, identity, caller, now).await,
            None if flow.refresh => Err(Error::IdentityMismatch.into()),
            None => {
                let mut reg = self
                    .new_registration_flow(flow.flow_type, flow.request_url.clone(), caller, now)
                    .await?;
                reg.return_to = flow.return_to.clone();
                carry_exchange(&flow, &mut reg);
                self.register_new(reg, p, claims, tokens, json!({}), caller, now)
                    .await
            }
        }
    }

    /// The identity the subject is linked to signs in with `flow` (a login flow).
    pub(super) async fn sign_in_linked(
        &self,
        mut flow: Flow,
        p: &Provider,
        identity: Identity,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Landed> {
        if flow.refresh && flow.identity_id != Some(identity.id) {
            return Err(Error::IdentityMismatch.into());
        }
        if !identity.is_active() {
            flow.ui.messages.push(msg::identity_disabled());
            return Err(self.reject(&mut flow, None, now).await);
        }
        self.complete_login(flow, identity, Method::Oidc, Some(p.id()), caller, now)
            .await
            .map(|a| Landed::Authenticated(Box::new(a), FlowKind::Login))
    }
}
