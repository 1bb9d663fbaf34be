//! The container part of a task spec: the image a service's tasks run and
//! Docker's options for it (`service create [OPTIONS] IMAGE [COMMAND]
//! [ARG...]`). A task spec without one runs a host command (`--runtime
//! process`). The node applies these over the image's config by Docker's
//! rules; nothing here reads an image.

use serde::{Deserialize, Serialize};

use super::ServiceSpecError;

/// What a container task runs, beyond the task spec's `command` (which,
/// for a container, is Docker's `Command`: it replaces the image's
/// Entrypoint; empty keeps it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// `nginx:1.25`, `registry:5000/web@sha256:...`: managers pin a tag to
    /// its digest when the registry answers.
    pub image: String,
    /// Docker's `Args` (`IMAGE COMMAND ARG...`): they replace the image's
    /// Cmd; empty keeps it.
    #[serde(default)]
    pub args: Vec<String>,
    /// The container's hostname; empty: the task id's first 12 characters.
    #[serde(default)]
    pub hostname: String,
    /// `name[:group]` or `uid[:gid]`; empty: the image's User.
    #[serde(default)]
    pub user: String,
    /// Empty: the image's WorkingDir, else `/`.
    #[serde(default)]
    pub workdir: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// Run an init as PID 1 that forwards signals and reaps zombies.
    #[serde(default)]
    pub init: bool,
    /// Empty: the image's StopSignal, else SIGTERM.
    #[serde(default)]
    pub stop_signal: String,
    /// How long a stopping task has after its stop signal before SIGKILL;
    /// `None`: 10 s, Docker's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period_ms: Option<u64>,
    /// The most processes a task may have; 0: no limit.
    #[serde(default)]
    pub pids_limit: u64,
    /// `None`: the image's HEALTHCHECK.
    #[serde(default)]
    pub healthcheck: Option<HealthSpec>,
    /// `--mount`s, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
    /// Extra `/etc/hosts` lines, Docker's `IP HOSTNAME [ALIAS...]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// `--with-registry-auth`: the client's credentials for the image's
    /// registry. Kept in the store (sealed at rest like all of it), handed
    /// only to the nodes that run the tasks, used for their pulls; never
    /// shown (views drop it) nor logged.
    #[serde(default, skip_serializing_if = "RegistryAuth::is_empty")]
    pub registry_auth: RegistryAuth,
}

/// What a `--mount` mounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A path of the node (it must exist there).
    Bind,
    /// A named local volume of the node, created on first use (an empty
    /// source: an anonymous one per task).
    #[default]
    Volume,
    /// A memory filesystem per task.
    Tmpfs,
}

/// One `--mount type=bind|volume|tmpfs,source=...,target=...`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    #[serde(rename = "type")]
    pub kind: MountKind,
    /// A bind's absolute host path, or a volume's name.
    #[serde(default)]
    pub source: String,
    /// Where it shows in the container (absolute).
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
    /// tmpfs bytes; 0: the kernel's default (half the RAM).
    #[serde(default)]
    pub tmpfs_size: u64,
    /// tmpfs permission bits; `None`: 1777.
    #[serde(default)]
    pub tmpfs_mode: Option<u32>,
    /// A volume's `VolumeOptions.Labels` (`docker stack deploy` puts the
    /// stack's namespace there), kept in the spec as Docker shows it;
    /// shoal's local volumes themselves carry no labels.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub volume_labels: std::collections::BTreeMap<String, String>,
}

impl MountSpec {
    fn validate(&self) -> Result<(), ServiceSpecError> {
        let bad = |reason: &str| {
            Err(ServiceSpecError::Mount {
                target: self.target.clone(),
                reason: reason.to_string(),
            })
        };
        if !self.target.starts_with('/') || self.target.split('/').any(|c| c == "..") {
            return bad("the target must be an absolute path without `..`");
        }
        match self.kind {
            MountKind::Bind if !self.source.starts_with('/') => {
                bad("a bind's source must be an absolute path on the node")
            }
            MountKind::Volume
                if !self.source.is_empty()
                    && !self.source.bytes().enumerate().all(|(i, b)| {
                        b.is_ascii_alphanumeric() || (i > 0 && matches!(b, b'_' | b'.' | b'-'))
                    }) =>
            {
                bad("a volume name is letters, digits, `_`, `.` and `-`, starting with a letter or digit")
            }
            MountKind::Tmpfs if !self.source.is_empty() => bad("a tmpfs has no source"),
            MountKind::Tmpfs if self.tmpfs_mode.is_some_and(|m| m > 0o7777) => {
                bad("tmpfs-mode is octal permission bits, at most 7777")
            }
            _ => Ok(()),
        }
    }
}

/// Registry credentials as Docker carries them (`X-Registry-Auth`: base64url
/// JSON of `{"username", "password", "serveraddress"}`), opaque to the
/// managers. Its `Debug` never prints them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegistryAuth(pub String);

impl RegistryAuth {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            f.write_str("RegistryAuth(none)")
        } else {
            f.write_str("RegistryAuth(<redacted>)")
        }
    }
}

/// `--health-*` and `--no-healthcheck`: what the service sets; the rest
/// comes from the image's HEALTHCHECK, then Docker's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "cmd"]`; empty: the
    /// image's test.
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval_ms: Option<u64>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub start_period_ms: Option<u64>,
    #[serde(default)]
    pub retries: Option<u32>,
}

impl HealthSpec {
    /// True for `--no-healthcheck`.
    pub fn disabled(&self) -> bool {
        self.test.first().is_some_and(|t| t == "NONE")
    }
}

/// One `/etc/hosts` line of [`ContainerSpec::hosts`]: its address and its
/// names (at least one).
pub fn host_entry(line: &str) -> Option<(std::net::IpAddr, Vec<&str>)> {
    let mut words = line.split_whitespace();
    let ip = words.next()?.parse().ok()?;
    let names: Vec<&str> = words.collect();
    let valid = |n: &&str| {
        n.len() <= 253
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    };
    (!names.is_empty() && names.iter().all(valid)).then_some((ip, names))
}

impl ContainerSpec {
    /// An update that carries no credentials keeps the ones the service
    /// had (the CLI edits what `inspect` shows, which never has them), as
    /// Docker does.
    pub fn keep_registry_auth(&mut self, previous: Option<&ContainerSpec>) {
        if self.registry_auth.is_empty() {
            if let Some(previous) = previous {
                self.registry_auth = previous.registry_auth.clone();
            }
        }
    }

    /// The spec as users see it: without the registry credentials.
    pub fn shown(&self) -> ContainerSpec {
        ContainerSpec {
            registry_auth: RegistryAuth::default(),
            ..self.clone()
        }
    }

    pub(super) fn validate(&self) -> Result<(), ServiceSpecError> {
        let image = self.image.trim();
        if image.is_empty() || image != self.image || image.contains(char::is_whitespace) {
            return Err(ServiceSpecError::Image(self.image.clone()));
        }
        if !self.hostname.is_empty() {
            super::hostname::validate(&self.hostname)?;
        }
        for mount in &self.mounts {
            mount.validate()?;
        }
        if let Some(bad) = self.hosts.iter().find(|h| host_entry(h).is_none()) {
            return Err(ServiceSpecError::HostEntry(bad.clone()));
        }
        if let Some(test) = self.healthcheck.as_ref().and_then(|h| h.test.first()) {
            if !matches!(test.as_str(), "NONE" | "CMD" | "CMD-SHELL") {
                return Err(ServiceSpecError::HealthTest(test.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(image: &str) -> ContainerSpec {
        ContainerSpec {
            image: image.into(),
            ..ContainerSpec::default()
        }
    }

    #[test]
    fn images_hostnames_and_health_tests_are_checked() {
        assert_eq!(spec("nginx:1.25").validate(), Ok(()));
        assert!(matches!(
            spec("").validate(),
            Err(ServiceSpecError::Image(_))
        ));
        assert!(matches!(
            spec("a b").validate(),
            Err(ServiceSpecError::Image(_))
        ));
        let mut s = spec("nginx");
        s.hostname = "web/1".into();
        assert!(matches!(s.validate(), Err(ServiceSpecError::Hostname(_))));
        s.hostname = "web-1".into();
        s.healthcheck = Some(HealthSpec {
            test: vec!["CURL".into()],
            ..HealthSpec::default()
        });
        assert!(matches!(s.validate(), Err(ServiceSpecError::HealthTest(_))));
    }

    #[test]
    fn mounts_are_checked() {
        let mut s = spec("busybox");
        let ok = [
            MountSpec {
                kind: MountKind::Bind,
                source: "/srv/www".into(),
                target: "/www".into(),
                ..MountSpec::default()
            },
            MountSpec {
                kind: MountKind::Volume,
                source: "data-1".into(),
                target: "/data".into(),
                ..MountSpec::default()
            },
            MountSpec {
                kind: MountKind::Tmpfs,
                target: "/scratch".into(),
                tmpfs_mode: Some(0o1770),
                ..MountSpec::default()
            },
        ];
        s.mounts = ok.to_vec();
        assert_eq!(s.validate(), Ok(()));
        for bad in [
            MountSpec {
                kind: MountKind::Bind,
                source: "relative".into(),
                target: "/x".into(),
                ..MountSpec::default()
            },
            MountSpec {
                kind: MountKind::Volume,
                source: "../up".into(),
                target: "/x".into(),
                ..MountSpec::default()
            },
            MountSpec {
                kind: MountKind::Tmpfs,
                target: "x".into(),
                ..MountSpec::default()
            },
            MountSpec {
                kind: MountKind::Tmpfs,
                source: "s".into(),
                target: "/x".into(),
                ..MountSpec::default()
            },
        ] {
            s.mounts = vec![bad.clone()];
            assert!(
                matches!(s.validate(), Err(ServiceSpecError::Mount { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn registry_auth_is_kept_by_updates_hidden_from_views_and_debug() {
        let mut stored = spec("r:5000/web:1");
        stored.registry_auth = RegistryAuth("c2VjcmV0".into());
        assert!(!format!("{stored:?}").contains("c2VjcmV0"));
        let shown = stored.shown();
        assert!(shown.registry_auth.is_empty());
        assert!(!serde_json::to_string(&shown)
            .unwrap()
            .contains("registry_auth"));
        let mut update = shown.clone();
        update.image = "r:5000/web:2".into();
        update.keep_registry_auth(Some(&stored));
        assert_eq!(update.registry_auth, stored.registry_auth);
        // New credentials replace the old.
        let mut fresh = spec("r:5000/web:3");
        fresh.registry_auth = RegistryAuth("bmV3".into());
        fresh.keep_registry_auth(Some(&stored));
        assert_eq!(fresh.registry_auth.0, "bmV3");
    }

    #[test]
    fn an_old_spec_without_the_new_fields_still_reads() {
        let read: ContainerSpec = serde_json::from_str(r#"{"image":"busybox"}"#).unwrap();
        assert_eq!(read, spec("busybox"));
        assert!(HealthSpec {
            test: vec!["NONE".into()],
            ..HealthSpec::default()
        }
        .disabled());
    }
}
