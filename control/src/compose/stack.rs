//! A project named as a stack, the way `docker stack deploy` names it:
//! services `NAME_web`, the `default` network as `NAME_default` (only when
//! a service uses it), networks, volumes, secrets and configs namespaced
//! unless external or given a `name:`, and the labels
//! `com.docker.stack.namespace=NAME` (and `com.docker.stack.image` on
//! services). Plain values, for the deploy step to turn into requests.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::ComposeError;
use super::model::{
    FileObject, FileReference, Ipam, Mount, MountKind, Network, ObjectSource, Project, Service,
    Volume,
};

/// The label every object of a stack carries, with the stack's name.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";
/// The label on a stack's services with the image the file names.
pub const IMAGE_LABEL: &str = "com.docker.stack.image";
/// The network of services that name none.
pub const DEFAULT_NETWORK: &str = "default";
/// The driver of a stack's networks when the file names none.
pub const DEFAULT_NETWORK_DRIVER: &str = "overlay";
/// The longest service name Swarm accepts.
pub const MAX_SERVICE_NAME: usize = 63;
/// The mode of a secret or config file when the file gives none.
pub const DEFAULT_FILE_MODE: u32 = 0o444;

/// Everything a stack deploy creates or uses, named.
#[derive(Clone, Debug, PartialEq)]
pub struct Stack {
    pub namespace: String,
    /// The networks services use (external ones too, to check they exist).
    pub networks: Vec<StackNetwork>,
    /// The named volumes services mount.
    pub volumes: Vec<StackVolume>,
    /// Every secret of the file (Docker creates them all, used or not).
    pub secrets: Vec<StackObject>,
    pub configs: Vec<StackObject>,
    pub services: Vec<StackService>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackNetwork {
    /// The key in the file (`default` for the implicit one).
    pub key: String,
    pub name: String,
    pub external: bool,
    pub driver: String,
    pub driver_opts: BTreeMap<String, String>,
    pub ipam: Option<Ipam>,
    pub attachable: bool,
    pub internal: bool,
    pub enable_ipv6: Option<bool>,
    /// Empty for an external network (the stack does not own it).
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackVolume {
    pub key: String,
    pub name: String,
    pub external: bool,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// A secret or config of the stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackObject {
    pub key: String,
    pub name: String,
    /// `External`: it must exist; nothing is created.
    pub source: ObjectSource,
    pub labels: BTreeMap<String, String>,
}

/// A service's attachment to a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackAttachment {
    /// The network's real name (stack deploy sends names, not ids).
    pub target: String,
    /// The file's aliases, then the service's short name.
    pub aliases: Vec<String>,
    pub driver_opts: BTreeMap<String, String>,
}

/// A service's use of a secret or config, by the object's real name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackFileReference {
    pub name: String,
    /// The file name in the task: the target, else the source key.
    pub file_name: String,
    pub uid: String,
    pub gid: String,
    pub mode: u32,
}

/// A mount with the real volume name, and how to create a named volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackMount {
    pub mount: Mount,
    /// For a named volume the stack owns: its labels and driver.
    pub volume: Option<StackVolume>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StackService {
    /// The key in the file.
    pub key: String,
    /// `NAMESPACE_key`.
    pub name: String,
    pub image: String,
    /// `deploy.labels`, the namespace and the image.
    pub labels: BTreeMap<String, String>,
    /// `labels`, and the namespace.
    pub container_labels: BTreeMap<String, String>,
    /// Sorted by target.
    pub networks: Vec<StackAttachment>,
    pub mounts: Vec<StackMount>,
    /// Sorted by name.
    pub secrets: Vec<StackFileReference>,
    pub configs: Vec<StackFileReference>,
    /// The service as the file says, for everything not named above.
    pub spec: Service,
}

/// Checks a stack name: letters, digits, `-` and `_`, starting with a
/// letter or digit (the names of its objects start with it).
pub fn check_stack_name(name: &str) -> Result<(), ComposeError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ComposeError::InvalidStackName(name.to_string()))
    }
}

struct Namespace<'a>(&'a str);

impl Namespace<'_> {
    fn scope(&self, key: &str) -> String {
        format!("{}_{key}", self.0)
    }

    /// The real name of an object: its `name:`, else the key for an
    /// external object, else the namespaced key.
    fn name(&self, key: &str, name: &Option<String>, external: bool) -> String {
        match name {
            Some(name) => name.clone(),
            None if external => key.to_string(),
            None => self.scope(key),
        }
    }

    fn labels(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut labels = labels.clone();
        labels.insert(NAMESPACE_LABEL.to_string(), self.0.to_string());
        labels
    }
}

/// Names `project` as the stack `namespace`.
pub fn plan(namespace: &str, project: &Project) -> Result<Stack, ComposeError> {
    check_stack_name(namespace)?;
    let ns = Namespace(namespace);

    let networks: BTreeMap<String, StackNetwork> = used_networks(project)
        .into_iter()
        .map(|key| {
            let declared = project.networks.get(&key).cloned().unwrap_or_default();
            let network = stack_network(&ns, &key, &declared);
            (key, network)
        })
        .collect();
    let volumes: BTreeMap<String, StackVolume> = project
        .services
        .values()
        .flat_map(|service| &service.mounts)
        .filter_map(|mount| match &mount.kind {
            MountKind::Volume {
                source: Some(key), ..
            } => Some(key),
            _ => None,
        })
        .map(|key| {
            let declared = project.volumes.get(key).cloned().unwrap_or_default();
            (key.clone(), stack_volume(&ns, key, &declared))
        })
        .collect();
    let objects = |declared: &BTreeMap<String, FileObject>| -> BTreeMap<String, StackObject> {
        declared
            .iter()
            .map(|(key, object)| (key.clone(), stack_object(&ns, key, object)))
            .collect()
    };
    let secrets = objects(&project.secrets);
    let configs = objects(&project.configs);

    let mut services = Vec::new();
    for (key, service) in &project.services {
        let image = service.image.clone().ok_or_else(|| ComposeError::NoImage {
            service: key.clone(),
        })?;
        let name = ns.scope(key);
        if name.len() > MAX_SERVICE_NAME {
            return Err(ComposeError::NameTooLong {
                kind: "service",
                len: name.len(),
                name,
                max: MAX_SERVICE_NAME,
            });
        }
        let mut labels = ns.labels(&service.deploy.labels);
        labels.insert(IMAGE_LABEL.to_string(), image.clone());
        services.push(StackService {
            key: key.clone(),
            name,
            image,
            labels,
            container_labels: ns.labels(&service.labels),
            networks: attachments(key, service, &networks),
            mounts: service
                .mounts
                .iter()
                .map(|mount| stack_mount(mount, &volumes))
                .collect(),
            secrets: references(&service.secrets, &secrets),
            configs: references(&service.configs, &configs),
            spec: service.clone(),
        });
    }
    Ok(Stack {
        namespace: namespace.to_string(),
        networks: networks.into_values().collect(),
        volumes: volumes.into_values().collect(),
        secrets: secrets.into_values().collect(),
        configs: configs.into_values().collect(),
        services,
    })
}

/// The network keys services use; a service naming none uses `default`.
fn used_networks(project: &Project) -> Vec<String> {
    let mut used: Vec<String> = project
        .services
        .values()
        .flat_map(|service| {
            if service.networks.is_empty() {
                vec![DEFAULT_NETWORK.to_string()]
            } else {
                service.networks.keys().cloned().collect()
            }
        })
        .collect();
    used.sort();
    used.dedup();
    used
}

fn stack_network(ns: &Namespace, key: &str, declared: &Network) -> StackNetwork {
    StackNetwork {
        key: key.to_string(),
        name: ns.name(key, &declared.name, declared.external),
        external: declared.external,
        driver: declared
            .driver
            .clone()
            .unwrap_or_else(|| DEFAULT_NETWORK_DRIVER.to_string()),
        driver_opts: declared.driver_opts.clone(),
        ipam: declared.ipam.clone(),
        attachable: declared.attachable,
        internal: declared.internal,
        enable_ipv6: declared.enable_ipv6,
        labels: if declared.external {
            BTreeMap::new()
        } else {
            ns.labels(&declared.labels)
        },
    }
}

fn stack_volume(ns: &Namespace, key: &str, declared: &Volume) -> StackVolume {
    StackVolume {
        key: key.to_string(),
        name: ns.name(key, &declared.name, declared.external),
        external: declared.external,
        driver: declared.driver.clone(),
        driver_opts: declared.driver_opts.clone(),
        labels: if declared.external {
            BTreeMap::new()
        } else {
            ns.labels(&declared.labels)
        },
    }
}

fn stack_object(ns: &Namespace, key: &str, declared: &FileObject) -> StackObject {
    let external = declared.source == ObjectSource::External;
    StackObject {
        key: key.to_string(),
        name: ns.name(key, &declared.name, external),
        source: declared.source.clone(),
        labels: if external {
            BTreeMap::new()
        } else {
            ns.labels(&declared.labels)
        },
    }
}

fn attachments(
    key: &str,
    service: &Service,
    networks: &BTreeMap<String, StackNetwork>,
) -> Vec<StackAttachment> {
    let default = BTreeMap::from([(DEFAULT_NETWORK.to_string(), Default::default())]);
    let used = if service.networks.is_empty() {
        &default
    } else {
        &service.networks
    };
    let mut attachments: Vec<StackAttachment> = used
        .iter()
        .filter_map(|(network_key, options)| {
            let target = networks.get(network_key)?.name.clone();
            let mut aliases = options.aliases.clone();
            // Docker's predefined networks take no aliases.
            if !matches!(target.as_str(), "host" | "bridge" | "none") {
                aliases.push(key.to_string());
            }
            Some(StackAttachment {
                target,
                aliases,
                driver_opts: options.driver_opts.clone(),
            })
        })
        .collect();
    attachments.sort_by(|a, b| a.target.cmp(&b.target));
    attachments
}

fn stack_mount(mount: &Mount, volumes: &BTreeMap<String, StackVolume>) -> StackMount {
    let MountKind::Volume {
        source: Some(key),
        nocopy,
        subpath,
    } = &mount.kind
    else {
        return StackMount {
            mount: mount.clone(),
            volume: None,
        };
    };
    let Some(volume) = volumes.get(key) else {
        return StackMount {
            mount: mount.clone(),
            volume: None,
        };
    };
    StackMount {
        mount: Mount {
            target: mount.target.clone(),
            read_only: mount.read_only,
            kind: MountKind::Volume {
                source: Some(volume.name.clone()),
                nocopy: *nocopy,
                subpath: subpath.clone(),
            },
        },
        volume: (!volume.external).then(|| volume.clone()),
    }
}

fn references(
    used: &[FileReference],
    objects: &BTreeMap<String, StackObject>,
) -> Vec<StackFileReference> {
    let mut references: Vec<StackFileReference> = used
        .iter()
        .filter_map(|reference| {
            let object = objects.get(&reference.source)?;
            Some(StackFileReference {
                name: object.name.clone(),
                file_name: reference
                    .target
                    .clone()
                    .unwrap_or_else(|| reference.source.clone()),
                uid: reference.uid.clone().unwrap_or_else(|| "0".to_string()),
                gid: reference.gid.clone().unwrap_or_else(|| "0".to_string()),
                mode: reference.mode.unwrap_or(DEFAULT_FILE_MODE),
            })
        })
        .collect();
    references.sort_by(|a, b| a.name.cmp(&b.name));
    references
}

/// Where a secret's file is in a task: `/run/secrets/NAME` for a relative
/// file name.
pub fn secret_path(file_name: &str) -> PathBuf {
    if file_name.starts_with('/') {
        PathBuf::from(file_name)
    } else {
        PathBuf::from("/run/secrets").join(file_name)
    }
}

/// Where a config's file is in a task: `/NAME` for a relative file name.
pub fn config_path(file_name: &str) -> PathBuf {
    PathBuf::from("/").join(file_name)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::compose::{load, ComposeFile, Environment, LoadOptions, MemoryFiles};

    fn project(text: &str) -> Project {
        load(
            &[ComposeFile {
                name: "stack.yml".into(),
                content: text.into(),
            }],
            &LoadOptions {
                working_dir: Path::new("/srv/app"),
                env: &Environment::default(),
                files: &MemoryFiles::new(),
            },
        )
        .unwrap()
        .project
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SHOP: &str = "\
services:
  web:
    image: nginx
    labels: {tier: front}
    deploy: {labels: {owner: team-a}}
    networks:
      front: {aliases: [www]}
      outside:
    volumes: ['data:/data', 'shared:/shared', './static:/static']
    secrets: [db_pw, {source: cert, target: tls.pem, uid: '101', mode: 0400}]
    configs: [site]
  worker:
    image: worker:1
networks:
  front: {labels: {a: b}}
  outside: {external: true, name: proxy}
  unused:
volumes:
  data: {driver: local, driver_opts: {type: tmpfs}}
  shared: {external: true}
secrets:
  db_pw: {file: ./pw.txt}
  cert: {external: true}
  named: {file: ./x, name: global-secret}
configs:
  site: {content: hello, labels: {v: '1'}}
";

    #[test]
    fn names_are_namespaced_as_docker_does() {
        let stack = plan("shop", &project(SHOP)).unwrap();
        assert_eq!(stack.namespace, "shop");
        let ns = labels(&[(NAMESPACE_LABEL, "shop")]);

        let networks: Vec<(&str, &str, bool)> = stack
            .networks
            .iter()
            .map(|n| (n.key.as_str(), n.name.as_str(), n.external))
            .collect();
        // `unused` is not created; `default` is, because worker names no network.
        assert_eq!(
            networks,
            [
                ("default", "shop_default", false),
                ("front", "shop_front", false),
                ("outside", "proxy", true)
            ]
        );
        assert_eq!(stack.networks[0].driver, DEFAULT_NETWORK_DRIVER);
        assert_eq!(stack.networks[0].labels, ns);
        assert_eq!(
            stack.networks[1].labels,
            labels(&[("a", "b"), (NAMESPACE_LABEL, "shop")])
        );
        assert!(stack.networks[2].labels.is_empty());

        let volumes: Vec<(&str, &str)> = stack
            .volumes
            .iter()
            .map(|v| (v.key.as_str(), v.name.as_str()))
            .collect();
        assert_eq!(volumes, [("data", "shop_data"), ("shared", "shared")]);

        let secrets: Vec<(&str, &str)> = stack
            .secrets
            .iter()
            .map(|s| (s.key.as_str(), s.name.as_str()))
            .collect();
        assert_eq!(
            secrets,
            [
                ("cert", "cert"),
                ("db_pw", "shop_db_pw"),
                ("named", "global-secret")
            ]
        );
        assert_eq!(
            stack.secrets[1].source,
            ObjectSource::File("/srv/app/pw.txt".into())
        );
        assert_eq!(stack.secrets[1].labels, ns);
        assert!(stack.secrets[0].labels.is_empty());
        assert_eq!(stack.configs[0].name, "shop_site");
        assert_eq!(
            stack.configs[0].labels,
            labels(&[(NAMESPACE_LABEL, "shop"), ("v", "1")])
        );

        let web = &stack.services[0];
        assert_eq!(
            (web.key.as_str(), web.name.as_str(), web.image.as_str()),
            ("web", "shop_web", "nginx")
        );
        assert_eq!(
            web.labels,
            labels(&[
                ("owner", "team-a"),
                (NAMESPACE_LABEL, "shop"),
                (IMAGE_LABEL, "nginx")
            ])
        );
        assert_eq!(
            web.container_labels,
            labels(&[("tier", "front"), (NAMESPACE_LABEL, "shop")])
        );
        let attachments: Vec<(&str, Vec<&str>)> = web
            .networks
            .iter()
            .map(|a| {
                (
                    a.target.as_str(),
                    a.aliases.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            attachments,
            [("proxy", vec!["web"]), ("shop_front", vec!["www", "web"])]
        );

        assert!(
            matches!(&web.mounts[0].mount.kind, MountKind::Volume { source: Some(s), .. } if s == "shop_data")
        );
        let owned = web.mounts[0].volume.as_ref().unwrap();
        assert_eq!(owned.driver.as_deref(), Some("local"));
        assert_eq!(owned.labels, ns);
        assert!(
            matches!(&web.mounts[1].mount.kind, MountKind::Volume { source: Some(s), .. } if s == "shared")
        );
        assert!(web.mounts[1].volume.is_none());
        assert!(matches!(&web.mounts[2].mount.kind, MountKind::Bind { .. }));

        assert_eq!(
            web.secrets,
            vec![
                StackFileReference {
                    name: "cert".into(),
                    file_name: "tls.pem".into(),
                    uid: "101".into(),
                    gid: "0".into(),
                    mode: 0o400
                },
                StackFileReference {
                    name: "shop_db_pw".into(),
                    file_name: "db_pw".into(),
                    uid: "0".into(),
                    gid: "0".into(),
                    mode: DEFAULT_FILE_MODE
                },
            ]
        );
        assert_eq!(web.configs[0].name, "shop_site");
        assert_eq!(secret_path("tls.pem"), Path::new("/run/secrets/tls.pem"));
        assert_eq!(secret_path("/etc/x"), Path::new("/etc/x"));
        assert_eq!(config_path("site"), Path::new("/site"));

        let worker = &stack.services[1];
        assert_eq!(worker.name, "shop_worker");
        assert_eq!(worker.networks.len(), 1);
        assert_eq!(worker.networks[0].target, "shop_default");
        assert_eq!(worker.networks[0].aliases, ["worker"]);
    }

    #[test]
    fn the_default_network_is_made_only_when_used_and_can_be_redefined() {
        let stack = plan(
            "app",
            &project("services:\n  a:\n    image: x\n    networks: [n]\nnetworks:\n  n:\n"),
        )
        .unwrap();
        assert_eq!(
            stack
                .networks
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>(),
            ["app_n"]
        );

        let stack = plan(
            "app",
            &project("services:\n  a:\n    image: x\nnetworks:\n  default: {external: true, name: host}\n"),
        )
        .unwrap();
        assert_eq!(stack.networks[0].name, "host");
        assert!(stack.networks[0].external);
        // Docker's predefined networks take no aliases.
        assert!(stack.services[0].networks[0].aliases.is_empty());

        let stack = plan(
            "app",
            &project("services:\n  a:\n    image: x\nnetworks:\n  default: {driver: overlay, attachable: true}\n"),
        )
        .unwrap();
        assert_eq!(stack.networks[0].name, "app_default");
        assert!(stack.networks[0].attachable);
    }

    #[test]
    fn bad_names_and_missing_images_are_refused() {
        let ok = project("services:\n  a:\n    image: x\n");
        for bad in ["", "-app", "my app", "app.v2", "app/x"] {
            assert!(
                matches!(plan(bad, &ok), Err(ComposeError::InvalidStackName(_))),
                "{bad}"
            );
        }
        plan("App_2-b", &ok).unwrap();
        let err = plan("app", &project("services:\n  a:\n    build: .\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service a has no image: shoal does not build images; build and push it, then set `image:`"
        );
        let long = "s".repeat(60);
        let err = plan(
            "app",
            &project(&format!("services:\n  {long}:\n    image: x\n")),
        )
        .unwrap_err();
        assert!(
            matches!(err, ComposeError::NameTooLong { len: 64, .. }),
            "{err}"
        );
    }
}
