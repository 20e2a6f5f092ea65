//! Identity schemas: draft-07 JSON Schema with the `ory.sh/kratos` extension.
//!
//! A schema is compiled once; from it we derive the trait fields in schema order (used to
//! render `traits.*` nodes), which traits are password identifiers and which are verifiable or
//! recovery addresses. Validation errors become Kratos UI messages on `traits.<path>` nodes.

use crate::ui::{msg, UiNode, UiText};
use base64::Engine;
use serde_json::{json, Value};

pub const DEFAULT_SCHEMA: &str = include_str!("default.schema.json");

#[derive(Debug, thiserror::Error)]
#[error("identity schema {id:?}: {reason}")]
pub struct SchemaError {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct TraitField {
    /// JSON path below `traits`, e.g. `["name", "first"]`.
    pub path: Vec<String>,
    pub json_type: String,
    pub format: Option<String>,
    pub title: Option<String>,
    pub required: bool,
    pub pattern: Option<String>,
    pub max_length: Option<u64>,
    pub options: Option<Vec<Value>>,
    pub password_identifier: bool,
    pub verification_via: Option<String>,
    pub recovery_via: Option<String>,
    /// Marked `credentials.totp.account_name`: the name authenticator apps show.
    pub totp_account_name: bool,
    /// Marked `credentials.passkey.display_name`: the name a new passkey is saved under.
    pub passkey_display_name: bool,
}

impl TraitField {
    /// The node name, `traits.name.first`.
    pub fn node_name(&self) -> String {
        format!("traits.{}", self.path.join("."))
    }

    fn input_type(&self) -> &'static str {
        match (self.json_type.as_str(), self.format.as_deref()) {
            (_, Some("email")) => "email",
            (_, Some("tel")) => "tel",
            (_, Some("date")) => "date",
            (_, Some("date-time")) => "datetime-local",
            (_, Some("uri")) => "url",
            ("number" | "integer", _) => "number",
            ("boolean", _) => "checkbox",
            _ => "text",
        }
    }

    /// The input node Kratos renders for this trait (label 1070002 from the schema title).
    pub fn node(&self, group: &str, value: Option<&Value>) -> UiNode {
        let name = self.node_name();
        let title = self.title.clone().unwrap_or_else(|| name.clone());
        let mut node = UiNode::input(
            group,
            &name,
            self.input_type(),
            Some(msg::label_generated(&title, &name)),
        );
        if let Some(v) = value {
            node.set_value(v.clone());
        }
        if self.required {
            node = node.with_attr("required", json!(true));
        }
        match self.format.as_deref() {
            Some("email") => node = node.with_attr("autocomplete", json!("email")),
            Some("tel") => node = node.with_attr("autocomplete", json!("tel")),
            _ => {}
        }
        if let Some(p) = &self.pattern {
            node = node.with_attr("pattern", json!(p));
        }
        if let Some(m) = self.max_length {
            node = node.with_attr("maxlength", json!(m));
        }
        if let Some(o) = &self.options {
            node = node.with_attr(
                "options",
                json!(o.iter().map(|v| json!({ "value": v })).collect::<Vec<_>>()),
            );
        }
        node
    }

    pub fn get<'a>(&self, traits: &'a Value) -> Option<&'a Value> {
        self.path.iter().try_fold(traits, |v, seg| v.get(seg))
    }
}

/// Addresses and identifiers derived from an identity's traits.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Derived {
    pub password_identifiers: Vec<String>,
    pub verifiable: Vec<(String, String)>,
    pub recovery: Vec<(String, String)>,
}

pub struct IdentitySchema {
    pub id: String,
    pub raw: Value,
    validator: jsonschema::Validator,
    pub fields: Vec<TraitField>,
}

impl std::fmt::Debug for IdentitySchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySchema")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl IdentitySchema {
    /// Turns the strings of an HTML form into the schema's types: `"true"`/`"on"` into
    /// booleans, digits into numbers. Empty strings are dropped, so an optional field left
    /// blank is absent rather than invalid. Values that do not parse stay strings and fail
    /// validation with a type message.
    pub fn coerce_form(&self, traits: &mut Value) {
        for f in &self.fields {
            let Some((last, parents)) = f.path.split_last() else {
                continue;
            };
            let Some(Value::Object(obj)) = parents
                .iter()
                .try_fold(&mut *traits, |v, seg| v.get_mut(seg))
            else {
                continue;
            };
            let Some(Value::String(s)) = obj.get(last) else {
                continue;
            };
            let coerced = match f.json_type.as_str() {
                _ if s.is_empty() => None,
                "boolean" => match s.as_str() {
                    "true" | "on" | "1" => Some(Value::Bool(true)),
                    "false" | "off" | "0" => Some(Value::Bool(false)),
                    _ => Some(Value::String(s.clone())),
                },
                "integer" => Some(
                    s.trim()
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::String(s.clone())),
                ),
                "number" => Some(
                    s.trim()
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                        .unwrap_or_else(|| Value::String(s.clone())),
                ),
                _ => Some(Value::String(s.clone())),
            };
            match coerced {
                Some(v) => {
                    obj.insert(last.clone(), v);
                }
                None => {
                    obj.remove(last);
                }
            }
        }
    }

    /// Loads a schema from `file://PATH` or `base64://…`.
    pub fn load(id: &str, url: &str) -> Result<Self, SchemaError> {
        let err = |reason: String| SchemaError {
            id: id.to_string(),
            reason,
        };
        let text = if let Some(path) = url.strip_prefix("file://") {
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read {path}: {e}")))?
        } else if let Some(b64) = url.strip_prefix("base64://") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim()))
                .map_err(|e| err(format!("base64:// URL does not decode: {e}")))?;
            String::from_utf8(bytes).map_err(|_| err("base64:// content is not UTF-8".into()))?
        } else {
            return Err(err(format!(
                "unsupported URL {url:?}: expected file:// or base64://"
            )));
        };
        let raw: Value =
            serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        Self::compile(id, raw)
    }

    pub fn compile(id: &str, raw: Value) -> Result<Self, SchemaError> {
        let err = |reason: String| SchemaError {
            id: id.to_string(),
            reason,
        };
        let traits = raw
            .pointer("/properties/traits")
            .ok_or_else(|| err("must define properties.traits".into()))?;
        if traits.get("type").and_then(Value::as_str) != Some("object") {
            return Err(err("properties.traits must be of type object".into()));
        }
        let validator = jsonschema::draft7::options()
            .should_validate_formats(true)
            .build(&raw)
            .map_err(|e| err(format!("not a valid JSON Schema: {e}")))?;
        let mut fields = vec![];
        collect_fields(traits, &mut vec![], &mut fields);
        if fields.is_empty() {
            return Err(err(
                "properties.traits must have at least one property".into()
            ));
        }
        Ok(IdentitySchema {
            id: id.to_string(),
            raw,
            validator,
            fields,
        })
    }

    pub fn default_schema() -> Result<Self, SchemaError> {
        let raw: Value = serde_json::from_str(DEFAULT_SCHEMA).map_err(|e| SchemaError {
            id: "default".into(),
            reason: e.to_string(),
        })?;
        Self::compile("default", raw)
    }

    /// Validates traits; each violation is returned with the node it belongs to
    /// (`None` for errors without a location, which go to `ui.messages`).
    pub fn validate(&self, traits: &Value) -> Vec<(Option<String>, UiText)> {
        let instance = json!({ "traits": traits });
        let mut out = vec![];
        for e in self.validator.iter_errors(&instance) {
            let pointer = e.instance_path.as_str().to_string();
            let node = pointer_to_node(&pointer);
            use jsonschema::error::ValidationErrorKind as K;
            let text = match &e.kind {
                K::Required { property } => {
                    let prop = property.as_str().unwrap_or_default().to_string();
                    let name = match &node {
                        Some(n) => format!("{n}.{prop}"),
                        None if pointer.is_empty() => prop.clone(),
                        None => prop.clone(),
                    };
                    out.push((Some(name), msg::required(&prop)));
                    continue;
                }
                K::MinLength { limit } => msg::min_length(*limit, char_len(&e.instance)),
                K::MaxLength { limit } => msg::max_length(*limit, char_len(&e.instance)),
                K::Pattern { pattern } => msg::pattern(pattern),
                K::Format { format } => {
                    let v = e
                        .instance
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| e.instance.to_string());
                    msg::invalid_format(format, &v)
                }
                K::Type { kind } => {
                    msg::wrong_type(&type_kind_name(kind), json_type_name(&e.instance))
                }
                _ => msg::generic(&e.to_string()),
            };
            out.push((node, text));
        }
        out
    }

    /// Password identifiers and addresses, normalised (emails trimmed and lower-cased).
    pub fn derive(&self, traits: &Value) -> Derived {
        let mut d = Derived::default();
        for f in &self.fields {
            let Some(v) = f.get(traits) else { continue };
            let values: Vec<&str> = match v {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            for raw in values {
                let is_email = f.format.as_deref() == Some("email")
                    || f.verification_via.as_deref() == Some("email")
                    || f.recovery_via.as_deref() == Some("email");
                let value = if is_email {
                    raw.trim().to_lowercase()
                } else {
                    raw.trim().to_string()
                };
                if value.is_empty() {
                    continue;
                }
                if f.password_identifier && !d.password_identifiers.contains(&value) {
                    d.password_identifiers.push(value.clone());
                }
                if let Some(via) = &f.verification_via {
                    let entry = (value.clone(), via.clone());
                    if !d.verifiable.contains(&entry) {
                        d.verifiable.push(entry);
                    }
                }
                if let Some(via) = &f.recovery_via {
                    let entry = (value.clone(), via.clone());
                    if !d.recovery.contains(&entry) {
                        d.recovery.push(entry);
                    }
                }
            }
        }
        d
    }

    /// The TOTP account name of `traits`: the trait marked `credentials.totp.account_name`
    /// (Kratos), when it holds a string.
    pub fn totp_account_name(&self, traits: &Value) -> Option<String> {
        self.fields
            .iter()
            .filter(|f| f.totp_account_name)
            .find_map(|f| f.get(traits).and_then(|v| v.as_str().map(str::to_string)))
    }

    /// The trait a new passkey takes its name from (`credentials.passkey.display_name`), else
    /// the first password identifier: its node name, and its value in `traits`.
    pub fn passkey_display_name(&self, traits: &Value) -> (Option<String>, Option<String>) {
        let field = self
            .fields
            .iter()
            .find(|f| f.passkey_display_name)
            .or_else(|| self.fields.iter().find(|f| f.password_identifier));
        match field {
            Some(f) => (
                Some(f.node_name()),
                f.get(traits).and_then(|v| v.as_str().map(str::to_string)),
            ),
            None => (None, None),
        }
    }

    /// The title of the first password-identifier trait, used as the login `identifier` label.
    pub fn identifier_label(&self) -> UiText {
        match self.fields.iter().find(|f| f.password_identifier) {
            Some(f) => msg::label_generated(f.title.as_deref().unwrap_or("ID"), &f.node_name()),
            None => msg::label_id(),
        }
    }
}

fn char_len(v: &Value) -> usize {
    v.as_str().map(|s| s.chars().count()).unwrap_or(0)
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_kind_name(kind: &jsonschema::error::TypeKind) -> String {
    match kind {
        jsonschema::error::TypeKind::Single(t) => t.to_string(),
        jsonschema::error::TypeKind::Multiple(set) => set
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// `/traits/name/first` → `traits.name.first`; `` → None.
fn pointer_to_node(pointer: &str) -> Option<String> {
    if pointer.is_empty() || pointer == "/" {
        return None;
    }
    let segs: Vec<String> = pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    Some(segs.join("."))
}

fn collect_fields(schema: &Value, path: &mut Vec<String>, out: &mut Vec<TraitField>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, prop) in props {
        path.push(name.clone());
        let ty = prop
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string")
            .to_string();
        if ty == "object" {
            collect_fields(prop, path, out);
        } else {
            let ext = prop.get("ory.sh/kratos");
            let s = |p: &str| prop.get(p).and_then(Value::as_str).map(str::to_string);
            let flag = |p: &str| {
                ext.and_then(|e| e.pointer(p))
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            };
            out.push(TraitField {
                path: path.clone(),
                json_type: ty,
                format: s("format"),
                title: s("title"),
                required: required.contains(&name.as_str()),
                pattern: s("pattern"),
                max_length: prop.get("maxLength").and_then(Value::as_u64),
                options: prop.get("enum").and_then(Value::as_array).cloned(),
                password_identifier: ext
                    .and_then(|e| e.pointer("/credentials/password/identifier"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                verification_via: ext
                    .and_then(|e| e.pointer("/verification/via"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                recovery_via: ext
                    .and_then(|e| e.pointer("/recovery/via"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                totp_account_name: flag("/credentials/totp/account_name"),
                passkey_display_name: flag("/credentials/passkey/display_name"),
            });
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schema_derives_identifier_and_addresses_lowercased() {
        let s = IdentitySchema::default_schema().unwrap();
        let d = s.derive(&json!({ "email": " Ada@Example.COM ", "name": { "first": "Ada" } }));
        assert_eq!(d.password_identifiers, vec!["ada@example.com"]);
        assert_eq!(
            d.verifiable,
            vec![("ada@example.com".to_string(), "email".to_string())]
        );
        assert_eq!(
            d.recovery,
            vec![("ada@example.com".to_string(), "email".to_string())]
        );
    }

    #[test]
    fn violations_land_on_the_right_nodes_with_kratos_ids() {
        let s = IdentitySchema::default_schema().unwrap();
        let errs = s.validate(&json!({ "name": { "first": 5 } }));
        assert!(
            errs.iter()
                .any(|(n, t)| n.as_deref() == Some("traits.email") && t.id == 4000002),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|(n, t)| n.as_deref() == Some("traits.name.first") && t.id == 4000026),
            "{errs:?}"
        );
        let errs = s.validate(&json!({ "email": "not-an-email" }));
        assert!(
            errs.iter()
                .any(|(n, t)| n.as_deref() == Some("traits.email") && t.id == 4000001),
            "{errs:?}"
        );
        assert!(s
            .validate(&json!({ "email": "a@b.co", "name": { "first": "A", "last": "B" } }))
            .is_empty());
    }

    #[test]
    fn nodes_follow_schema_order_with_labels() {
        let s = IdentitySchema::default_schema().unwrap();
        let names: Vec<String> = s.fields.iter().map(TraitField::node_name).collect();
        assert_eq!(
            names,
            vec!["traits.email", "traits.name.first", "traits.name.last"]
        );
        let node = s.fields[0].node("default", None);
        assert_eq!(node.attributes["type"], "email");
        assert_eq!(node.attributes["required"], true);
        assert_eq!(node.meta["label"]["id"], 1070002);
    }

    #[test]
    fn schemas_without_traits_are_refused() {
        assert!(IdentitySchema::compile("x", json!({ "type": "object" })).is_err());
        let b64 = base64::engine::general_purpose::STANDARD.encode(DEFAULT_SCHEMA);
        assert!(IdentitySchema::load("d", &format!("base64://{b64}")).is_ok());
    }
}
