//! `[log]`: how the server's log lines are written. The process installs
//! its log subscriber itself (`dps-server` does, from this section and its
//! `--log-format` flag, the flag winning); the library only carries the
//! setting.

use serde::{Deserialize, Serialize};

/// The format of log lines on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured only on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}: use text or json")),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// `[log]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `"text"` (default) or `"json"`. `--log-format` / `DPS_LOG_FORMAT`
    /// override it.
    pub format: LogFormat,
    /// One INFO line per service API request (target `dps::access`:
    /// method, path without query, status, duration, peer; never a
    /// header). Default false.
    pub access_log: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_parses_from_toml_and_flags() {
        let config: LogConfig = toml::from_str("format = \"json\"").unwrap();
        assert_eq!(config.format, LogFormat::Json);
        assert_eq!(LogConfig::default().format, LogFormat::Text);
        assert!(toml::from_str::<LogConfig>("format = \"xml\"").is_err());
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("xml"
            .parse::<LogFormat>()
            .unwrap_err()
            .contains("text or json"));
    }
}
