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
    // In the order of the files, then of the lines.
    let file_index = |warning: &Warning| {
        warning.at.as_ref().map(|at| {
            let index = files.iter().position(|file| *file.name == *at.file);
            (index, at.line, at.column)
        })
    };
    warnings.sort_by_key(file_index);
    Ok(Loaded { project, warnings })
}

/// Loads the compose files at `paths` through `files` (the real file
/// system: [`super::DiskFiles`]); relative paths in them start at the
/// directory of the first file.
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
    // Relative paths in the files start at the first file's directory,
    // made absolute against the current directory when given relative.
    let first = paths.first().ok_or(ComposeError::NoFiles)?;
    let first = std::path::absolute(first).map_err(|source| ComposeError::Read {
        path: first.clone(),
        source,
    })?;
    let working_dir = first.parent().map(Path::to_path_buf).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::compose::error::WarningKind;
    use crate::compose::model::{
        EndpointMode, ExtraHost, HealthTest, Mount, Port, Protocol, PublishMode, RestartCondition,
        ServiceMode,
    };
    use crate::compose::source::MemoryFiles;

    fn load_with(
        texts: &[&str],
        env: &Environment,
        files: &MemoryFiles,
    ) -> Result<Loaded, ComposeError> {
        let files_in = texts
            .iter()
            .enumerate()
            .map(|(i, text)| ComposeFile {
                name: if i == 0 {
                    "stack.yml".into()
                } else {
                    format!("override{i}.yml")
                },
                content: text.to_string(),
            })
            .collect::<Vec<_>>();
        load(
            &files_in,
            &LoadOptions {
                working_dir: Path::new("/srv/app"),
                env,
                files,
            },
        )
    }

    fn load_one(text: &str) -> Result<Loaded, ComposeError> {
        load_with(
            &[text],
            &Environment::from_vars([("HOME", "/home/me")]),
            &MemoryFiles::new(),
        )
    }

    fn warning_texts(loaded: &Loaded) -> Vec<String> {
        loaded.warnings.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn a_service_with_every_supported_key_loads() {
        let loaded = load_one(
            "\
services:
  web:
    image: nginx:1.25
    command: nginx -g 'daemon off;'
    entrypoint: [/docker-entrypoint.sh]
    environment: {A: '1', B: }
    ports: ['8080:80', {target: 443, published: 8443, mode: host}]
    networks: {front: {aliases: [www]}}
    volumes: ['data:/data', './conf:/etc/nginx/conf.d:ro']
    tmpfs: /run
    secrets: [cert]
    configs: [{source: site, target: /etc/site.conf, mode: 0440}]
    healthcheck: {test: [CMD, curl, -f, 'http://localhost'], interval: 10s, retries: 3}
    hostname: web
    user: '101:101'
    working_dir: /srv
    labels: {tier: front}
    stop_signal: SIGQUIT
    stop_grace_period: 1m30s
    init: true
    read_only: true
    cap_add: [NET_BIND_SERVICE]
    cap_drop: [ALL]
    extra_hosts: ['db.local:10.0.0.5', 'v6=[::1]']
    dns: 10.0.0.2
    dns_search: [corp.example]
    dns_opt: [ndots:2]
    tty: true
    stdin_open: true
    restart: on-failure:5
    deploy:
      mode: replicated
      replicas: 3
      endpoint_mode: vip
networks:
  front:
volumes:
  data:
secrets:
  cert: {file: ./cert.pem}
configs:
  site: {content: 'server {}'}
",
        )
        .unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", warning_texts(&loaded));
        let web = &loaded.project.services["web"];
        assert_eq!(web.image.as_deref(), Some("nginx:1.25"));
        assert_eq!(
            web.command,
            Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()])
        );
        assert_eq!(web.entrypoint, Some(vec!["/docker-entrypoint.sh".into()]));
        assert_eq!(web.environment["A"].as_deref(), Some("1"));
        assert_eq!(web.environment["B"], None);
        assert_eq!(
            web.ports,
            vec![
                Port {
                    target: 80,
                    published: Some(8080),
                    protocol: Protocol::Tcp,
                    mode: PublishMode::Ingress,
                    host_ip: None
                },
                Port {
                    target: 443,
                    published: Some(8443),
                    protocol: Protocol::Tcp,
                    mode: PublishMode::Host,
                    host_ip: None
                },
            ]
        );
        assert_eq!(web.networks["front"].aliases, ["www"]);
        assert_eq!(web.mounts.len(), 3);
        assert_eq!(
            web.mounts[1],
            Mount {
                target: "/etc/nginx/conf.d".into(),
                read_only: true,
                kind: MountKind::Bind {
                    source: "/srv/app/conf".into(),
                    propagation: None
                }
            }
        );
        assert!(matches!(web.mounts[2].kind, MountKind::Tmpfs { .. }));
        assert_eq!(web.secrets[0].source, "cert");
        assert_eq!(web.configs[0].mode, Some(0o440));
        let check = web.healthcheck.as_ref().unwrap();
        assert_eq!(
            check.test,
            HealthTest::Exec(vec!["curl".into(), "-f".into(), "http://localhost".into()])
        );
        assert_eq!(check.interval, Some(Duration::from_secs(10)));
        assert_eq!(web.hostname.as_deref(), Some("web"));
        assert_eq!(web.user.as_deref(), Some("101:101"));
        assert_eq!(web.working_dir.as_deref(), Some("/srv"));
        assert_eq!(web.labels["tier"], "front");
        assert_eq!(web.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(web.stop_grace_period, Some(Duration::from_secs(90)));
        assert_eq!(web.init, Some(true));
        assert!(web.read_only && web.tty && web.stdin_open);
        assert_eq!(web.cap_add, ["NET_BIND_SERVICE"]);
        assert_eq!(web.cap_drop, ["ALL"]);
        assert_eq!(
            web.extra_hosts,
            vec![
                ExtraHost {
                    hostname: "db.local".into(),
                    address: "10.0.0.5".into()
                },
                ExtraHost {
                    hostname: "v6".into(),
                    address: "::1".into()
                },
            ]
        );
        assert_eq!(web.dns, ["10.0.0.2"]);
        assert_eq!(web.dns_search, ["corp.example"]);
        assert_eq!(web.dns_options, ["ndots:2"]);
        assert_eq!(
            web.deploy.mode,
            ServiceMode::Replicated { replicas: Some(3) }
        );
        assert_eq!(web.deploy.endpoint_mode, Some(EndpointMode::Vip));
        let restart = web.deploy.restart_policy.unwrap();
        assert_eq!(restart.condition, Some(RestartCondition::OnFailure));
        assert_eq!(restart.max_attempts, Some(5));
    }

    #[test]
    fn every_key_shoal_does_not_act_on_is_named_in_a_warning() {
        let loaded = load_one(
            "\
version: '3.9'
x-defaults: &defaults
  image: nginx
include: [other.yml]
services:
  web:
    <<: *defaults
    build: .
    privileged: true
    devices: ['/dev/ttyUSB0:/dev/ttyUSB0']
    logging: {driver: syslog}
    sysctls: {net.core.somaxconn: 1024}
    ulimits: {nofile: 1024}
    depends_on: [db]
    imagee: typo
    x-mine: silently the file's own
    deploy:
      resources:
        reservations:
          devices: [{capabilities: [gpu]}]
      restart_policy: {condition: any}
    restart: always
  db:
    image: postgres
networks:
  default:
    driver: overlay
    mystery: 1
",
        )
        .unwrap();
        assert_eq!(
            warning_texts(&loaded),
            [
                "stack.yml:4: compose file: key \"include\" is not supported, ignored (merge the files with several -c instead)",
                "stack.yml:8: service web: key \"build\" is not supported, ignored (shoal does not build images: build and push it, then set image:)",
                "stack.yml:9: service web: key \"privileged\" is not supported, ignored (Swarm services cannot be privileged)",
                "stack.yml:10: service web: key \"devices\" is not supported, ignored",
                "stack.yml:11: service web: key \"logging\" is not supported, ignored (shoal keeps task logs itself)",
                "stack.yml:12: service web: key \"sysctls\" is not supported, ignored",
                "stack.yml:13: service web: key \"ulimits\" is not supported, ignored",
                "stack.yml:14: service web: key \"depends_on\" is not supported, ignored (Swarm starts services in any order; make them wait for each other)",
                "stack.yml:15: service web: unknown key \"imagee\", ignored",
                "stack.yml:20: service web: key \"deploy.resources.reservations.devices\" is not supported, ignored (shoal schedules no devices (GPUs))",
                "stack.yml:22: service web: restart: \"always\": deploy.restart_policy is set and wins over restart",
                "stack.yml:28: network default: unknown key \"mystery\", ignored",
            ]
        );
        // The merge key brought the image in.
        assert_eq!(
            loaded.project.services["web"].image.as_deref(),
            Some("nginx")
        );
        assert!(loaded.warnings.iter().all(|w| w.at.is_some()));
        assert!(
            matches!(&loaded.warnings[1].kind, WarningKind::Unsupported { key, .. } if key == "build")
        );
    }

    #[test]
    fn env_files_then_environment_then_the_callers_environment() {
        let files = MemoryFiles::new()
            .with(
                "/srv/app/common.env",
                "A=from-file\nB=from-file\nC\nTAG_REF=${TAG}\n",
            )
            .with("/srv/app/env/extra.env", "D=extra\n");
        let env = Environment::from_vars([("C", "from-shell"), ("TAG", "7"), ("E", "shell-e")]);
        let loaded = load_with(
            &["\
services:
  web:
    image: x
    env_file:
      - common.env
      - path: ./env/extra.env
      - path: ./absent.env
        required: false
    environment:
      B: from-environment
      E:
      F:
"],
            &env,
            &files,
        )
        .unwrap();
        let environment = &loaded.project.services["web"].environment;
        let get = |key: &str| environment.get(key).cloned().flatten();
        assert_eq!(get("A").as_deref(), Some("from-file"));
        assert_eq!(get("B").as_deref(), Some("from-environment"));
        assert_eq!(get("C").as_deref(), Some("from-shell"));
        assert_eq!(get("TAG_REF").as_deref(), Some("7"));
        assert_eq!(get("D").as_deref(), Some("extra"));
        assert_eq!(get("E").as_deref(), Some("shell-e"));
        assert!(environment.contains_key("F") && get("F").is_none());

        let err = load_with(
            &["services:\n  web:\n    image: x\n    env_file: missing.env\n"],
            &env,
            &files,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "stack.yml:4: service web: env_file `/srv/app/missing.env` does not exist (mark it `required: false` to skip it when missing)"
        );
    }

    #[test]
    fn references_to_undeclared_resources_are_errors() {
        for (text, expected) in [
            ("services:\n  web:\n    image: x\n    networks: [front]\n", "stack.yml:4: service web refers to undefined network `front`: declare it under the top-level `networks:` key"),
            ("services:\n  web:\n    image: x\n    volumes: ['data:/data']\n", "stack.yml:4: service web refers to undefined volume `data`: declare it under the top-level `volumes:` key"),
            ("services:\n  web:\n    image: x\n    secrets: [pw]\n", "undefined secret `pw`"),
            ("services:\n  web:\n    image: x\n    configs: [{source: conf}]\n", "undefined config `conf`"),
        ] {
            let err = load_one(text).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
            assert!(matches!(err, ComposeError::Undefined { .. }));
        }
        // `default` is implicit; anonymous volumes and binds need nothing.
        load_one("services:\n  web:\n    image: x\n    networks: [default]\n    volumes: [/data, '/a:/b']\n").unwrap();
    }

    #[test]
    fn versions_and_names() {
        for ok in ["version: '3'\n", "version: '3.9'\n", "version: 2.4\n", ""] {
            load_one(&format!("{ok}services:\n  web:\n    image: x\n")).unwrap();
        }
        let err = load_one("version: '1'\nservices: {}\n").unwrap_err();
        assert!(
            matches!(err, ComposeError::UnsupportedVersion { ref version, .. } if version == "1"),
            "{err}"
        );
        let err = load_one("services:\n  'my web':\n    image: x\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("services.my web: invalid value `my web`"),
            "{err}"
        );
        let loaded = load_one("name: shop\nservices: {}\n").unwrap();
        assert_eq!(loaded.project.name.as_deref(), Some("shop"));
        assert!(matches!(
            load(
                &[],
                &LoadOptions {
                    working_dir: Path::new("/"),
                    env: &Environment::default(),
                    files: &MemoryFiles::new()
                }
            ),
            Err(ComposeError::NoFiles)
        ));
    }

    #[test]
    fn several_files_merge_in_order_with_paths_from_the_first_file() {
        let env = Environment::from_vars([("TAG", "2.0")]);
        let loaded = load_with(
            &[
                "services:\n  web:\n    image: app:1.0\n    ports: ['8080:80']\n    volumes: ['./a:/a']\n    environment: [A=1]\n",
                "services:\n  web:\n    image: app:${TAG}\n    ports: ['9090:90']\n    volumes: ['./b:/a']\n    environment: {B: '2'}\n    bogus: 1\n",
            ],
            &env,
            &MemoryFiles::new(),
        )
        .unwrap();
        let web = &loaded.project.services["web"];
        assert_eq!(web.image.as_deref(), Some("app:2.0"));
        assert_eq!(
            web.ports.iter().map(|p| p.target).collect::<Vec<_>>(),
            [80, 90]
        );
        assert_eq!(
            web.mounts,
            vec![Mount {
                target: "/a".into(),
                read_only: false,
                kind: MountKind::Bind {
                    source: "/srv/app/b".into(),
                    propagation: None
                }
            }]
        );
        assert_eq!(web.environment.len(), 2);
        // The warning points at the file the key came from.
        assert_eq!(
            warning_texts(&loaded),
            ["override1.yml:7: service web: unknown key \"bogus\", ignored"]
        );
    }

    #[test]
    fn dotenv_variables_interpolate_the_file() {
        let mut env = Environment::from_vars([("PORT", "80")]);
        env.add_dotenv(".env", "PORT=9999\nIMAGE=registry.local/app\n")
            .unwrap();
        let loaded = load_with(
            &["services:\n  web:\n    image: ${IMAGE}:${TAG:-latest}\n    ports: ['${PORT}:80']\n"],
            &env,
            &MemoryFiles::new(),
        )
        .unwrap();
        let web = &loaded.project.services["web"];
        assert_eq!(web.image.as_deref(), Some("registry.local/app:latest"));
        assert_eq!(web.ports[0].published, Some(80));
    }

    proptest::proptest! {
        #[test]
        fn no_file_makes_the_loader_panic(text in "[ -~\n]{0,200}") {
            let _ = load_one(&text);
        }

        #[test]
        fn no_service_body_makes_the_loader_panic(body in "[a-z_:\\[\\]{}, '\"0-9./$-]{0,120}") {
            let _ = load_one(&format!("services:\n  web:\n    {body}\n"));
        }
    }

    #[test]
    fn load_paths_reads_through_the_reader() {
        let files = MemoryFiles::new()
            .with(
                "/p/stack.yml",
                "services:\n  web:\n    image: x\n    volumes: ['./d:/d']\n",
            )
            .with("/p/more.yml", "services:\n  web:\n    user: nobody\n");
        let loaded = load_paths(
            &[PathBuf::from("/p/stack.yml"), PathBuf::from("/p/more.yml")],
            &Environment::default(),
            &files,
        )
        .unwrap();
        let web = &loaded.project.services["web"];
        assert_eq!(web.user.as_deref(), Some("nobody"));
        assert!(
            matches!(&web.mounts[0].kind, MountKind::Bind { source, .. } if source == Path::new("/p/d"))
        );
        let err = load_paths(
            &[PathBuf::from("/p/absent.yml")],
            &Environment::default(),
            &files,
        )
        .unwrap_err();
        assert!(matches!(err, ComposeError::Read { .. }), "{err}");
    }
}
