//! Reading the sources into one tree: the YAML file, then the `PORTCULLIS_*` overlay.
//!
//! The overlay knows which variables exist from the serialised defaults: every key path of
//! `Config::default()` becomes `PORTCULLIS_<UPPER_SNAKE_PATH>`. A new field is therefore
//! overridable without extra code, and a variable that names no key is an error rather than a
//! silent typo. A variable whose default is a string takes its text as is; any other value
//! (numbers, booleans, lists, maps) is parsed as YAML, so arrays and objects are written as JSON.
//!
//! One element of a list the file has can be set too: `PORTCULLIS_IDENTITY_SCHEMAS_0_URL` sets
//! `identity.schemas[0].url`, so a file's list keeps its entries while one secret or path comes
//! from the environment (the client secret of an OIDC provider, say).

use super::{Config, ConfigError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const ENV_PREFIX: &str = "PORTCULLIS_";
/// Variables with this prefix belong to the test harness, not to the server.
const ENV_RESERVED: &[&str] = &["PORTCULLIS_TEST_"];

/// The file as a JSON tree (an empty file is an empty mapping).
pub(super) fn read_file(path: &str) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_string(),
        source,
    })?;
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| ConfigError::Invalid(format!("{path}: not valid YAML: {e}")))?;
    let v = serde_json::to_value(yaml).map_err(|e| ConfigError::Invalid(format!("{path}: {e}")))?;
    match v {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(_) => Ok(v),
        _ => Err(ConfigError::Invalid(format!(
            "{path}: the top level must be a mapping of keys"
        ))),
    }
}

/// Deserialises the tree, reporting the dotted key path of the first bad key or value.
pub(super) fn deserialize_named(tree: Value) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "<root>".to_string()
        } else {
            path
        };
        ConfigError::Invalid(format!("{path}: {}", e.into_inner()))
    })
}

/// The known key paths (upper-snake joined) mapped to their path and default value.
fn known_paths(defaults: &Value) -> BTreeMap<String, (Vec<String>, Value)> {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut BTreeMap<String, (Vec<String>, Value)>) {
        if !path.is_empty() {
            out.insert(path.join("_").to_uppercase(), (path.clone(), v.clone()));
        }
        if let Value::Object(m) = v {
            for (k, child) in m {
                path.push(k.clone());
                walk(child, path, out);
                path.pop();
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(defaults, &mut vec![], &mut out);
    out
}

/// Lays the `PORTCULLIS_*` variables of `env` over `tree`.
pub(super) fn apply_env(
    tree: &mut Value,
    defaults: &Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let known = known_paths(defaults);
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with(ENV_PREFIX) && !ENV_RESERVED.iter().any(|r| k.starts_with(r))
        })
        .collect();
    // Parents first, so `PORTCULLIS_SERVE_PUBLIC='{…}'` does not undo `PORTCULLIS_SERVE_PUBLIC_PORT`.
    vars.sort_by_key(|(k, _)| k.len());
    for (key, raw) in vars {
        let suffix = &key[ENV_PREFIX.len()..];
        if suffix == "DEV" {
            return Err(ConfigError::Invalid(format!(
                "environment variable {key}: dev mode is not a configuration key; it is turned on only by the --dev flag"
            )));
        }
        let Some((path, default)) = known.get(suffix) else {
            if let Some(target) = element_target(suffix, &known) {
                set_in_element(tree, &key, target, raw)?;
                continue;
            }
            return Err(ConfigError::Invalid(format!(
                "environment variable {key} does not name a configuration key"
            )));
        };
        let value = if default.is_string() {
            Value::String(raw)
        } else {
            parse_value(&key, &raw)?
        };
        set_path(tree, path, value);
    }
    Ok(())
}

fn parse_value(key: &str, raw: &str) -> Result<Value, ConfigError> {
    let parsed: serde_yaml::Value = serde_yaml::from_str(raw).map_err(|e| {
        ConfigError::Invalid(format!(
            "{key}: not a valid value ({e}); arrays and objects are written as JSON"
        ))
    })?;
    serde_json::to_value(parsed).map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))
}

/// A variable that addresses one element of a list: `<LIST>_<N>` (the element, as JSON) or
/// `<LIST>_<N>_<FIELD>` (one field of it, e.g. `PORTCULLIS_IDENTITY_SCHEMAS_0_URL`).
struct ElementTarget<'k> {
    list: &'k [String],
    index: usize,
    /// The field's upper-snake name inside the element; empty for the whole element.
    field: &'k str,
}

/// The list and element a variable suffix names, if it starts with a list's name and an index.
fn element_target<'k>(
    suffix: &'k str,
    known: &'k BTreeMap<String, (Vec<String>, Value)>,
) -> Option<ElementTarget<'k>> {
    known
        .iter()
        .filter(|(_, (_, default))| default.is_array())
        .filter_map(|(name, (path, _))| {
            let rest = suffix.strip_prefix(name.as_str())?.strip_prefix('_')?;
            let (index, field) = rest.split_once('_').unwrap_or((rest, ""));
            if index.is_empty() || !index.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            Some((
                name.len(),
                ElementTarget {
                    list: path,
                    index: index.parse().ok()?,
                    field,
                },
            ))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, t)| t)
}

/// Sets an element of a list the file (or an earlier variable) already has, or a field of it.
/// The field is found among the element's keys (nested objects too, `A_B` for `a.b`), else it
/// is a new key of the element. A field whose current value is a string, or that is new, takes
/// the text as it is; any other value is parsed as YAML.
fn set_in_element(
    tree: &mut Value,
    key: &str,
    t: ElementTarget<'_>,
    raw: String,
) -> Result<(), ConfigError> {
    let dotted = t.list.join(".");
    let mut cur = Some(tree);
    for seg in t.list {
        cur = cur.and_then(|v| v.get_mut(seg.as_str()));
    }
    let list = cur.and_then(Value::as_array_mut);
    let len = list.as_ref().map_or(0, |l| l.len());
    let Some(element) = list.and_then(|l| l.get_mut(t.index)) else {
        return Err(ConfigError::Invalid(format!(
            "environment variable {key}: {dotted} has {len} element(s), so there is no element {} to set; \
             set the whole list as JSON with {ENV_PREFIX}{}",
            t.index,
            t.list.join("_").to_uppercase()
        )));
    };
    if t.field.is_empty() {
        *element = parse_value(key, &raw)?;
        return Ok(());
    }
    let Some(obj) = element.as_object_mut() else {
        return Err(ConfigError::Invalid(format!(
            "environment variable {key}: {dotted}[{}] is not a mapping",
            t.index
        )));
    };
    let slot = field_slot(obj, t.field);
    *slot = match slot {
        Value::Null | Value::String(_) => Value::String(raw),
        _ => parse_value(key, &raw)?,
    };
    Ok(())
}

/// The value of the key (or nested key) of `obj` whose upper-snake path is `field`, created as
/// a new lower-case key when there is none.
fn field_slot<'v>(obj: &'v mut Map<String, Value>, field: &str) -> &'v mut Value {
    let found = obj.keys().find_map(|k| {
        let up = k.to_uppercase();
        if up == field {
            Some((k.clone(), None))
        } else {
            field
                .strip_prefix(up.as_str())
                .and_then(|r| r.strip_prefix('_'))
                .filter(|_| obj.get(k).is_some_and(Value::is_object))
                .map(|r| (k.clone(), Some(r.to_string())))
        }
    });
    match found {
        Some((k, None)) => obj.entry(k).or_insert(Value::Null),
        Some((k, Some(rest))) => match obj.entry(k).or_insert(Value::Null) {
            Value::Object(inner) => field_slot(inner, &rest),
            other => other,
        },
        None => obj.entry(field.to_lowercase()).or_insert(Value::Null),
    }
}

fn set_path(tree: &mut Value, path: &[String], value: Value) {
    let mut cur = tree;
    for (i, seg) in path.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(m) = cur else { return };
        if i == path.len() - 1 {
            m.insert(seg.clone(), value);
            return;
        }
        cur = m
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}
