//! Reading the sources into one tree: the YAML file, then the `PORTCULLIS_*` overlay.
//!
//! The overlay knows which variables exist from the serialised defaults: every key path of
//! `Config::default()` becomes `PORTCULLIS_<UPPER_SNAKE_PATH>`. A new field is therefore
//! overridable without extra code, and a variable that names no key is an error rather than a
//! silent typo. A variable whose default is a string takes its text as is; any other value
//! (numbers, booleans, lists, maps) is parsed as YAML, so arrays and objects are written as JSON.

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
            return Err(ConfigError::Invalid(format!(
                "environment variable {key} does not name a configuration key"
            )));
        };
        let value = if default.is_string() {
            Value::String(raw)
        } else {
            let parsed: serde_yaml::Value = serde_yaml::from_str(&raw).map_err(|e| {
                ConfigError::Invalid(format!(
                    "{key}: not a valid value ({e}); arrays and objects are written as JSON"
                ))
            })?;
            serde_json::to_value(parsed).map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))?
        };
        set_path(tree, path, value);
    }
    Ok(())
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
