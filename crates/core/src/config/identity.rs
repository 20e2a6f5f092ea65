//! `identity`: the identity schemas and which one new identities get.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    pub default_schema_id: String,
    pub schemas: Vec<SchemaRef>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            default_schema_id: "default".into(),
            schemas: vec![],
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRef {
    pub id: String,
    /// `file://PATH` or `base64://…`.
    pub url: String,
}
