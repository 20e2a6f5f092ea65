//! A new subject's account: the provider's Jsonnet mapper makes it, registration completion
//! asks for what the identity schema still wants, and an address another identity has leads
//! to account linking (`link.rs`), never to a link by itself.

use super::*;

impl Core {
    /// A registration flow's answer: the mapper makes the identity; what the schema still
    /// wants is asked for on the flow (registration completion). A subject that already has
    /// an identity signs in instead.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn social_registration(
        &self,
        flow: Flow,
        p: &Provider,
        claims: Claims,
        tokens: Tokens,
        form_traits: Value,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Landed> {
        let identifier = Self::identifier(p, &claims);
        let found = self
            .store
            .find_identity_by_identifier("oidc", &identifier)
            .await?;
        if let Some(identity) = found {
            let mut login = self
                .new_login_flow(
                    flow.flow_type,
                    flow.request_url.clone(),
                    false,
                    crate::methods::Aal::Aal1,
                    None,
                    caller,
                    now,
                )
                .await?;
            login.return_to = flow.return_to.clone();
            carry_exchange(&flow, &mut login);
            return self.sign_in_linked(login, p, identity, caller, now).await;
        }
        self.register_new(flow, p, claims, tokens, form_traits, caller, now)
            .await
    }

    /// A subject no identity has: the mapper's traits, merged with the form's, make one.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn register_new(
        &self,
        mut flow: Flow,
        p: &Provider,
        claims: Claims,
        tokens: Tokens,
        form_traits: Value,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Landed> {
        let mapped = match self.map_claims(p, &claims).await {
            Ok(m) => m,
            Err(why) => return Err(self.provider_failed(&mut flow, p, &why, now).await),
        };
        let schema = self.default_schema()?;
        // The addresses that may lead to a linking prompt: the provider's (the mapper's), not
        // ones typed into the form; with enumeration mitigation only those it vouches for, so
        // nobody learns who has an account by typing addresses.
        let from_provider = schema.derive(&mapped.traits);
        let mitigate = self.config.security.account_enumeration.mitigate;
        let linkable: Vec<String> = from_provider
            .verifiable
            .iter()
            .chain(&from_provider.recovery)
            .map(|(value, _)| value.clone())
            .filter(|v| {
                !mitigate
                    || mapped
                        .verified
                        .iter()
                        .any(|(w, _)| w.eq_ignore_ascii_case(v))
            })
            .collect();
        let mut traits = mapped.traits;
        merge(&mut traits, &form_traits);
        let violations = schema.validate(&traits);
        if !violations.is_empty() {
            self.ask_for_missing_traits(&mut flow, p, &traits, violations);
            flow.updated_at = now;
            self.store.update_flow(&flow).await?;
            return Ok(Landed::Flow(Box::new(flow)));
        }
        let derived = schema.derive(&traits);
        let mut identity = Identity::new(&schema.id, traits, now);
        identity.apply_derived(&derived, now);
        identity.metadata_public = mapped.metadata_public;
        identity.metadata_admin = mapped.metadata_admin;
        for a in &mut identity.verifiable_addresses {
            let vouched = mapped
                .verified
                .iter()
                .any(|(value, via)| *via == a.via && value.eq_ignore_ascii_case(&a.value));
            if vouched {
                a.verified = true;
                a.status = "completed".into();
                a.verified_at = Some(now);
            }
        }
        let credential = self.oidc_credential(p, &claims, &tokens, now)?;
        if let Some((_, duplicate)) = self.duplicate_owner(&linkable).await? {
            return self
                .ask_to_link(&flow, p, &credential, duplicate, caller, now)
                .await;
        }
        identity.credentials.insert("oidc".into(), credential);
        self.finish_registration(flow, identity, Method::Oidc, Some(p.id()), caller, now)
            .await
            .map(|a| Landed::Authenticated(Box::new(a), FlowKind::Registration))
    }

    /// Registration completion (Kratos's shape): the flow's form becomes the schema's traits,
    /// prefilled from the provider, with the messages of what is missing, and one "Continue"
    /// button that goes through the provider again.
    fn ask_for_missing_traits(
        &self,
        flow: &mut Flow,
        p: &Provider,
        traits: &Value,
        violations: Vec<(Option<String>, UiText)>,
    ) {
        let Ok(schema) = self.default_schema() else {
            return;
        };
        flow.ui.nodes.retain(|n| n.name() == "csrf_token");
        // Group `default`, as Kratos since `feature_flags.legacy_oidc_registration_node_group`
        // (which Portcullis accepts only off).
        for f in &schema.fields {
            flow.ui.nodes.push(f.node("default", f.get(traits)));
        }
        flow.ui.nodes.push(
            UiNode::input(
                "oidc",
                "provider",
                "submit",
                Some(UiText::info(1040003, "Continue")),
            )
            .with_attr("value", json!(p.id())),
        );
        for (node, text) in violations {
            flow.ui.add_message(node.as_deref(), text);
        }
        flow.active = Some(Method::Oidc.as_str().into());
        flow.state = "choose_method".into();
    }

    /// The `oidc` credential: the identifier `"<provider>:<subject>"` and, as Kratos keeps
    /// them, the first tokens, sealed (bound to the identifier).
    pub(super) fn oidc_credential(
        &self,
        p: &Provider,
        claims: &Claims,
        tokens: &Tokens,
        now: OffsetDateTime,
    ) -> Result<Credential> {
        let identifier = Self::identifier(p, claims);
        let secret = self.cipher_secrets().into_iter().next().unwrap_or_default();
        let seal = |t: &str| -> Result<String> {
            if t.is_empty() {
                return Ok(String::new());
            }
            sealed::seal(&secret, Purpose::UpstreamToken, t.as_bytes(), &identifier)
                .map_err(|e| Error::Internal(e.to_string()))
        };
        Ok(Credential {
            id: Uuid::new_v4(),
            kind: "oidc".into(),
            identifiers: vec![identifier.clone()],
            config: json!({ "providers": [{
                "subject": claims.sub,
                "provider": p.id(),
                "initial_id_token": seal(&tokens.id_token)?,
                "initial_access_token": seal(&tokens.access_token)?,
                "initial_refresh_token": seal(&tokens.refresh_token)?,
            }]}),
            version: 0,
            created_at: now,
            updated_at: now,
        })
    }

    /// Runs the provider's mapper on the claims.
    async fn map_claims(
        &self,
        p: &Provider,
        claims: &Claims,
    ) -> std::result::Result<Mapped, String> {
        let out = self
            .jsonnet
            .evaluate(
                p.mapper.clone(),
                &p.config.mapper_url,
                crate::jsonnet::Vars::ext("claims", claims.to_value()),
            )
            .await
            .map_err(|e| format!("its Jsonnet mapper failed ({e})"))?;
        Mapped::read(&out)
    }
}

/// What a mapper returned, checked as Kratos checks it.
struct Mapped {
    traits: Value,
    metadata_public: Option<Value>,
    metadata_admin: Option<Value>,
    /// `(value, via)` the provider vouches for.
    verified: Vec<(String, String)>,
}

impl Mapped {
    fn read(out: &Value) -> std::result::Result<Mapped, String> {
        let identity = out.get("identity").cloned().unwrap_or(Value::Null);
        let traits = match identity.get("traits") {
            Some(Value::Object(t)) => Value::Object(t.clone()),
            _ => {
                return Err(
                    "its Jsonnet mapper did not return an object for key identity.traits".into(),
                )
            }
        };
        let object = |key: &str| -> std::result::Result<Option<Value>, String> {
            match identity.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(m)) => Ok(Some(Value::Object(m.clone()))),
                Some(_) => Err(format!(
                    "its Jsonnet mapper did not return an object for key identity.{key}"
                )),
            }
        };
        let verified = identity
            .get("verified_addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let value = a.get("value")?.as_str()?.trim().to_lowercase();
                let via = a.get("via")?.as_str()?.to_string();
                Some((value, via))
            })
            .collect();
        Ok(Mapped {
            traits,
            metadata_public: object("metadata_public")?,
            metadata_admin: object("metadata_admin")?,
            verified,
        })
    }
}

/// Deep-merges `over` into `base`: objects field by field, anything else replaced (the form's
/// traits win over the mapper's, as in Kratos).
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) if !o.is_null() => *b = o.clone(),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_traits_win_over_mapped_ones_field_by_field() {
        let mut base = json!({"email": "a@example.com", "name": {"first": "A", "last": "L"}});
        merge(
            &mut base,
            &json!({"name": {"first": "Ada"}, "nickname": "ada"}),
        );
        assert_eq!(
            base,
            json!({"email": "a@example.com", "name": {"first": "Ada", "last": "L"}, "nickname": "ada"})
        );
    }

    #[test]
    fn a_mapper_result_is_checked_as_kratos_checks_it() {
        let bad = Mapped::read(&json!({"identity": {"traits": "this is not an object"}}));
        assert_eq!(
            bad.err().as_deref(),
            Some("its Jsonnet mapper did not return an object for key identity.traits")
        );
        let bad = Mapped::read(&json!({"identity": {"traits": {}, "metadata_public": [1]}}));
        assert!(bad.is_err());
        let ok = Mapped::read(&json!({"identity": {
            "traits": {"email": "a@example.com"},
            "verified_addresses": [{"value": " A@Example.com ", "via": "email"}],
        }}));
        let ok = ok.ok();
        assert_eq!(
            ok.map(|m| m.verified),
            Some(vec![("a@example.com".to_string(), "email".to_string())])
        );
    }
}
