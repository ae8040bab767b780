//! Command-line and environment settings laid over the configuration file:
//! every `Some` replaces the file's value, so a flag always wins.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{LogFormat, ServiceConfig};

/// Settings given outside the configuration file (flags, environment).
/// `None` keeps what the file (or the default) says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// `storage_url`.
    pub storage_url: Option<String>,
    /// `device.listen`.
    pub device_listen: Option<SocketAddr>,
    /// `service.listen`.
    pub service_listen: Option<SocketAddr>,
    /// `admin.listen`.
    pub admin_listen: Option<SocketAddr>,
    /// `operator_key`.
    pub operator_key: Option<String>,
    /// `log.format`.
    pub log_format: Option<LogFormat>,
}

impl ServiceConfig {
    /// Lay `overrides` over this configuration.
    pub fn apply_overrides(&mut self, overrides: Overrides) {
        let Overrides {
            data_dir,
            storage_url,
            device_listen,
            service_listen,
            admin_listen,
            operator_key,
            log_format,
        } = overrides;
        if let Some(dir) = data_dir {
            self.data_dir = dir;
        }
        if storage_url.is_some() {
            self.storage_url = storage_url;
        }
        if let Some(addr) = device_listen {
            self.device.listen = addr;
        }
        if let Some(addr) = service_listen {
            self.service.listen = addr;
        }
        if admin_listen.is_some() {
            self.admin.listen = admin_listen;
        }
        if operator_key.is_some() {
            self.operator_key = operator_key;
        }
        if let Some(format) = log_format {
            self.log.format = format;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_settings_win_over_the_file_and_absent_ones_keep_it() {
        let mut config = ServiceConfig::from_toml(
            "data_dir = \"from-file\"\n[log]\nformat = \"json\"\n[device]\nlisten = \"127.0.0.5:443\"\n",
        )
        .unwrap();
        config.apply_overrides(Overrides {
            data_dir: Some(PathBuf::from("from-flag")),
            log_format: Some(LogFormat::Text),
            admin_listen: Some("127.0.0.5:9191".parse().unwrap()),
            ..Overrides::default()
        });
        assert_eq!(config.data_dir, PathBuf::from("from-flag"));
        assert_eq!(config.log.format, LogFormat::Text);
        assert_eq!(config.device.listen, "127.0.0.5:443".parse().unwrap());
        assert_eq!(config.storage_url, None);
        assert_eq!(
            config.admin.listen_addr(config.device.listen),
            "127.0.0.5:9191".parse().unwrap()
        );

        let mut config = ServiceConfig::from_toml("[log]\nformat = \"json\"\n").unwrap();
        config.apply_overrides(Overrides::default());
        assert_eq!(
            config.log.format,
            LogFormat::Json,
            "no flag: the file's value"
        );
    }
}
