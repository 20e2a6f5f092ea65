//! `log`: the level and format of the server's own log.

use serde::{Deserialize, Serialize};

choice! {
    /// `log.level`, read without regard to case. Kratos's `warning`, `fatal` and `panic` are
    /// read too (as `warn`, `error` and `error`).
    pub enum LogLevel {
        Trace = "trace",
        Debug = "debug",
        #[default]
        Info = "info",
        Warn = "warn",
        Error = "error",
        Off = "off",
        Warning = "warning",
        Fatal = "fatal",
        Panic = "panic",
    }
    ignore_case: true,
    error: "{:?} is not a level: expected trace, debug, info, warn or error"
}

impl LogLevel {
    /// The level as a log filter directive.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Warning => "warn",
            LogLevel::Fatal | LogLevel::Panic => "error",
            other => other.as_str(),
        }
    }
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
}
