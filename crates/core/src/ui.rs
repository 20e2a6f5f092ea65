//! Kratos UI containers, nodes and texts (`ui.nodes`, `ui.messages`).
//!
//! Node names, groups and message ids are a wire contract with `@ory/elements-react` and every
//! existing Kratos UI: they are taken verbatim from `shared/reference/kratos/message-ids.tsv`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// The most characters of a submitted value that go back into a node or a message: enough
/// for any real email address or name, and a bound on what an invalid value costs to store
/// and to send back (security review F6).
pub const ECHO_MAX_CHARS: usize = 256;

/// `s` as it may be echoed: its first [`ECHO_MAX_CHARS`] characters, followed by `…` when it
/// was longer (cut on a character boundary).
pub fn echo(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(ECHO_MAX_CHARS) {
        None => Cow::Borrowed(s),
        Some((end, _)) => Cow::Owned(format!("{}…", &s[..end])),
    }
}

/// A submitted value as it may be put back into a form: every string in it [`echo`]ed.
fn echo_value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(echo(s).into_owned()),
        Value::Array(a) => Value::Array(a.iter().map(echo_value).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (echo(k).into_owned(), echo_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UiText {
    pub id: u32,
    pub text: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
}

impl UiText {
    fn new(id: u32, kind: &str, text: impl Into<String>, context: Option<Value>) -> Self {
        UiText {
            id,
            text: text.into(),
            kind: kind.to_string(),
            context,
        }
    }
    pub fn info(id: u32, text: impl Into<String>) -> Self {
        Self::new(id, "info", text, None)
    }
    pub fn error(id: u32, text: impl Into<String>, context: Option<Value>) -> Self {
        Self::new(id, "error", text, context)
    }
    pub fn success(id: u32, text: impl Into<String>) -> Self {
        Self::new(id, "success", text, None)
    }
    pub fn success_with(id: u32, text: impl Into<String>, context: Value) -> Self {
        Self::new(id, "success", text, Some(context))
    }
}

/// The message catalogue used by the core. Texts and context keys follow Kratos exactly.
pub mod msg {
    use super::UiText;
    use serde_json::json;

    pub fn label_password() -> UiText {
        UiText::info(1070001, "Password")
    }
    pub fn label_generated(title: &str, name: &str) -> UiText {
        let mut t = UiText::info(1070002, title);
        t.context = Some(json!({ "title": title, "name": name }));
        t
    }
    pub fn label_id() -> UiText {
        UiText::info(1070004, "ID")
    }
    pub fn label_save() -> UiText {
        UiText::info(1070003, "Save")
    }
    pub fn sign_up() -> UiText {
        UiText::info(1040001, "Sign up")
    }
    pub fn sign_in_with_password() -> UiText {
        UiText::info(1010022, "Sign in with password")
    }
    pub fn reauthenticate() -> UiText {
        UiText::info(
            1010003,
            "Please confirm this action by verifying that it is you.",
        )
    }
    pub fn settings_saved() -> UiText {
        UiText::success(1050001, "Your changes have been saved!")
    }
    /// A reason that may quote a submitted value (the schema validator's), so it is bounded.
    pub fn generic(reason: &str) -> UiText {
        let reason = super::echo(reason);
        UiText::error(4000001, reason.as_ref(), Some(json!({ "reason": reason })))
    }
    pub fn required(property: &str) -> UiText {
        UiText::error(
            4000002,
            format!("Property {property} is missing."),
            Some(json!({ "property": property })),
        )
    }
    pub fn min_length(min: u64, actual: usize) -> UiText {
        UiText::error(
            4000003,
            format!("length must be >= {min}, but got {actual}"),
            Some(json!({ "min_length": min, "actual_length": actual })),
        )
    }
    pub fn max_length(max: u64, actual: usize) -> UiText {
        UiText::error(
            4000017,
            format!("length must be <= {max}, but got {actual}"),
            Some(json!({ "max_length": max, "actual_length": actual })),
        )
    }
    pub fn pattern(pattern: &str) -> UiText {
        UiText::error(
            4000004,
            format!("does not match pattern \"{pattern}\""),
            Some(json!({ "pattern": pattern })),
        )
    }
    pub fn wrong_type(allowed: &str, actual: &str) -> UiText {
        UiText::error(
            4000026,
            format!("expected {allowed}, but got {actual}"),
            Some(json!({ "allowed_types": [allowed], "actual_type": actual })),
        )
    }
    /// Quotes the value, [`super::echo`]ed.
    pub fn invalid_format(format: &str, value: &str) -> UiText {
        let text = format!("\"{}\" is not valid \"{format}\"", super::echo(value));
        UiText::error(4000001, text.clone(), Some(json!({ "reason": text })))
    }
    pub fn invalid_credentials() -> UiText {
        UiText::error(
            4000006,
            "The provided credentials are invalid, check for spelling mistakes in your password or username, email address, or phone number.",
            None,
        )
    }
    pub fn duplicate_credentials() -> UiText {
        UiText::error(
            4000007,
            "An account with the same identifier (email, phone, username, ...) exists already.",
            None,
        )
    }
    pub fn password_policy(reason: &str) -> UiText {
        UiText::error(
            4000005,
            format!("The password can not be used because {reason}."),
            Some(json!({ "reason": reason })),
        )
    }
    pub fn password_too_similar() -> UiText {
        UiText::error(
            4000031,
            "The password can not be used because it is too similar to the identifier.",
            None,
        )
    }
    pub fn password_min_length(min: usize, actual: usize) -> UiText {
        UiText::error(
            4000032,
            format!("The password must be at least {min} characters long, but got {actual}."),
            Some(json!({ "min_length": min, "actual_length": actual })),
        )
    }
    pub fn password_max_length(max: usize, actual: usize) -> UiText {
        UiText::error(
            4000033,
            format!("The password must be at most {max} characters long, but got {actual}."),
            Some(json!({ "max_length": max, "actual_length": actual })),
        )
    }
    pub fn password_breached() -> UiText {
        UiText::error(
            4000034,
            "The password has been found in data breaches and must no longer be used.",
            None,
        )
    }
    pub fn password_same_as_old() -> UiText {
        UiText::error(
            4000039,
            "The new password must be different from the old password.",
            None,
        )
    }
    pub fn identity_disabled() -> UiText {
        UiText::error(
            4010011,
            "This account has been disabled. Please contact support for assistance.",
            None,
        )
    }
    pub fn flow_expired(kind: &str, minutes_ago: f64, expired_at: &str, unix: i64) -> UiText {
        let id = match kind {
            "login" => 4010001,
            "registration" => 4040001,
            "settings" => 4050001,
            "recovery" => 4060005,
            "verification" => 4070005,
            _ => 4010001,
        };
        UiText::error(
            id,
            format!("The {kind} flow expired {minutes_ago:.2} minutes ago, please try again."),
            Some(json!({ "expired_at": expired_at, "expired_at_unix": unix })),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UiNode {
    #[serde(rename = "type")]
    pub node_type: String,
    pub group: String,
    pub attributes: Value,
    pub messages: Vec<UiText>,
    pub meta: Value,
}

impl UiNode {
    /// An `input` node. `attrs` holds extra attributes (`value`, `required`, `autocomplete`, ...).
    pub fn input(group: &str, name: &str, input_type: &str, label: Option<UiText>) -> Self {
        let attributes = json!({
            "name": name,
            "type": input_type,
            "disabled": false,
            "node_type": "input",
        });
        let meta = match label {
            Some(l) => json!({ "label": l }),
            None => json!({}),
        };
        UiNode {
            node_type: "input".into(),
            group: group.into(),
            attributes,
            messages: vec![],
            meta,
        }
    }

    /// An `a` node (a link): `id`, `href` and its `title`.
    pub fn anchor(group: &str, id: &str, href: &str, title: UiText) -> Self {
        UiNode {
            node_type: "a".into(),
            group: group.into(),
            attributes: json!({
                "id": id,
                "href": href,
                "title": title,
                "node_type": "a",
            }),
            messages: vec![],
            meta: json!({ "label": title }),
        }
    }

    /// An `img` node (the TOTP QR code): `id`, a `data:` URL and its display size.
    pub fn image(group: &str, id: &str, src: String, size: u32, label: UiText) -> Self {
        UiNode {
            node_type: "img".into(),
            group: group.into(),
            attributes: json!({
                "src": src,
                "id": id,
                "width": size,
                "height": size,
                "node_type": "img",
            }),
            messages: vec![],
            meta: json!({ "label": label }),
        }
    }

    /// A `text` node: a text to show (a secret, a list of codes) with its own `id`.
    pub fn text(group: &str, id: &str, text: UiText, label: UiText) -> Self {
        UiNode {
            node_type: "text".into(),
            group: group.into(),
            attributes: json!({ "text": text, "id": id, "node_type": "text" }),
            messages: vec![],
            meta: json!({ "label": label }),
        }
    }

    pub fn with_attr(mut self, key: &str, value: Value) -> Self {
        if let Some(obj) = self.attributes.as_object_mut() {
            obj.insert(key.to_string(), value);
        }
        self
    }

    pub fn name(&self) -> &str {
        self.attributes
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn set_value(&mut self, value: Value) {
        if let Some(obj) = self.attributes.as_object_mut() {
            // Kratos keeps attribute order name, type, value, ...; order has no meaning to clients.
            obj.insert("value".into(), value);
        }
    }

    pub fn is_submit(&self) -> bool {
        self.attributes.get("type").and_then(Value::as_str) == Some("submit")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UiContainer {
    pub action: String,
    pub method: String,
    pub nodes: Vec<UiNode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<UiText>,
}

impl UiContainer {
    pub fn new(action: String) -> Self {
        UiContainer {
            action,
            method: "POST".into(),
            nodes: vec![],
            messages: vec![],
        }
    }

    /// Removes every message from the container and its nodes (done before a new submit is judged).
    pub fn reset_messages(&mut self) {
        self.messages.clear();
        for n in &mut self.nodes {
            n.messages.clear();
        }
    }

    /// Attaches a message to the node with `name`, or to the container when there is no such node.
    pub fn add_message(&mut self, name: Option<&str>, text: UiText) {
        if let Some(name) = name {
            if let Some(node) = self
                .nodes
                .iter_mut()
                .find(|n| n.name() == name && !n.is_submit())
            {
                node.messages.push(text);
                return;
            }
        }
        self.messages.push(text);
    }

    /// Bounds the values of the nodes that carry an error: an invalid value goes back to the
    /// user [`echo`]ed, so a huge one is neither stored with the flow nor sent back whole. Valid
    /// values stay as they are (a settings form must not cut a long trait the schema allows).
    pub fn bound_invalid_values(&mut self) {
        for node in &mut self.nodes {
            if !node.messages.iter().any(|m| m.kind == "error") {
                continue;
            }
            if let Some(v) = node.attributes.get_mut("value") {
                *v = echo_value(v);
            }
        }
    }

    /// Fills node values from submitted form data (never for password fields).
    pub fn fill_values(&mut self, values: &Map<String, Value>) {
        for node in &mut self.nodes {
            let ty = node
                .attributes
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("");
            if matches!(ty, "password" | "submit" | "hidden") {
                continue;
            }
            if let Some(v) = values.get(node.name()) {
                node.set_value(v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_cuts_long_values_on_a_character_boundary_and_marks_the_cut() {
        assert_eq!(echo("short"), "short");
        let exact = "é".repeat(ECHO_MAX_CHARS);
        assert_eq!(echo(&exact), exact.as_str());
        let long = format!("{exact}é🦀");
        assert_eq!(echo(&long), format!("{exact}…"));
        let mut c = UiContainer::new("/".into());
        c.nodes
            .push(UiNode::input("default", "traits.a", "text", None));
        c.nodes
            .push(UiNode::input("default", "traits.b", "text", None));
        c.fill_values(
            &serde_json::from_value(json!({ "traits.a": long, "traits.b": long }))
                .unwrap_or_default(),
        );
        c.add_message(Some("traits.a"), UiText::error(4000001, "bad", None));
        c.bound_invalid_values();
        // Only the invalid value is cut; a valid one is kept whole.
        assert_eq!(c.nodes[0].attributes["value"], json!(format!("{exact}…")));
        assert_eq!(c.nodes[1].attributes["value"], json!(long));
    }

    #[test]
    fn every_flow_kind_has_its_own_expiry_message() {
        let ids: Vec<u32> = [
            "login",
            "registration",
            "settings",
            "recovery",
            "verification",
        ]
        .iter()
        .map(|k| msg::flow_expired(k, 1.0, "2026-01-01T00:00:00Z", 0).id)
        .collect();
        assert_eq!(ids, vec![4010001, 4040001, 4050001, 4060005, 4070005]);
        let t = msg::flow_expired("recovery", 2.5, "2026-01-01T00:00:00Z", 0).text;
        assert_eq!(
            t,
            "The recovery flow expired 2.50 minutes ago, please try again."
        );
    }
}
