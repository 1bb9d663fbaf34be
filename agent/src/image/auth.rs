//! Registry credentials in the shapes Docker passes them: the
//! `X-Registry-Auth` header (base64url JSON of an AuthConfig, what
//! `--with-registry-auth` carries to the nodes) and a client's
//! `~/.docker/config.json` (`auths.<registry>.auth` = base64 of
//! `user:password`). Secrets never show in `Debug` output.

use shoal_control::error_chain::ErrorChain;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::error::ImageError;
use super::reference::DOCKER_HUB;

/// Docker Hub's key in config.json.
const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// How to prove who we are to a registry.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credentials {
    #[default]
    Anonymous,
    /// User and password: sent with HTTP Basic, or traded for a bearer
    /// token where the registry asks for one.
    Basic { username: String, password: String },
    /// A registry token, sent as is.
    Bearer(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Docker's AuthConfig (types/registry/authconfig.go), as JSON.
#[derive(Default, Deserialize)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// base64 of `user:password`, as in config.json.
    #[serde(default)]
    auth: String,
    #[serde(default, rename = "identitytoken")]
    identity_token: String,
    #[serde(default, rename = "registrytoken")]
    registry_token: String,
}

impl AuthConfig {
    fn into_credentials(self) -> Result<Credentials, ImageError> {
        if !self.registry_token.is_empty() {
            return Ok(Credentials::Bearer(self.registry_token));
        }
        if !self.identity_token.is_empty() {
            return Err(ImageError::Credentials(
                "identity tokens (OAuth refresh tokens from a credential helper) are not \
                 supported; log in with a user name and password or an access token"
                    .into(),
            ));
        }
        if !self.username.is_empty() || !self.password.is_empty() {
            return Ok(Credentials::Basic {
                username: self.username,
                password: self.password,
            });
        }
        if !self.auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(self.auth.trim())
                .map_err(|_| ImageError::Credentials("`auth` is not base64".into()))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| ImageError::Credentials("`auth` is not UTF-8".into()))?;
            let (username, password) = text
                .split_once(':')
                .ok_or_else(|| ImageError::Credentials("`auth` is not user:password".into()))?;
            return Ok(Credentials::Basic {
                username: username.into(),
                password: password.into(),
            });
        }
        Ok(Credentials::Anonymous)
    }
}

/// The largest header or config file read.
const MAX_AUTH: usize = 64 << 10;

impl Credentials {
    /// Reads an `X-Registry-Auth` value: base64url (padded or not) of an
    /// AuthConfig JSON object. An empty value or `{}` is anonymous.
    pub fn from_registry_auth_header(value: &str) -> Result<Credentials, ImageError> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(Credentials::Anonymous);
        }
        if value.len() > MAX_AUTH {
            return Err(ImageError::Credentials(
                "X-Registry-Auth is too large".into(),
            ));
        }
        let engines = [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD,
        ];
        let json = engines
            .iter()
            .find_map(|e| e.decode(value).ok())
            .ok_or_else(|| ImageError::Credentials("X-Registry-Auth is not base64".into()))?;
        let not_config = |e: String| {
            ImageError::Credentials(format!("X-Registry-Auth is not an auth config: {e}"))
        };
        let value: serde_json::Value =
            serde_json::from_slice(&json).map_err(|e| not_config(e.chain().to_string()))?;
        if !value.is_object() {
            return Err(not_config("not a JSON object".into()));
        }
        let config: AuthConfig =
            serde_json::from_value(value).map_err(|e| not_config(e.chain().to_string()))?;
        config.into_credentials()
    }

    /// The entry of a Docker `config.json` for `registry` (Docker Hub's is
    /// kept under its v1 URL); anonymous when there is none.
    pub fn from_docker_config(json: &[u8], registry: &str) -> Result<Credentials, ImageError> {
        if json.len() > MAX_AUTH {
            return Err(ImageError::Credentials("config.json is too large".into()));
        }
        #[derive(Deserialize)]
        struct ConfigFile {
            #[serde(default)]
            auths: BTreeMap<String, AuthConfig>,
        }
        let mut file: ConfigFile = serde_json::from_slice(json)
            .map_err(|e| ImageError::Credentials(format!("config.json: {}", e.chain())))?;
        let wanted = |key: &str| {
            let host = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or("");
            if registry == DOCKER_HUB {
                key == DOCKER_HUB_CONFIG_KEY
                    || matches!(
                        host,
                        "docker.io" | "index.docker.io" | "registry-1.docker.io"
                    )
            } else {
                host == registry
            }
        };
        let key = file.auths.keys().find(|k| wanted(k)).cloned();
        match key.and_then(|k| file.auths.remove(&k)) {
            Some(config) => config.into_credentials(),
            None => Ok(Credentials::Anonymous),
        }
    }

    /// Docker's `X-Registry-Auth` for these credentials at `server`
    /// (base64url JSON of an AuthConfig); empty when anonymous.
    pub fn to_registry_auth_header(&self, server: &str) -> String {
        let json = match self {
            Credentials::Anonymous => return String::new(),
            Credentials::Basic { username, password } => serde_json::json!({
                "username": username,
                "password": password,
                "serveraddress": server,
            }),
            Credentials::Bearer(token) => serde_json::json!({
                "registrytoken": token,
                "serveraddress": server,
            }),
        };
        base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
    }

    pub(crate) fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth;
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Bearer(token) => RegistryAuth::Bearer(token.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64url(text: &str) -> String {
        base64::engine::general_purpose::URL_SAFE.encode(text)
    }

    #[test]
    fn registry_auth_headers_round_trip() {
        for credentials in [
            Credentials::Basic {
                username: "alice".into(),
                password: "s3:cret".into(),
            },
            Credentials::Bearer("tok".into()),
        ] {
            let header = credentials.to_registry_auth_header("r.example:5000");
            assert_eq!(
                Credentials::from_registry_auth_header(&header).unwrap(),
                credentials
            );
        }
        assert_eq!(Credentials::Anonymous.to_registry_auth_header("r"), "");
    }

    #[test]
    fn x_registry_auth_with_user_and_password() {
        let header =
            b64url(r#"{"username":"alice","password":"s3cret","serveraddress":"r.example:5000"}"#);
        assert_eq!(
            Credentials::from_registry_auth_header(&header).unwrap(),
            Credentials::Basic {
                username: "alice".into(),
                password: "s3cret".into()
            }
        );
        let unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"username":"a","password":"b"}"#);
        assert!(matches!(
            Credentials::from_registry_auth_header(&unpadded).unwrap(),
            Credentials::Basic { .. }
        ));
    }

    #[test]
    fn x_registry_auth_empty_token_and_garbage() {
        assert_eq!(
            Credentials::from_registry_auth_header("").unwrap(),
            Credentials::Anonymous
        );
        assert_eq!(
            Credentials::from_registry_auth_header(&b64url("{}")).unwrap(),
            Credentials::Anonymous
        );
        assert_eq!(
            Credentials::from_registry_auth_header(&b64url(r#"{"registrytoken":"tok"}"#)).unwrap(),
            Credentials::Bearer("tok".into())
        );
        assert!(Credentials::from_registry_auth_header("!!!").is_err());
        assert!(Credentials::from_registry_auth_header(&b64url("[]")).is_err());
        assert!(
            Credentials::from_registry_auth_header(&b64url(r#"{"identitytoken":"x"}"#)).is_err()
        );
    }

    #[test]
    fn docker_config_entries_by_registry() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:pw:with:colons");
        let json = format!(
            r#"{{"auths":{{"198.18.0.1:5000":{{"auth":"{auth}"}},
                "https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
            base64::engine::general_purpose::STANDARD.encode("hub:hubpw")
        );
        assert_eq!(
            Credentials::from_docker_config(json.as_bytes(), "198.18.0.1:5000").unwrap(),
            Credentials::Basic {
                username: "bob".into(),
                password: "pw:with:colons".into()
            }
        );
        assert_eq!(
            Credentials::from_docker_config(json.as_bytes(), "docker.io").unwrap(),
            Credentials::Basic {
                username: "hub".into(),
                password: "hubpw".into()
            }
        );
        assert_eq!(
            Credentials::from_docker_config(json.as_bytes(), "other:5000").unwrap(),
            Credentials::Anonymous
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::Bearer("tok".into())).contains("tok"));
    }
}
