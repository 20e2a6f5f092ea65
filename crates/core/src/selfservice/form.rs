//! The form pieces every flow shares: the password input, a method's submit button,
//! submitted trait values put back into the form, and the "already completed" message.

use crate::flow::Flow;
use crate::ui::{msg, UiNode, UiText};
use serde_json::{json, Map, Value};

/// The `password` input of the password group; `autocomplete` tells password managers whether
/// to fill in (`current-password`) or to offer a new one (`new-password`).
pub(super) fn password_input(autocomplete: &str) -> UiNode {
    UiNode::input(
        "password",
        "password",
        "password",
        Some(msg::label_password()),
    )
    .with_attr("required", json!(true))
    .with_attr("autocomplete", json!(autocomplete))
}

/// The submit button of a method's group.
pub(super) fn method_submit(group: &str, label: UiText) -> UiNode {
    UiNode::input(group, "method", "submit", Some(label)).with_attr("value", json!(group))
}

/// Puts submitted trait values back into the form so the user need not retype them.
pub(super) fn fill_trait_values(flow: &mut Flow, traits: &Value) {
    let mut flat = Map::new();
    flatten("traits", traits, &mut flat);
    flow.ui.fill_values(&flat);
}

fn flatten(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                flatten(&format!("{prefix}.{k}"), child, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// The message a flow shows when its submit was already completed.
pub(super) fn already_completed(id: u32) -> UiText {
    UiText::error(
        id,
        "The request was already completed successfully and can not be retried.",
        None,
    )
}
