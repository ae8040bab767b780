//! Where an administrator's connection comes from: flags, the environment,
//! or a named profile in a TOML file, so that a daily command is
//! `dps-admin --profile factory enrollment list` rather than a pasted key.
//!
//! ```toml
//! # ~/.config/dps/profiles.toml
//! default = "factory"            # used when no profile is named
//!
//! [profiles.factory]
//! connection_string = "HostName=factory.dps.example.com;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=…"
//! endpoint = "10.0.0.5:443"      # where the service listener is, when HostName does not lead there
//! ca = "ca.pem"                  # relative to this file's directory
//! operator_key_file = "/var/lib/dps/operator.key"   # or operator_key = "…"
//! ```
//!
//! Precedence, highest first: a flag; the profile named by `--profile` (or
//! `DPS_PROFILE`); the environment (`DPS_SERVICE_CONNECTION_STRING`,
//! `DPS_SERVICE_ENDPOINT`, `DPS_CA`, `DPS_OPERATOR_KEY`); the default
//! profile. A profile named on purpose beats the environment, which beats a
//! default nobody named in this command.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::credentials::{config, ConnectionString, Credentials};
use super::AdminClient;
use crate::{ClientError, TlsTrust};

/// Environment variable: the service connection string.
pub const ENV_CONNECTION_STRING: &str = "DPS_SERVICE_CONNECTION_STRING";
/// Environment variable: the service endpoint, `host[:port]`.
pub const ENV_ENDPOINT: &str = "DPS_SERVICE_ENDPOINT";
/// Environment variable: a PEM file of the server's CA.
pub const ENV_CA: &str = "DPS_CA";
/// Environment variable: the operator key.
pub const ENV_OPERATOR_KEY: &str = "DPS_OPERATOR_KEY";
/// Environment variable: the profile to use.
pub const ENV_PROFILE: &str = "DPS_PROFILE";
/// Environment variable: the profile file.
pub const ENV_PROFILE_FILE: &str = "DPS_PROFILE_FILE";

/// One profile of the file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The service connection string.
    pub connection_string: Option<String>,
    /// The service endpoint, `host[:port]`.
    pub endpoint: Option<String>,
    /// A PEM file of the server's CA (relative to the profile file).
    pub ca: Option<PathBuf>,
    /// The operator key.
    pub operator_key: Option<String>,
    /// A file holding the operator key (relative to the profile file).
    pub operator_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    default: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// What the command line said about the connection (each `None` when not given).
#[derive(Clone, Debug, Default)]
pub struct ConnectionOptions {
    /// `--connection-string`.
    pub connection_string: Option<String>,
    /// `--endpoint`.
    pub endpoint: Option<String>,
    /// `--ca`.
    pub ca: Option<PathBuf>,
    /// `--operator-key`.
    pub operator_key: Option<String>,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--profile-file`.
    pub profile_file: Option<PathBuf>,
}

/// The connection after flags, profile and environment are combined.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// The tenant policy, when one was given.
    pub connection_string: Option<ConnectionString>,
    /// Where requests go (`host[:port]`), when given.
    pub endpoint: Option<String>,
    /// The server's CA (PEM text), when given.
    pub ca_pem: Option<String>,
    /// The operator key, when given.
    pub operator_key: Option<String>,
    /// The profile that contributed, if any.
    pub profile: Option<String>,
}

impl ConnectionOptions {
    /// Combine with the environment (`env` looks a variable up) and the
    /// profile file.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Connection, ClientError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let file = self
            .profile_file
            .clone()
            .or_else(|| env(ENV_PROFILE_FILE).map(PathBuf::from))
            .or_else(|| default_profile_file(&env));
        let named = self.profile.clone().or_else(|| env(ENV_PROFILE));
        let profiles = match &file {
            Some(path) => read_profiles(path, named.is_some())?,
            None => ProfileFile::default(),
        };
        let base = file
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let (chosen, fallback) = match &named {
            Some(name) => {
                let profile = profiles.profiles.get(name).cloned().ok_or_else(|| {
                    config(format!(
                        "no profile {name:?} in {} (profiles: {})",
                        file.as_deref().unwrap_or(Path::new("?")).display(),
                        names(&profiles)
                    ))
                })?;
                (Some((name.clone(), profile)), None)
            }
            None => {
                let name = profiles.default.clone().unwrap_or_else(|| "default".into());
                match profiles.profiles.get(&name) {
                    Some(profile) => (None, Some((name, profile.clone()))),
                    None if profiles.default.is_some() => {
                        return Err(config(format!(
                            "the default profile {name:?} is not in the profile file"
                        )))
                    }
                    None => (None, None),
                }
            }
        };
        let pick = |flag: &Option<String>,
                    field: fn(&Profile) -> Option<String>,
                    var: &str|
         -> Option<String> {
            flag.clone()
                .or_else(|| chosen.as_ref().and_then(|(_, p)| field(p)))
                .or_else(|| env(var))
                .or_else(|| fallback.as_ref().and_then(|(_, p)| field(p)))
        };
        let connection_string = pick(
            &self.connection_string,
            |p| p.connection_string.clone(),
            ENV_CONNECTION_STRING,
        )
        .map(|text| ConnectionString::parse(&text))
        .transpose()?;
        let endpoint = pick(&self.endpoint, |p| p.endpoint.clone(), ENV_ENDPOINT);
        let relative = |path: PathBuf| base.join(path).display().to_string();
        let ca = match &self.ca {
            Some(path) => Some(path.display().to_string()),
            None => chosen
                .as_ref()
                .and_then(|(_, p)| p.ca.clone().map(relative))
                .or_else(|| env(ENV_CA))
                .or_else(|| {
                    fallback
                        .as_ref()
                        .and_then(|(_, p)| p.ca.clone().map(relative))
                }),
        };
        let ca_pem = ca
            .map(|path| read_text(Path::new(&path), "the CA file"))
            .transpose()?;
        let key_of = |p: &Profile| -> Result<Option<String>, ClientError> {
            match (&p.operator_key, &p.operator_key_file) {
                (Some(key), _) => Ok(Some(key.clone())),
                (None, Some(path)) => {
                    read_text(&base.join(path), "the operator key file").map(Some)
                }
                (None, None) => Ok(None),
            }
        };
        let operator_key = match &self.operator_key {
            Some(key) => Some(key.clone()),
            None => match chosen
                .as_ref()
                .map(|(_, p)| key_of(p))
                .transpose()?
                .flatten()
            {
                Some(key) => Some(key),
                None => match env(ENV_OPERATOR_KEY) {
                    Some(key) => Some(key),
                    None => fallback
                        .as_ref()
                        .map(|(_, p)| key_of(p))
                        .transpose()?
                        .flatten(),
                },
            },
        };
        Ok(Connection {
            connection_string,
            endpoint,
            ca_pem,
            operator_key: operator_key.map(|k| k.trim().to_owned()),
            profile: chosen.or(fallback).map(|(name, _)| name),
        })
    }
}

impl Connection {
    /// The servers trusted: the web PKI roots and the given CA.
    pub fn trust(&self) -> Result<TlsTrust, ClientError> {
        TlsTrust::new(true, self.ca_pem.as_slice())
    }

    /// A client signing with the tenant policy.
    pub fn tenant_client(&self) -> Result<AdminClient, ClientError> {
        let connection = self.connection_string.clone().ok_or_else(|| {
            config(format!(
                "no service connection string: give --connection-string, set \
                 {ENV_CONNECTION_STRING}, or name a profile with --profile"
            ))
        })?;
        let endpoint = self
            .endpoint
            .clone()
            .unwrap_or_else(|| connection.host_name.clone());
        AdminClient::new(endpoint, Credentials::Policy(connection), &self.trust()?)
    }

    /// A client signing with the operator key (tenant management).
    pub fn operator_client(&self) -> Result<AdminClient, ClientError> {
        let key = self.operator_key.as_deref().ok_or_else(|| {
            config(format!(
                "no operator key: give --operator-key, set {ENV_OPERATOR_KEY}, or put \
                 operator_key_file in the profile (dps-server keeps it in DATA_DIR/operator.key)"
            ))
        })?;
        // The operator has no host name of its own: the endpoint, else the
        // host of whatever connection string is at hand.
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| self.connection_string.as_ref().map(|c| c.host_name.clone()))
            .ok_or_else(|| {
                config(
                    "tenant commands need --endpoint HOST:PORT (the service listener)".to_owned(),
                )
            })?;
        AdminClient::new(endpoint, Credentials::operator(key), &self.trust()?)
    }
}

/// `$XDG_CONFIG_HOME/dps/profiles.toml`, else `$HOME/.config/dps/profiles.toml`.
fn default_profile_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".config")))
        .map(|dir| dir.join("dps").join("profiles.toml"))
}

/// The profiles of `path`; a missing file is no profiles unless one was named.
fn read_profiles(path: &Path, required: bool) -> Result<ProfileFile, ClientError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(ProfileFile::default())
        }
        Err(e) => return Err(config(format!("reading {}: {e}", path.display()))),
    };
    toml::from_str(&text).map_err(|e| {
        // toml's message quotes the offending line, which may hold a key.
        let at = e
            .span()
            .map(|span| format!(" (line {})", text[..span.start].lines().count().max(1)))
            .unwrap_or_default();
        config(format!("{}{at}: {}", path.display(), e.message()))
    })
}

fn read_text(path: &Path, what: &str) -> Result<String, ClientError> {
    std::fs::read_to_string(path)
        .map_err(|e| config(format!("reading {what} {}: {e}", path.display())))
}

fn names(file: &ProfileFile) -> String {
    if file.profiles.is_empty() {
        return "none".to_owned();
    }
    file.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
    const KEY_B: &str = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";

    fn cs(host: &str, key: &str) -> String {
        format!("HostName={host};SharedAccessKeyName=owner;SharedAccessKey={key}")
    }

    fn write_profiles(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("profiles.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_beat_named_profiles_which_beat_the_environment_which_beats_the_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "PEM").unwrap();
        std::fs::write(dir.path().join("op.key"), "opkey\n").unwrap();
        let file = write_profiles(
            dir.path(),
            &format!(
                "default = \"home\"\n\
                 [profiles.home]\nconnection_string = \"{}\"\nendpoint = \"home:1\"\n\
                 [profiles.lab]\nconnection_string = \"{}\"\nca = \"ca.pem\"\n\
                 operator_key_file = \"op.key\"\n",
                cs("home.test", KEY_A),
                cs("lab.test", KEY_B)
            ),
        );
        let env_cs = cs("env.test", KEY_B);
        let env = |name: &str| match name {
            ENV_CONNECTION_STRING => Some(env_cs.clone()),
            ENV_ENDPOINT => Some("env:2".to_owned()),
            _ => None,
        };
        let options = ConnectionOptions {
            profile_file: Some(file),
            ..ConnectionOptions::default()
        };
        // No profile named: the environment beats the default profile.
        let resolved = options.resolve(&env).unwrap();
        assert_eq!(resolved.connection_string.unwrap().host_name, "env.test");
        assert_eq!(resolved.endpoint.as_deref(), Some("env:2"));
        assert_eq!(resolved.profile.as_deref(), Some("home"));
        // Without the environment, the default profile counts.
        let resolved = options.resolve(&|_| None).unwrap();
        assert_eq!(resolved.connection_string.unwrap().host_name, "home.test");
        assert_eq!(resolved.endpoint.as_deref(), Some("home:1"));
        // A named profile beats the environment where it has a value…
        let named = ConnectionOptions {
            profile: Some("lab".to_owned()),
            ..options.clone()
        };
        let resolved = named.resolve(&env).unwrap();
        assert_eq!(resolved.connection_string.unwrap().host_name, "lab.test");
        assert_eq!(
            resolved.ca_pem.as_deref(),
            Some("PEM"),
            "relative to the file"
        );
        assert_eq!(resolved.operator_key.as_deref(), Some("opkey"));
        // … and the environment fills what it lacks.
        assert_eq!(resolved.endpoint.as_deref(), Some("env:2"));
        // Flags beat everything.
        let flagged = ConnectionOptions {
            endpoint: Some("flag:3".to_owned()),
            ..named
        };
        assert_eq!(
            flagged.resolve(&env).unwrap().endpoint.as_deref(),
            Some("flag:3")
        );
    }

    #[test]
    fn missing_and_broken_profiles_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let absent = ConnectionOptions {
            profile_file: Some(dir.path().join("none.toml")),
            ..ConnectionOptions::default()
        };
        // No file and no profile named: nothing configured, no error.
        assert!(absent
            .resolve(&|_| None)
            .unwrap()
            .connection_string
            .is_none());
        let named = ConnectionOptions {
            profile: Some("lab".to_owned()),
            ..absent
        };
        assert!(named
            .resolve(&|_| None)
            .unwrap_err()
            .to_string()
            .contains("none.toml"));

        let file = write_profiles(dir.path(), "[profiles.home]\nendpoint = \"h:1\"\n");
        let unknown = ConnectionOptions {
            profile: Some("lab".to_owned()),
            profile_file: Some(file),
            ..ConnectionOptions::default()
        };
        let text = unknown.resolve(&|_| None).unwrap_err().to_string();
        assert!(
            text.contains("no profile \"lab\"") && text.contains("home"),
            "{text}"
        );

        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQ=";
        let broken = write_profiles(
            dir.path(),
            &format!("[profiles.home]\nconnection_string = \"{secret}\"\nbogus = 1\n"),
        );
        let options = ConnectionOptions {
            profile_file: Some(broken),
            ..ConnectionOptions::default()
        };
        let text = options.resolve(&|_| None).unwrap_err().to_string();
        assert!(text.contains("(line ") && text.contains("bogus"), "{text}");
        assert!(!text.contains(secret), "{text}");
    }

    #[test]
    fn clients_need_what_their_routes_need() {
        let nothing = Connection::default();
        assert!(nothing
            .tenant_client()
            .unwrap_err()
            .to_string()
            .contains(ENV_CONNECTION_STRING));
        assert!(nothing
            .operator_client()
            .unwrap_err()
            .to_string()
            .contains("operator key"));
        let operator = Connection {
            operator_key: Some("k".to_owned()),
            ..Connection::default()
        };
        assert!(operator
            .operator_client()
            .unwrap_err()
            .to_string()
            .contains("--endpoint"));
        let tenant = Connection {
            connection_string: Some(ConnectionString::parse(&cs("t.test", KEY_A)).unwrap()),
            ..Connection::default()
        };
        assert_eq!(tenant.tenant_client().unwrap().endpoint(), "t.test");
    }
}
