//! The image configuration (Docker's and OCI's JSON are the same shape):
//! what a container of the image runs by default (Entrypoint, Cmd, Env,
//! WorkingDir, User, StopSignal, ExposedPorts, Healthcheck) and the
//! diff_ids of its layers. Unknown fields are ignored; missing ones are
//! empty.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::ImageError;

/// The largest config accepted.
pub const MAX_CONFIG: u64 = 8 << 20;

/// The whole config document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default)]
    pub config: RunConfig,
    #[serde(default)]
    pub rootfs: RootFs,
}

/// The `config` object: the defaults of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub entrypoint: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<ImageHealthcheck>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub volumes: BTreeMap<String, serde_json::Value>,
}

/// Docker's HEALTHCHECK: `Test` is `["NONE"]`, `["CMD", args...]` or
/// `["CMD-SHELL", command]`; durations in nanoseconds, 0 = the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageHealthcheck {
    #[serde(default, deserialize_with = "null_as_default")]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: i64,
    #[serde(default)]
    pub timeout: i64,
    #[serde(default)]
    pub start_period: i64,
    #[serde(default)]
    pub start_interval: i64,
    #[serde(default)]
    pub retries: i64,
}

impl ImageHealthcheck {
    pub fn interval(&self) -> Option<Duration> {
        positive_ns(self.interval)
    }
    pub fn timeout(&self) -> Option<Duration> {
        positive_ns(self.timeout)
    }
    pub fn start_period(&self) -> Option<Duration> {
        positive_ns(self.start_period)
    }
}

fn positive_ns(ns: i64) -> Option<Duration> {
    u64::try_from(ns)
        .ok()
        .filter(|n| *n > 0)
        .map(Duration::from_nanos)
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub diff_ids: Vec<String>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl ImageConfig {
    /// Parses a config blob and checks its diff_ids.
    pub fn parse(bytes: &[u8], what: &str) -> Result<ImageConfig, ImageError> {
        if bytes.len() as u64 > MAX_CONFIG {
            return Err(ImageError::TooLarge {
                what: what.into(),
                limit: MAX_CONFIG,
            });
        }
        let config: ImageConfig =
            serde_json::from_slice(bytes).map_err(|e| ImageError::malformed(what, e))?;
        config.diff_ids()?;
        Ok(config)
    }

    /// The layers' uncompressed digests, bottom first.
    pub fn diff_ids(&self) -> Result<Vec<Digest>, ImageError> {
        self.rootfs
            .diff_ids
            .iter()
            .map(|d| Digest::parse(d))
            .collect()
    }

    /// The exposed ports, `80/tcp` style (a bare number is tcp).
    pub fn exposed_ports(&self) -> Vec<String> {
        self.config
            .exposed_ports
            .keys()
            .map(|p| {
                if p.contains('/') {
                    p.clone()
                } else {
                    format!("{p}/tcp")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_with_nulls_and_healthcheck_parses() {
        let doc = r#"{
          "architecture":"amd64","os":"linux",
          "config":{"User":"nginx:nginx","Env":["PATH=/bin","A=1"],"Entrypoint":null,
            "Cmd":["nginx","-g","daemon off;"],"WorkingDir":"/srv","ExposedPorts":{"80/tcp":{},"53":{}},
            "StopSignal":"SIGQUIT","Labels":null,
            "Healthcheck":{"Test":["CMD-SHELL","wget -q localhost"],"Interval":5000000000,"Retries":3}},
          "rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]},
          "history":[{"created_by":"x"}]}"#;
        let c = ImageConfig::parse(doc.as_bytes(), "cfg").unwrap();
        assert_eq!(c.config.user, "nginx:nginx");
        assert!(c.config.entrypoint.is_empty());
        assert_eq!(c.config.cmd, vec!["nginx", "-g", "daemon off;"]);
        assert_eq!(c.config.working_dir, "/srv");
        assert_eq!(c.exposed_ports(), vec!["53/tcp", "80/tcp"]);
        assert_eq!(c.config.stop_signal, "SIGQUIT");
        let hc = c.config.healthcheck.clone().unwrap();
        assert_eq!(hc.interval(), Some(Duration::from_secs(5)));
        assert_eq!(hc.timeout(), None);
        assert_eq!(hc.retries, 3);
        assert_eq!(c.diff_ids().unwrap().len(), 1);
    }

    #[test]
    fn bad_diff_ids_and_garbage_are_refused() {
        let doc = r#"{"rootfs":{"type":"layers","diff_ids":["sha256:zz"]}}"#;
        assert!(ImageConfig::parse(doc.as_bytes(), "cfg").is_err());
        assert!(ImageConfig::parse(b"[1,2]", "cfg").is_err());
        let empty = ImageConfig::parse(b"{}", "cfg").unwrap();
        assert!(empty.diff_ids().unwrap().is_empty());
    }
}
