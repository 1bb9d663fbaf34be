//! Loading a project: each file parsed and interpolated, the files merged
//! in order, the merged tree read into the typed [`Project`], and every
//! reference from a service to a network, volume, secret or config checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::dotenv::Environment;
use super::error::{ComposeError, ResourceKind, Subject, Warning};
use super::interpolate::interpolate_file;
use super::merge::{drop_resets, merge_files};
use super::model::{MountKind, Project};
use super::mounts::HostPaths;
use super::path::KeyPath;
use super::read::{invalid, mapping, string, Cx};
use super::service::{service, ServiceContext};
use super::source::FileReader;
use super::top_level::{configs, networks, secrets, volumes, ObjectContext};
use super::yaml::{self, Node};

/// One compose file: the name it is reported under and its text.
#[derive(Clone, Debug)]
pub struct ComposeFile {
    pub name: String,
    pub content: String,
}

/// What loading needs besides the files.
pub struct LoadOptions<'a> {
    /// Where relative paths start: the directory of the first file, as
    /// Compose does for every file of a project.
    pub working_dir: &'a Path,
    /// The variables to interpolate and to resolve `environment:` keys
    /// given without a value (the caller's environment, then `.env`).
    pub env: &'a Environment,
    /// Reads the `env_file:`s the services name.
    pub files: &'a dyn FileReader,
}

/// A loaded project and what was read but not acted on.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub project: Project,
    pub warnings: Vec<Warning>,
}

/// Loads and merges `files`, in order.
pub fn load(files: &[ComposeFile], options: &LoadOptions) -> Result<Loaded, ComposeError> {
    let mut warnings = Vec::new();
    let mut warned = BTreeSet::new();
    let mut merged: Option<Node> = None;
    for file in files {
        let name: Arc<str> = Arc::from(file.name.as_str());
        let mut root = yaml::parse(&name, &file.content)?;
        check_version(&root)?;
        interpolate_file(&mut root, options.env, &mut warnings, &mut warned)?;
        merged = Some(match merged {
            None => root,
            Some(base) => merge_files(base, root),
        });
    }
    let mut root = merged.ok_or(ComposeError::NoFiles)?;
    drop_resets(&mut root);
    let project = read_project(&root, options, &mut warnings)?;
    Ok(Loaded { project, warnings })
}

/// Loads the compose files at `paths` through `files` (the real file
/// system: [`super::DiskFiles`]); relative paths in them start at the
/// directory of the first.
pub fn load_paths(
    paths: &[PathBuf],
    env: &Environment,
    files: &dyn FileReader,
) -> Result<Loaded, ComposeError> {
    let mut compose_files = Vec::new();
    for path in paths {
        let content = files.read(path)?.ok_or_else(|| ComposeError::Read {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        })?;
        compose_files.push(ComposeFile {
            name: path.display().to_string(),
            content,
        });
    }
    let working_dir = paths
        .first()
        .and_then(|first| first.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    load(
        &compose_files,
        &LoadOptions {
            working_dir: &working_dir,
            env,
            files,
        },
    )
}

/// Refuses the version 1 format; 2.x and 3.x are read as the Compose
/// Specification reads them.
fn check_version(root: &Node) -> Result<(), ComposeError> {
    let Some(node) = root.as_map().and_then(|map| map.get("version")) else {
        return Ok(());
    };
    let version = string(node, &KeyPath::root().key("version"))?.unwrap_or_default();
    let major = version.split('.').next().unwrap_or_default();
    if matches!(major, "2" | "3") || version.is_empty() {
        Ok(())
    } else {
        Err(ComposeError::UnsupportedVersion {
            at: node.at.clone(),
            version,
        })
    }
}

/// Service names as Compose accepts them.
fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn read_project(
    root: &Node,
    options: &LoadOptions,
    warnings: &mut Vec<Warning>,
) -> Result<Project, ComposeError> {
    let mut project = Project::default();
    let Some(map) = root.as_map() else {
        return Ok(project);
    };
    let paths = HostPaths {
        working_dir: options.working_dir,
        home: options.env.get("HOME"),
    };
    let objects = ObjectContext {
        paths,
        env: options.env,
    };
    for (key, value) in map.iter() {
        let path = KeyPath::root().key(key);
        match key {
            "version" | "services" => {}
            "name" => project.name = string(value, &path)?,
            "networks" => project.networks = networks(value, &path, warnings)?,
            "volumes" => project.volumes = volumes(value, &path, warnings)?,
            "secrets" => project.secrets = secrets(value, &path, objects, warnings)?,
            "configs" => project.configs = configs(value, &path, objects, warnings)?,
            _ => Cx {
                subject: Subject::File,
                warnings,
            }
            .other(
                key,
                value,
                &path,
                &[
                    ("include", Some("merge the files with several -c instead")),
                    ("models", None),
                ],
            ),
        }
    }
    let context = ServiceContext {
        paths,
        env: options.env,
        files: options.files,
    };
    let services_path = KeyPath::root().key("services");
    let services_node = map.get("services");
    if let Some(services) = services_node
        .map(|node| mapping(node, &services_path))
        .transpose()?
        .flatten()
    {
        for (name, node) in services.iter() {
            let path = services_path.key(name).subject();
            if !valid_service_name(name) {
                return Err(invalid(
                    node,
                    &path,
                    name,
                    "a service name of letters, digits, `.`, `_` or `-`",
                ));
            }
            let mut cx = Cx {
                subject: Subject::Service(name.to_string()),
                warnings,
            };
            let read = service(node, &path, &context, &mut cx)?;
            project.services.insert(name.to_string(), read);
        }
        check_references(&project, services)?;
    }
    Ok(project)
}

/// Every network, named volume, secret and config a service uses must be
/// declared at the top level (the `default` network is implicit).
fn check_references(project: &Project, nodes: &super::yaml::Mapping) -> Result<(), ComposeError> {
    for (name, service) in &project.services {
        let Some(node) = nodes.get(name) else {
            continue;
        };
        let at_key = |key: &str| {
            node.as_map()
                .and_then(|map| map.get(key))
                .map(|n| n.at.clone())
                .unwrap_or_else(|| node.at.clone())
        };
        let undefined = |key: &str, kind, reference: &str| ComposeError::Undefined {
            at: at_key(key),
            service: name.clone(),
            kind,
            name: reference.to_string(),
        };
        for network in service.networks.keys() {
            if network != "default" && !project.networks.contains_key(network) {
                return Err(undefined("networks", ResourceKind::Network, network));
            }
        }
        for mount in &service.mounts {
            if let MountKind::Volume {
                source: Some(volume),
                ..
            } = &mount.kind
            {
                if !project.volumes.contains_key(volume) {
                    return Err(undefined("volumes", ResourceKind::Volume, volume));
                }
            }
        }
        let declared: [(&str, ResourceKind, &BTreeMap<_, _>, &Vec<_>); 2] = [
            (
                "secrets",
                ResourceKind::Secret,
                &project.secrets,
                &service.secrets,
            ),
            (
                "configs",
                ResourceKind::Config,
                &project.configs,
                &service.configs,
            ),
        ];
        for (key, kind, declared, used) in declared {
            for reference in used {
                if !declared.contains_key(&reference.source) {
                    return Err(undefined(key, kind, &reference.source));
                }
            }
        }
    }
    Ok(())
}
