//! Public stack and compose files (see `fixtures/compose/README.md` for where
//! each comes from) read from disk through the real file reader: each loads
//! with exactly the warnings expected, and names as a stack as Docker would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_control::compose::{
    load_paths, plan, ComposeError, DiskFiles, Environment, FailureAction, HealthTest, Loaded,
    MountKind, ObjectSource, Port, Protocol, PublishMode, RestartCondition, ServiceMode, Subject,
    WarningKind, IMAGE_LABEL, NAMESPACE_LABEL,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/compose")
        .join(name)
}

fn load(names: &[&str], env: &[(&str, &str)]) -> Result<Loaded, ComposeError> {
    let paths: Vec<PathBuf> = names.iter().map(|name| fixture(name)).collect();
    load_paths(
        &paths,
        &Environment::from_vars(env.iter().copied()),
        &DiskFiles,
    )
}

/// Each warning as (subject, key) for the kinds that name a key, or the
/// variable for unset variables.
fn warned(loaded: &Loaded) -> Vec<(String, String)> {
    loaded
        .warnings
        .iter()
        .map(|warning| {
            let subject = warning.subject.to_string();
            let what = match &warning.kind {
                WarningKind::UnsetVariable { name } => format!("${name}"),
                _ => warning.key().unwrap_or_default().to_string(),
            };
            (subject, what)
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn example_voting_app_stack_loads_without_warnings_and_names_as_docker_does() {
    let loaded = load(&["example-voting-app/docker-stack.yml"], &[]).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", warned(&loaded));
    let stack = plan("vote", &loaded.project).unwrap();
    let names: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "vote_db",
            "vote_redis",
            "vote_result",
            "vote_vote",
            "vote_worker"
        ]
    );
    // Every service names its networks: no `vote_default`.
    let networks: Vec<&str> = stack.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(networks, ["vote_backend", "vote_frontend"]);
    assert!(stack.networks.iter().all(|n| n.driver == "overlay"));
    assert_eq!(stack.volumes.len(), 1);
    assert_eq!(stack.volumes[0].name, "vote_db-data");

    let vote = &stack.services[3];
    assert_eq!(
        vote.spec.deploy.mode,
        ServiceMode::Replicated { replicas: Some(2) }
    );
    assert_eq!(
        vote.spec.ports,
        vec![Port {
            target: 80,
            published: Some(8080),
            protocol: Protocol::Tcp,
            mode: PublishMode::Ingress,
            host_ip: None
        }]
    );
    assert_eq!(vote.labels[NAMESPACE_LABEL], "vote");
    assert_eq!(
        vote.labels[IMAGE_LABEL],
        "dockersamples/examplevotingapp_vote"
    );
    assert_eq!(vote.networks[0].target, "vote_frontend");
    assert_eq!(vote.networks[0].aliases, ["vote"]);
    let worker = &stack.services[4];
    let targets: Vec<&str> = worker.networks.iter().map(|n| n.target.as_str()).collect();
    assert_eq!(targets, ["vote_backend", "vote_frontend"]);
    let db = &stack.services[0];
    assert_eq!(
        db.spec.environment["POSTGRES_USER"].as_deref(),
        Some("postgres")
    );
    assert!(
        matches!(&db.mounts[0].mount.kind, MountKind::Volume { source: Some(name), .. } if name == "vote_db-data")
    );
}

#[test]
fn example_voting_app_compose_file_names_every_key_swarm_ignores() {
    let loaded = load(&["example-voting-app/docker-compose.yml"], &[]).unwrap();
    assert_eq!(
        warned(&loaded),
        pairs(&[
            ("service vote", "build"),
            ("service vote", "depends_on"),
            ("service result", "build"),
            ("service result", "depends_on"),
            ("service result", "ports[1]"),
            ("service worker", "build"),
            ("service worker", "depends_on"),
            ("service seed", "build"),
            ("service seed", "profiles"),
            ("service seed", "depends_on"),
        ])
    );
    let first = loaded.warnings[0].to_string();
    assert!(
        first.ends_with(
            "docker-compose.yml:7: service vote: key \"build\" is not supported, ignored (shoal does not build images: build and push it, then set image:)"
        ),
        "{first}"
    );
    let project = &loaded.project;
    assert_eq!(
        project.services["result"].entrypoint,
        Some(vec![
            "nodemon".into(),
            "--inspect=0.0.0.0".into(),
            "server.js".into()
        ])
    );
    let vote_check = project.services["vote"].healthcheck.as_ref().unwrap();
    assert_eq!(
        vote_check.test,
        HealthTest::Exec(vec!["curl".into(), "-f".into(), "http://localhost".into()])
    );
    assert_eq!(vote_check.start_period, Some(Duration::from_secs(10)));
    assert_eq!(
        project.services["redis"].healthcheck.as_ref().unwrap().test,
        HealthTest::Shell("/healthchecks/redis.sh".into())
    );
    // The relative bind starts at the file's directory.
    let redis_mount = &project.services["redis"].mounts[0];
    assert!(
        matches!(&redis_mount.kind, MountKind::Bind { source, .. } if *source == fixture("example-voting-app/healthchecks"))
    );
    // `restart: "no"` is no restart policy.
    assert_eq!(project.services["seed"].deploy.restart_policy, None);
    // Built-only services cannot be deployed.
    let err = plan("vote", project).unwrap_err();
    assert!(
        matches!(err, ComposeError::NoImage { ref service } if service == "result"),
        "{err}"
    );
}

#[test]
fn a_real_override_file_merges_over_the_voting_app_stack() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("docker-stack.yml");
    std::fs::copy(fixture("example-voting-app/docker-stack.yml"), &base).unwrap();
    let prod = dir.path().join("prod.yml");
    std::fs::write(
        &prod,
        "services:\n  vote:\n    image: registry.local/vote:${TAG}\n    ports: ['8080:80', '8443:443']\n    deploy: {replicas: 5}\n  db:\n    environment: ['POSTGRES_PASSWORD=${DB_PASSWORD:?set DB_PASSWORD}']\n",
    )
    .unwrap();
    let env = Environment::from_vars([("TAG", "1.2"), ("DB_PASSWORD", "s3cret")]);
    let loaded = load_paths(&[base, prod.clone()], &env, &DiskFiles).unwrap();
    assert!(loaded.warnings.is_empty());
    let vote = &loaded.project.services["vote"];
    assert_eq!(vote.image.as_deref(), Some("registry.local/vote:1.2"));
    assert_eq!(
        vote.ports.iter().map(|p| p.target).collect::<Vec<_>>(),
        [80, 443]
    );
    assert_eq!(
        vote.deploy.mode,
        ServiceMode::Replicated { replicas: Some(5) }
    );
    let db = &loaded.project.services["db"];
    assert_eq!(db.environment["POSTGRES_USER"].as_deref(), Some("postgres"));
    assert_eq!(
        db.environment["POSTGRES_PASSWORD"].as_deref(),
        Some("s3cret")
    );

    let err = load_paths(
        &[dir.path().join("docker-stack.yml"), prod],
        &Environment::from_vars([("TAG", "1.2")]),
        &DiskFiles,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.ends_with("prod.yml:7: services.db.environment[0]: required variable `DB_PASSWORD` is not set: set DB_PASSWORD"),
        "{text}"
    );
}

#[test]
fn atsea_shop_stack_with_external_secrets_and_placement() {
    let loaded = load(&["atsea-sample-shop-app/docker-stack.yml"], &[]).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", warned(&loaded));
    let project = &loaded.project;
    assert!(project
        .secrets
        .values()
        .all(|s| s.source == ObjectSource::External));
    let appserver = &project.services["appserver"];
    let update = appserver.deploy.update_config.unwrap();
    assert_eq!(update.parallelism, Some(2));
    assert_eq!(update.failure_action, Some(FailureAction::Rollback));
    let restart = appserver.deploy.restart_policy.unwrap();
    assert_eq!(restart.condition, Some(RestartCondition::OnFailure));
    assert_eq!(restart.window, Some(Duration::from_secs(120)));
    assert_eq!(
        project.services["payment_gateway"]
            .deploy
            .placement
            .constraints,
        ["node.role == worker", "node.labels.pcidss == yes"]
    );
    assert_eq!(
        project.services["visualizer"].stop_grace_period,
        Some(Duration::from_secs(90))
    );

    let stack = plan("atsea", project).unwrap();
    let networks: Vec<(&str, &str)> = stack
        .networks
        .iter()
        .map(|n| (n.key.as_str(), n.name.as_str()))
        .collect();
    // The visualizer names no network, so the default one is made.
    assert_eq!(
        networks,
        [
            ("back-tier", "atsea_back-tier"),
            ("default", "atsea_default"),
            ("front-tier", "atsea_front-tier"),
            ("payment", "atsea_payment"),
        ]
    );
    assert_eq!(stack.networks[3].driver_opts["encrypted"], "yes");
    // External secrets keep their names and are not created.
    assert!(stack
        .secrets
        .iter()
        .all(|s| s.name == s.key && s.labels.is_empty()));
    let gateway = stack
        .services
        .iter()
        .find(|s| s.key == "payment_gateway")
        .unwrap();
    assert_eq!(gateway.secrets[0].name, "staging_token");
    assert_eq!(gateway.secrets[0].file_name, "payment_token");
    assert_eq!(gateway.secrets[0].mode, 0o444);
}

#[test]
fn swarmprom_interpolates_defaults_and_keeps_escaped_dollars() {
    let loaded = load(&["swarmprom/docker-compose.yml"], &[]).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", warned(&loaded));
    let project = &loaded.project;
    let grafana = &project.services["grafana"];
    assert_eq!(
        grafana.environment["GF_SECURITY_ADMIN_USER"].as_deref(),
        Some("admin")
    );
    let exporter = &project.services["node-exporter"];
    assert_eq!(
        exporter.environment["NODE_ID"].as_deref(),
        Some("{{.Node.ID}}")
    );
    assert!(exporter.command.as_ref().unwrap().contains(
        &"--collector.filesystem.ignored-mount-points=^/(sys|proc|dev|host|etc)($|/)".to_string()
    ));
    assert_eq!(
        project.services["cadvisor"].command,
        Some(vec!["-logtostderr".into(), "-docker_only".into()])
    );
    assert_eq!(
        project.services["cadvisor"].deploy.mode,
        ServiceMode::Global
    );
    assert_eq!(
        project.services["prometheus"]
            .deploy
            .resources
            .limits
            .unwrap()
            .memory_bytes,
        Some(2048 << 20)
    );
    assert_eq!(
        project.configs["caddy_config"].source,
        ObjectSource::File(fixture("swarmprom/caddy/Caddyfile"))
    );
    let caddy = &project.services["caddy"];
    assert_eq!(
        caddy.configs[0].target.as_deref(),
        Some("/etc/caddy/Caddyfile")
    );
    assert_eq!(caddy.healthcheck.as_ref().unwrap().retries, Some(5));

    // With the environment set, the values come from it.
    let loaded = load(
        &["swarmprom/docker-compose.yml"],
        &[("ADMIN_USER", "ops"), ("PROMETHEUS_RETENTION", "7d")],
    )
    .unwrap();
    let project = &loaded.project;
    assert_eq!(
        project.services["grafana"].environment["GF_SECURITY_ADMIN_USER"].as_deref(),
        Some("ops")
    );
    assert!(project.services["prometheus"]
        .command
        .as_ref()
        .unwrap()
        .contains(&"--storage.tsdb.retention=7d".to_string()));

    let stack = plan("mon", project).unwrap();
    let configs: Vec<&str> = stack.configs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        configs,
        [
            "mon_caddy_config",
            "mon_dockerd_config",
            "mon_node_rules",
            "mon_task_rules"
        ]
    );
    assert_eq!(stack.networks.len(), 1);
    assert!(stack.networks[0].attachable);
}

#[test]
fn required_variables_stop_the_load_naming_file_key_and_variable() {
    let err = load(&["dockerswarm.rocks/traefik.yml"], &[]).unwrap_err();
    assert!(
        matches!(&err, ComposeError::RequiredVariable { variable, path, .. } if variable == "USERNAME" && path == "services.traefik.deploy.labels[3]"),
        "{err}"
    );
    assert!(err.to_string().contains("traefik.yml:30: "), "{err}");

    let err = load(
        &["swarmprom/docker-compose.traefik.yml"],
        &[("DOMAIN", "example.com")],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("required variable `ADMIN_USER` is not set: Variable ADMIN_USER not set"),
        "{err}"
    );

    let env = [
        ("USERNAME", "admin"),
        ("HASHED_PASSWORD", "$apr1$x"),
        ("DOMAIN", "example.com"),
        ("EMAIL", "ops@example.com"),
        ("ADMIN_USER", "admin"),
    ];
    let loaded = load(&["dockerswarm.rocks/traefik.yml"], &env).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", warned(&loaded));
    let traefik = &loaded.project.services["traefik"];
    assert_eq!(
        traefik.deploy.labels["traefik.http.middlewares.admin-auth.basicauth.users"],
        "admin:$apr1$x"
    );
    assert_eq!(
        traefik.deploy.labels["traefik.http.routers.traefik-public-http.rule"],
        "Host(`example.com`)"
    );
    assert!(traefik
        .command
        .as_ref()
        .unwrap()
        .contains(&"--certificatesresolvers.le.acme.email=ops@example.com".to_string()));
    let stack = plan("traefik", &loaded.project).unwrap();
    assert_eq!(stack.networks[0].name, "traefik-public");
    assert!(stack.networks[0].external);
    assert_eq!(stack.volumes[0].name, "traefik_traefik-public-certificates");

    let loaded = load(&["swarmprom/docker-compose.traefik.yml"], &env).unwrap();
    // Unset optional variables are named once each.
    assert!(loaded.warnings.is_empty(), "{:?}", warned(&loaded));
    let stack = plan("swarmprom", &loaded.project).unwrap();
    let grafana = stack.services.iter().find(|s| s.key == "grafana").unwrap();
    let targets: Vec<&str> = grafana.networks.iter().map(|n| n.target.as_str()).collect();
    assert_eq!(
        targets,
        ["swarmprom_default", "swarmprom_net", "traefik-public"]
    );

    for file in [
        "dockerswarm.rocks/swarmpit.yml",
        "dockerswarm.rocks/portainer.yml",
    ] {
        let loaded = load(&[file], &env).unwrap();
        assert!(loaded.warnings.is_empty(), "{file}: {:?}", warned(&loaded));
        plan("tools", &loaded.project).unwrap();
    }
    let swarmpit = load(&["dockerswarm.rocks/swarmpit.yml"], &env).unwrap();
    let limits = swarmpit.project.services["app"]
        .deploy
        .resources
        .limits
        .unwrap();
    assert_eq!(limits.nano_cpus, Some(500_000_000));
    assert_eq!(limits.memory_bytes, Some(1 << 30));
}

#[test]
fn dockers_full_example_is_refused_verbatim_as_docker_refuses_it() {
    let err = load(&["docker-cli/full-example.yml"], &[]).unwrap_err();
    assert!(
        matches!(&err, ComposeError::MissingKey { path, .. } if path == "configs.config4"),
        "{err}"
    );
}

#[test]
fn dockers_full_example_names_every_unsupported_key() {
    let loaded = load(
        &["docker-cli/full-example-adapted.yml"],
        &[("HOME", "/home/me"), ("QUX", "qux_from_environment")],
    )
    .unwrap();
    assert_eq!(
        warned(&loaded),
        pairs(&[
            ("service foo", "build"),
            ("service foo", "cgroup_parent"),
            ("service foo", "container_name"),
            ("service foo", "depends_on"),
            (
                "service foo",
                "deploy.resources.reservations.generic_resources"
            ),
            ("service foo", "devices"),
            ("service foo", "domainname"),
            ("service foo", "expose"),
            ("service foo", "external_links"),
            ("service foo", "ipc"),
            ("service foo", "links"),
            ("service foo", "logging"),
            ("service foo", "mac_address"),
            ("service foo", "network_mode"),
            ("service foo", "pid"),
            ("service foo", "ports[5]"),
            ("service foo", "ports[6]"),
            ("service foo", "privileged"),
            ("service foo", "restart"),
            ("service foo", "security_opt"),
            ("service foo", "sysctls"),
            ("service foo", "ulimits"),
            ("service foo", "volumes[6].consistency"),
            ("service foo", "volumes[8]"),
            ("network other-external-network", "external"),
            ("volume other-external-volume", "external"),
            ("config config2", "external"),
            ("secret secret2", "external"),
        ])
    );
    assert!(loaded.warnings.iter().all(|w| matches!(
        w.subject,
        Subject::Service(_)
            | Subject::Network(_)
            | Subject::Volume(_)
            | Subject::Config(_)
            | Subject::Secret(_)
    )));

    let foo = &loaded.project.services["foo"];
    // env_file values, then `environment:`, then the caller's environment.
    let env = |key: &str| foo.environment.get(key).cloned().flatten();
    assert_eq!(env("FOO").as_deref(), Some("foo_from_env_file"));
    assert_eq!(env("BAR").as_deref(), Some("bar_from_env_file_2"));
    assert_eq!(env("BAZ").as_deref(), Some("baz_from_service_def"));
    assert_eq!(env("QUX").as_deref(), Some("qux_from_environment"));
    // 3000, 3001-3005, 8000, 9090-9091, 49100, 8001 and 5000-5010.
    assert_eq!(foo.ports.len(), 1 + 5 + 1 + 2 + 1 + 1 + 11);
    assert_eq!(foo.secrets[1].mode, Some(0o440));
    assert_eq!(
        foo.command.as_ref().unwrap(),
        &["bundle", "exec", "thin", "-p", "3000"]
    );
    assert_eq!(
        foo.deploy.mode,
        ServiceMode::Replicated { replicas: Some(6) }
    );
    assert_eq!(foo.deploy.placement.spread, ["node.labels.az"]);
    assert_eq!(foo.deploy.placement.max_replicas_per_node, Some(5));
    assert_eq!(foo.extra_hosts.len(), 3);
    // Nine volumes but the cluster one, and two tmpfs.
    assert_eq!(foo.mounts.len(), 8 + 2);
    let configs = foo
        .mounts
        .iter()
        .find(|m| m.target == "/etc/configs/")
        .unwrap();
    assert!(configs.read_only);
    assert!(
        matches!(&configs.kind, MountKind::Bind { source, .. } if source == Path::new("/home/me/configs"))
    );
    assert_eq!(
        loaded.project.networks["other-external-network"]
            .name
            .as_deref(),
        Some("my-cool-network")
    );
    let stack = plan("full", &loaded.project).unwrap();
    let names: Vec<&str> = stack.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["full_datavolume"]);
    let secrets: Vec<&str> = stack.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(secrets, ["full_secret1", "my_secret", "secret3"]);
}
