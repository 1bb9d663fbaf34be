//! Docker's `ContainerSpec`: what each task of a service runs. shoal fills
//! the image, command, arguments, environment, mounts, secrets, configs and
//! Docker's options of a container task (a host command's task shows its
//! command as `Args`); the fields shoal does not run (sysctls, ulimits,
//! DNS options...) are here so Docker's JSON parses and prints back whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{is_false, is_zero, Driver, Labels};

/// `TaskTemplate.ContainerSpec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The arguments (`service create IMAGE ARGS...`; shoal's command).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// `KEY=VALUE`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dir: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Privileges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(default, skip_serializing_if = "is_false", rename = "TTY")]
    pub tty: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub open_stdin: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// `IP hostname [aliases...]` lines for `/etc/hosts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "DNSConfig")]
    pub dns_config: Option<DnsConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<ConfigReference>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub isolation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sysctls: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capability_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capability_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
}

impl ContainerSpec {
    /// A shoal task spec's: a container's image and options, or a host
    /// command as `Args`.
    pub fn from_shoal(spec: &crate::objects::TaskSpec) -> Self {
        let Some(c) = &spec.container else {
            return ContainerSpec {
                args: spec.command.clone(),
                env: spec.env.clone(),
                secrets: super::payload_refs::secrets_from_shoal(&spec.secrets),
                configs: super::payload_refs::configs_from_shoal(&spec.configs),
                ..ContainerSpec::default()
            };
        };
        let nanos = |ms: Option<u64>| {
            ms.map_or(0, |ms| {
                i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
            })
        };
        ContainerSpec {
            image: c.image.clone(),
            command: spec.command.clone(),
            args: c.args.clone(),
            hostname: c.hostname.clone(),
            env: spec.env.clone(),
            dir: c.workdir.clone(),
            user: c.user.clone(),
            init: c.init.then_some(true),
            stop_signal: c.stop_signal.clone(),
            read_only: c.read_only,
            mounts: c.mounts.iter().map(Mount::from_shoal).collect(),
            stop_grace_period: c.stop_grace_period_ms.map(|ms| nanos(Some(ms))),
            healthcheck: c.healthcheck.as_ref().map(|h| HealthConfig {
                test: h.test.clone(),
                interval: nanos(h.interval_ms),
                timeout: nanos(h.timeout_ms),
                start_period: nanos(h.start_period_ms),
                retries: h.retries.map_or(0, i64::from),
            }),
            hosts: c.hosts.clone(),
            capability_add: c.cap_add.clone(),
            capability_drop: c.cap_drop.clone(),
            secrets: super::payload_refs::secrets_from_shoal(&spec.secrets),
            configs: super::payload_refs::configs_from_shoal(&spec.configs),
            ..ContainerSpec::default()
        }
    }
}

/// Windows credential specs and SELinux labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Privileges {
    #[serde(default)]
    pub credential_spec: Option<CredentialSpec>,
    #[serde(default, rename = "SELinuxContext")]
    pub selinux_context: Option<SeLinuxContext>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CredentialSpec {
    #[serde(default)]
    pub config: String,
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub registry: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SeLinuxContext {
    #[serde(default)]
    pub disable: bool,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub role: String,
    #[serde(default, rename = "Type")]
    pub kind: String,
    #[serde(default)]
    pub level: String,
}

/// `--mount`: a bind, volume or tmpfs mount.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    /// `bind`, `volume`, `tmpfs` or `npipe`.
    #[serde(default, skip_serializing_if = "String::is_empty", rename = "Type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub consistency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<BindOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<VolumeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
}

impl Mount {
    /// A shoal `--mount`.
    pub fn from_shoal(m: &crate::objects::MountSpec) -> Self {
        use crate::objects::MountKind;
        let tmpfs = (m.tmpfs_size != 0 || m.tmpfs_mode.is_some()).then(|| TmpfsOptions {
            size_bytes: i64::try_from(m.tmpfs_size).unwrap_or(i64::MAX),
            mode: m.tmpfs_mode.unwrap_or(0),
        });
        Mount {
            kind: match m.kind {
                MountKind::Bind => "bind",
                MountKind::Volume => "volume",
                MountKind::Tmpfs => "tmpfs",
            }
            .into(),
            source: m.source.clone(),
            target: m.target.clone(),
            read_only: m.read_only,
            volume_options: (!m.volume_labels.is_empty()).then(|| VolumeOptions {
                labels: Some(m.volume_labels.clone()),
                ..VolumeOptions::default()
            }),
            tmpfs_options: tmpfs,
            ..Mount::default()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BindOptions {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub propagation: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub non_recursive: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeOptions {
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_copy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_config: Option<Driver>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TmpfsOptions {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size_bytes: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mode: u32,
}

/// `--health-cmd` and friends; durations in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `[]` inherit, `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", cmd]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DnsConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// `--secret`: a secret mounted as a file in the task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecretReference {
    #[serde(default)]
    pub file: Option<SecretReferenceFileTarget>,
    #[serde(default, rename = "SecretID")]
    pub secret_id: String,
    #[serde(default)]
    pub secret_name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecretReferenceFileTarget {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "UID")]
    pub uid: String,
    #[serde(default, rename = "GID")]
    pub gid: String,
    #[serde(default)]
    pub mode: u32,
}

/// `--config`: a config mounted as a file (or used by the runtime).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<ConfigReferenceFileTarget>,
    /// Docker's empty `ConfigReferenceRuntimeTarget` (`{}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, rename = "ConfigID")]
    pub config_id: String,
    #[serde(default)]
    pub config_name: String,
}

/// The same file target as a secret's.
pub type ConfigReferenceFileTarget = SecretReferenceFileTarget;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub hard: i64,
    #[serde(default)]
    pub soft: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::samples::round_trip;

    /// A container spec using most of what `docker service create` sets.
    const FULL: &str = r#"{"Image":"nginx:1.25@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31","Labels":{"tier":"web"},"Command":["nginx"],"Args":["-g","daemon off;"],"Hostname":"{{.Service.Name}}-{{.Task.Slot}}","Env":["A=1","B=2"],"Dir":"/srv","User":"www-data","Groups":["adm"],"Privileges":{"CredentialSpec":null,"SELinuxContext":null},"Init":true,"StopSignal":"SIGQUIT","TTY":true,"OpenStdin":true,"ReadOnly":true,"Mounts":[{"Type":"volume","Source":"data","Target":"/data","VolumeOptions":{"NoCopy":true,"Labels":{"backup":"yes"},"DriverConfig":{"Name":"local"}}},{"Type":"bind","Source":"/etc/ssl","Target":"/ssl","ReadOnly":true,"BindOptions":{"Propagation":"rprivate"}},{"Type":"tmpfs","Target":"/tmp","TmpfsOptions":{"SizeBytes":67108864,"Mode":1023}}],"StopGracePeriod":10000000000,"Healthcheck":{"Test":["CMD-SHELL","curl -f http://localhost/ || exit 1"],"Interval":30000000000,"Timeout":5000000000,"StartPeriod":1000000000,"Retries":3},"Hosts":["10.0.0.9 db"],"DNSConfig":{"Nameservers":["10.0.0.2"],"Search":["example.org"],"Options":["ndots:2"]},"Secrets":[{"File":{"Name":"db_password","UID":"0","GID":"0","Mode":292},"SecretID":"7x2qv4fyfmwhvwkeqoicfsgk0","SecretName":"db_password"}],"Configs":[{"File":{"Name":"/etc/nginx.conf","UID":"0","GID":"0","Mode":292},"ConfigID":"q8zu0c2n3gjvmcnk2dqiwlpkn","ConfigName":"nginx_conf"},{"Runtime":{},"ConfigID":"cred","ConfigName":"cred_spec"}],"Isolation":"default","Sysctls":{"net.core.somaxconn":"1024"},"CapabilityAdd":["CAP_NET_ADMIN"],"CapabilityDrop":["CAP_MKNOD"],"Ulimits":[{"Name":"nofile","Hard":2048,"Soft":1024}]}"#;

    #[test]
    fn container_specs_round_trip_with_what_shoal_does_not_run_yet() {
        let spec: ContainerSpec = round_trip(FULL);
        assert_eq!(spec.mounts.len(), 3);
        assert_eq!(spec.secrets[0].file.as_ref().unwrap().mode, 0o444);
        assert_eq!(spec.healthcheck.unwrap().retries, 3);
        let minimal: ContainerSpec =
            round_trip(r#"{"Image":"busybox:latest","Args":["sleep","100"]}"#);
        assert_eq!(minimal.args, ["sleep", "100"]);
    }
}
