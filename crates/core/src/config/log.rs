//! `log`: the level and format of the server's own log.

use serde::{Deserialize, Serialize};

choice! {
    /// `log.level`, read without regard to case.
    pub enum LogLevel {
        Trace = "trace",
        Debug = "debug",
        #[default]
        Info = "info",
        Warn = "warn",
        Error = "error",
        Off = "off",
    }
    ignore_case: true,
    error: "{:?} is not a level: expected trace, debug, info, warn or error"
}

choice! {
    /// `log.format`.
    pub enum LogFormat {
        #[default]
        Text = "text",
        Json = "json",
    }
    ignore_case: false,
    error: "{:?}: expected \"text\" or \"json\""
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
    pub leak_sensitive_values: bool,
}
