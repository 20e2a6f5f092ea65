//! Self-service flows (login, registration, settings) as persisted objects.

use crate::identity::rfc3339;
use crate::ui::UiContainer;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowKind {
    Login,
    Registration,
    Settings,
    Recovery,
    Verification,
}

impl FlowKind {
    /// Every kind, for code that covers them all.
    pub const ALL: [FlowKind; 5] = [
        FlowKind::Login,
        FlowKind::Registration,
        FlowKind::Settings,
        FlowKind::Recovery,
        FlowKind::Verification,
    ];

    /// `login`, `registration` or `settings` (the path segment of the flow's endpoints).
    pub fn parse(s: &str) -> Option<FlowKind> {
        match s {
            "login" => Some(FlowKind::Login),
            "registration" => Some(FlowKind::Registration),
            "settings" => Some(FlowKind::Settings),
            "recovery" => Some(FlowKind::Recovery),
            "verification" => Some(FlowKind::Verification),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FlowKind::Login => "login",
            FlowKind::Registration => "registration",
            FlowKind::Settings => "settings",
            FlowKind::Recovery => "recovery",
            FlowKind::Verification => "verification",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowType {
    Api,
    Browser,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub id: Uuid,
    pub kind: FlowKind,
    #[serde(rename = "type")]
    pub flow_type: FlowType,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    pub request_url: String,
    pub return_to: Option<String>,
    pub active: Option<String>,
    pub state: String,
    pub ui: UiContainer,
    pub refresh: bool,
    pub requested_aal: String,
    /// Settings flows (and refresh logins) belong to one identity.
    pub identity_id: Option<Uuid>,
    /// The CSRF token of a browser flow; never serialised into API responses.
    pub csrf_token: Option<String>,
    /// The one-time code a recovery or verification flow sent (hashed); never in API responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::methods::code::SentCode>,
    /// A second-factor secret the settings form shows but has not saved (sealed); never in
    /// API responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<crate::methods::factor::Pending>,
    /// What the client should do next (Kratos's `continue_with`), once the flow completed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continue_with: Vec<Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Flow {
    pub fn new(
        kind: FlowKind,
        flow_type: FlowType,
        request_url: String,
        public_url: &str,
        lifespan: std::time::Duration,
        now: OffsetDateTime,
    ) -> Self {
        let id = Uuid::new_v4();
        let action = format!("{public_url}self-service/{}?flow={id}", kind.as_str());
        Flow {
            id,
            kind,
            flow_type,
            expires_at: now + lifespan,
            issued_at: now,
            request_url,
            return_to: None,
            active: None,
            state: match kind {
                FlowKind::Settings => "show_form".into(),
                _ => "choose_method".into(),
            },
            ui: UiContainer::new(action),
            refresh: false,
            requested_aal: "aal1".into(),
            identity_id: None,
            csrf_token: None,
            code: None,
            pending: None,
            continue_with: vec![],
            updated_at: now,
        }
    }

    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at <= now
    }

    /// The flow as Kratos serialises it; settings flows embed the (public) identity.
    pub fn to_api_json(&self, identity: Option<Value>) -> Value {
        let mut v = json!({
            "id": self.id,
            "type": self.flow_type,
            "expires_at": rfc3339(self.expires_at),
            "issued_at": rfc3339(self.issued_at),
            "request_url": self.request_url,
            "ui": self.ui,
            "organization_id": null,
            "state": self.state,
        });
        // `v` is an object; the fields below depend on the flow.
        if let Some(o) = v.as_object_mut() {
            if let Some(r) = &self.return_to {
                o.insert("return_to".into(), json!(r));
            }
            if let Some(a) = &self.active {
                o.insert("active".into(), json!(a));
            }
            match self.kind {
                FlowKind::Login => {
                    o.insert("created_at".into(), json!(rfc3339(self.issued_at)));
                    o.insert("updated_at".into(), json!(rfc3339(self.updated_at)));
                    o.insert("refresh".into(), json!(self.refresh));
                    o.insert("requested_aal".into(), json!(self.requested_aal));
                }
                FlowKind::Registration => {}
                FlowKind::Recovery | FlowKind::Verification => {
                    o.insert("continue_with".into(), json!(self.continue_with));
                    o.insert("transient_payload".into(), json!({}));
                }
                FlowKind::Settings => {
                    o.insert("identity".into(), identity.unwrap_or(Value::Null));
                    if !self.continue_with.is_empty() {
                        o.insert("continue_with".into(), json!(self.continue_with));
                    }
                }
            }
        }
        v
    }
}
