//! Social sign-in from a native app (Kratos's `return_session_token_exchange_code`): the app
//! starts an API flow asking for an exchange code, sends the user's system browser to the
//! provider, and the callback, which that browser makes without any cookie of the app, ends at
//! the app's `return_to` with a one-time `code`. Only the app can trade it for the session
//! token (`GET /sessions/token-exchange`), as only the app holds the other half, the flow's
//! `session_token_exchange_code`. The token waits sealed in the flow that issued the code.

use super::Landed;
use crate::csrf::new_secret;
use crate::error::{Error, Result};
use crate::flow::{Flow, FlowType};
use crate::identity::Identity;
use crate::sealed::{self, Purpose};
use crate::service::with_query;
use crate::service::{Authenticated, Core};
use crate::session::hash_token;
use crate::session::Session;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// How long a finished sign-in waits for the app to fetch its token.
const HANDOVER_FOR: Duration = Duration::minutes(10);

/// What an API flow keeps for its exchange code; never in API responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// The flow whose id the exchange code carries (a login flow's exchange moves on to the
    /// registration flow made from it).
    pub origin: Uuid,
    /// SHA-256 of the `session_token_exchange_code`.
    pub init_hash: String,
    /// Once signed in: SHA-256 of the `code` sent to `return_to`, the session token sealed,
    /// and until when it may be fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed: Option<Handover>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handover {
    pub code_hash: String,
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

const NOT_YET: &str = "no session yet for this \"code\"";

impl Core {
    /// Gives a new API flow an exchange code: the returned `session_token_exchange_code`
    /// (the flow's id, then 32 random bytes) is shown once, with the flow.
    pub async fn add_token_exchange(&self, flow: &mut Flow, now: OffsetDateTime) -> Result<String> {
        if flow.flow_type != FlowType::Api {
            return Err(Error::bad_request(
                "return_session_token_exchange_code is only for API flows.",
            ));
        }
        let code = format!("{}{}", flow.id.simple(), new_secret());
        flow.pending.get_or_insert_with(Default::default).exchange = Some(Exchange {
            origin: flow.id,
            init_hash: hash_token(&code),
            handed: None,
        });
        flow.updated_at = now;
        self.store.update_flow(flow).await?;
        Ok(code)
    }

    /// A native sign-in finished: the session token waits in the flow that issued the code,
    /// and the app's browser goes to `return_to` with the `code` that fetches it.
    pub(super) async fn hand_over(
        &self,
        flow: &Flow,
        a: &Authenticated,
        now: OffsetDateTime,
    ) -> Result<Landed> {
        let exchange = flow
            .pending
            .as_ref()
            .and_then(|p| p.exchange.clone())
            .ok_or_else(|| Error::bad_request("This flow has no exchange code."))?;
        let token = a.token.as_deref().ok_or_else(|| {
            Error::bad_request("The registration signed nobody in (no session hook).")
        })?;
        let mut origin = self
            .store
            .get_flow(exchange.origin)
            .await?
            .ok_or_else(|| Error::not_found(NOT_YET))?;
        let code = new_secret();
        let secret = self.cipher_secrets().into_iter().next().unwrap_or_default();
        let sealed = sealed::seal(
            &secret,
            Purpose::ExchangeToken,
            token.as_bytes(),
            &origin.id.to_string(),
        )
        .map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(x) = origin.pending.as_mut().and_then(|p| p.exchange.as_mut()) {
            x.handed = Some(Handover {
                code_hash: hash_token(&code),
                token: sealed,
                until: now + HANDOVER_FOR,
            });
        }
        origin.updated_at = now;
        self.store.update_flow(&origin).await?;
        let back = a
            .return_to
            .clone()
            .unwrap_or_else(|| self.config.selfservice.default_browser_return_url.clone());
        Ok(Landed::Native(with_query(&back, "code", &code)))
    }

    /// `GET /sessions/token-exchange`: the session token for both halves, once.
    pub async fn exchange_session_token(
        &self,
        init_code: &str,
        return_to_code: &str,
        now: OffsetDateTime,
    ) -> Result<(String, Session, Identity)> {
        if init_code.is_empty() || return_to_code.is_empty() {
            return Err(Error::bad_request(
                "\"init_code\" and \"return_to_code\" query params must be set",
            ));
        }
        let not_yet = || Error::not_found(NOT_YET);
        let flow_id = init_code
            .get(..32)
            .and_then(|id| Uuid::try_parse(id).ok())
            .ok_or_else(not_yet)?;
        let mut flow = self.store.get_flow(flow_id).await?.ok_or_else(not_yet)?;
        let exchange = flow
            .pending
            .as_ref()
            .and_then(|p| p.exchange.clone())
            .ok_or_else(not_yet)?;
        let handed = exchange.handed.clone().ok_or_else(not_yet)?;
        let both = crate::csrf::same_secret(&exchange.init_hash, &hash_token(init_code))
            & crate::csrf::same_secret(&handed.code_hash, &hash_token(return_to_code));
        if !both || handed.until <= now {
            return Err(not_yet());
        }
        // Once: the token leaves the flow before it is answered.
        if let Some(x) = flow.pending.as_mut().and_then(|p| p.exchange.as_mut()) {
            x.handed = None;
        }
        flow.updated_at = now;
        self.store.update_flow(&flow).await?;
        let token = sealed::open(
            &self.cipher_secrets(),
            Purpose::ExchangeToken,
            &handed.token,
            &flow.id.to_string(),
        )
        .map_err(|e| Error::Internal(e.to_string()))?;
        let token = String::from_utf8(token).map_err(|e| Error::Internal(e.to_string()))?;
        let (session, identity) = self.authenticate(&token, now).await?;
        Ok((token, session, identity))
    }
}
