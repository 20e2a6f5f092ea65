//! The generic node → view-model code: a flow's `ui.nodes` and messages become translated
//! messages and one form per node group, so a method added to the core needs no page code.

use super::i18n::with_derived_context;
use crate::AppState;
use portcullis_core::flow::FlowKind;
use portcullis_core::ui::UiText;
use serde_json::{json, Value};

/// The id attribute of a node's input.
fn field_id(name: &str) -> String {
    format!(
        "field-{}",
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    )
}

/// The template's view of a flow: translated messages and one form per node group.
// Indexing a `serde_json::Value` by key reads `Null` for a missing key and never panics, and
// the one write (`autofocus`) is on a node built here as an object: `v["a"]["b"]` reads
// clearer than chains of `get`.
#[allow(clippy::indexing_slicing)]
pub(super) fn flow_view(
    st: &AppState,
    lang: &str,
    flow: &Value,
    kind: FlowKind,
) -> (Vec<Value>, Vec<Value>) {
    let settings = kind == FlowKind::Settings;
    let ui = &st.ui;
    let now = st.core.now();
    let msg = |m: &Value| -> Option<Value> {
        let t: UiText = serde_json::from_value(m.clone()).ok()?;
        let t = with_derived_context(t, now);
        Some(json!({ "id": t.id, "type": t.kind, "text": ui.message(lang, &t) }))
    };
    let nodes: Vec<Value> = flow["ui"]["nodes"].as_array().cloned().unwrap_or_default();
    let has_password_field = nodes
        .iter()
        .any(|n| n["attributes"]["name"] == "password" && n["attributes"]["type"] == "password");
    // Wrong credentials belong to the password field on this page (Kratos reports them for
    // the whole flow), so they are read out with it and focus lands there.
    let mut moved: Vec<Value> = vec![];
    let mut messages = vec![];
    for m in flow["ui"]["messages"].as_array().into_iter().flatten() {
        if m["id"] == 4000006 && has_password_field {
            moved.extend(msg(m));
        } else {
            messages.extend(msg(m));
        }
    }
    let mut focused = false;
    let mut view_node = |n: &Value| -> Value {
        let a = &n["attributes"];
        let name = a["name"].as_str().unwrap_or_default();
        let ty = a["type"].as_str().unwrap_or("text");
        // An `a` (or `img`, `text`) node has an id of its own and no name.
        let id = match a["id"].as_str() {
            Some(own) if name.is_empty() => own.to_string(),
            _ => field_id(name),
        };
        let mut node_msgs: Vec<Value> = n["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(msg)
            .collect();
        if name == "password" && ty == "password" {
            node_msgs.append(&mut moved);
        }
        let invalid = node_msgs.iter().any(|m| m["type"] == "error");
        let describedby = (1..=node_msgs.len())
            .map(|i| format!("{id}-message-{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let label = ui.label(lang, &n["meta"]["label"]);
        // A WebAuthn button runs its ceremony through the page's script (`webauthn.js` binds
        // `data-portcullis-trigger`): the CSP allows no inline handlers.
        let trigger = a["onclickTrigger"].as_str().filter(|t| !t.is_empty());
        let kind = match (n["type"].as_str().unwrap_or("input"), ty) {
            ("input", "button") if trigger.is_some() => "trigger",
            ("input", "hidden") => "hidden",
            ("input", "submit" | "button") => "submit",
            ("input", "checkbox") => "checkbox",
            ("input", _) => "input",
            ("text", _) => "text",
            ("a", _) => "a",
            ("img", _) => "img",
            _ => "skip",
        };
        // Focus lands on the first field with an error.
        let autofocus = matches!(kind, "input" | "checkbox") && invalid && !focused;
        if autofocus {
            focused = true;
        }
        let value = match &a["value"] {
            Value::Null => Value::Null,
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        };
        // A provider's buttons (sign in, link, unlink) carry its kind's icon.
        let icon = match (kind, n["group"].as_str(), value.as_str()) {
            ("submit", Some("oidc"), Some(id))
                if matches!(name, "provider" | "link" | "unlink") =>
            {
                ui.provider_icon(id)
            }
            _ => None,
        };
        json!({
            "kind": kind,
            "name": name,
            "type": ty,
            "id": id,
            "value": value,
            "checked": a["value"] == true,
            "label": label,
            "required": a["required"] == true,
            "disabled": a["disabled"] == true,
            "autocomplete": a["autocomplete"],
            "pattern": a["pattern"],
            "maxlength": a["maxlength"],
            "messages": node_msgs,
            "invalid": invalid,
            "describedby": describedby,
            "autofocus": autofocus,
            "text": n["attributes"]["text"]["text"],
            "href": a["href"],
            "src": a["src"],
            "trigger": trigger,
            "onload": a["onloadTrigger"],
            "icon": icon,
        })
    };
    // The form a node goes into: its group's, except that signing up with a passkey shares
    // the password form (both need the traits). The script node has no form: the page loads
    // it in its head.
    let has_password = nodes.iter().any(|n| n["group"] == "password");
    let form_of = |n: &Value| -> String {
        match n["group"].as_str().unwrap_or("default") {
            "passkey" | "webauthn" if kind == FlowKind::Registration && has_password => {
                "password".into()
            }
            g => g.into(),
        }
    };
    let nodes: Vec<Value> = nodes
        .into_iter()
        .filter(|n| n["type"] != "script")
        .collect();
    let mut groups: Vec<String> = vec![];
    for n in &nodes {
        let g = form_of(n);
        if g != "default" && !groups.contains(&g) {
            groups.push(g);
        }
    }
    if groups.is_empty() {
        groups.push("default".into());
    }
    let mut forms = vec![];
    let mut seen_ids = std::collections::HashSet::new();
    for g in &groups {
        // A passkey or security key signs in without the identifier the password form asks
        // for: their forms take only the hidden fields of the `default` group (registration
        // needs the traits, so there they take them all). A provider's button needs nothing
        // typed either, except on the registration-completion form, which has no password.
        let lean = (g == "passkey" && kind != FlowKind::Registration)
            || (g == "oidc" && (kind != FlowKind::Registration || has_password));
        let members: Vec<Value> = nodes
            .iter()
            .filter(|n| {
                let ng = form_of(n);
                let hidden = n["attributes"]["type"] == "hidden";
                ng == *g || (ng == "default" && (hidden || !lean))
            })
            .map(&mut view_node)
            .collect();
        let members = distinct_ids(members, g, &mut seen_ids);
        let (main, actions) = split_side_actions(members);
        let form = |nodes: Vec<Value>, side: bool| {
            json!({
                "group": g,
                "side": side,
                "title": if settings && !side { ui.lookup(lang, &format!("group.{g}")) } else { None },
                "action": flow["ui"]["action"],
                "method": flow["ui"]["method"],
                "nodes": nodes,
            })
        };
        let side = (!actions.is_empty()).then(|| {
            let hidden = main.iter().filter(|n| n["kind"] == "hidden").cloned();
            form(hidden.chain(actions).collect(), true)
        });
        forms.push(form(main, false));
        forms.extend(side);
    }
    // With no error to point at, sign-in and sign-up start at the first field to fill in
    // (settings pages show saved values, so nothing is singled out there).
    if !focused && !settings {
        'outer: for f in forms.iter_mut() {
            for n in f["nodes"].as_array_mut().into_iter().flatten() {
                if n["kind"] == "input" && n["value"].as_str().is_none_or(str::is_empty) {
                    n["autofocus"] = json!(true);
                    break 'outer;
                }
            }
        }
    }
    (messages, forms)
}

/// Field ids unique on the page: a field an earlier form has too (the traits on the
/// registration page's password and passkey forms) gets the group's name appended.
// The nodes are the objects `flow_view` built; reading a missing key gives `Null`.
#[allow(clippy::indexing_slicing)]
fn distinct_ids(
    mut members: Vec<Value>,
    group: &str,
    seen: &mut std::collections::HashSet<String>,
) -> Vec<Value> {
    for n in &mut members {
        if !matches!(n["kind"].as_str(), Some("input" | "checkbox")) {
            continue;
        }
        let id = n["id"].as_str().unwrap_or_default().to_string();
        if seen.insert(id.clone()) {
            continue;
        }
        let own = format!("{id}-{group}");
        let described = n["describedby"]
            .as_str()
            .unwrap_or_default()
            .replace(&format!("{id}-message-"), &format!("{own}-message-"));
        n["describedby"] = json!(described);
        n["id"] = json!(own);
    }
    members
}

/// Splits off a form's side actions: submit buttons that send a field of their own (not
/// `method`) which no field of the form fills in, such as the code form's "Resend code"
/// (`email=<address>`). In the form they would also send what was typed meanwhile (a code
/// wins over a resend), so each goes into a form of its own with the hidden fields; Enter in
/// the main form still presses its first button.
// The nodes are the objects `flow_view` built; reading a missing key gives `Null`.
#[allow(clippy::indexing_slicing)]
fn split_side_actions(members: Vec<Value>) -> (Vec<Value>, Vec<Value>) {
    let fields: Vec<Value> = members
        .iter()
        .filter(|n| matches!(n["kind"].as_str(), Some("input" | "checkbox")))
        .map(|n| n["name"].clone())
        .collect();
    if fields.is_empty() {
        return (members, vec![]);
    }
    members.into_iter().partition(|n| {
        // A provider's button is its form's own action (registration completion sends the
        // traits with it).
        let main = matches!(n["name"].as_str(), Some("method" | "provider"));
        !(n["kind"] == "submit" && !main && !fields.contains(&n["name"]))
    })
}
