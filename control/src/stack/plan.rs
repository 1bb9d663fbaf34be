//! What a `stack deploy` or `stack rm` must do, given what the file asks
//! for and what the cluster has: the steps in Docker's order, each with
//! the request that carries it out and the line Docker prints for it.
//!
//! Stack membership is the `com.docker.stack.namespace` label. A deploy
//! creates the networks, secrets and configs that are missing (external
//! ones must exist), creates new services and updates only those whose
//! spec changed: the file's spec is compared with the stored one after the
//! managers' own resolutions are applied to it (network and payload names
//! as ids, an unchanged image as its pinned digest, auto-assigned ports).

use std::collections::{BTreeMap, BTreeSet};

use super::error::StackError;
use crate::api::{ApiRequest, NetworkView, PayloadClass, PayloadView, ServiceView, TaskView};
use crate::compose::{IMAGE_LABEL, NAMESPACE_LABEL};
use crate::objects::{PayloadData, PayloadReference, RegistryAuth, ServiceSpec, TaskState};

/// `--resolve-image`: when the managers ask the registry for the image's
/// digest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResolveImage {
    /// On every deploy.
    Always,
    /// When the file names another image than the last deploy did.
    #[default]
    Changed,
    /// Never: an unchanged image keeps the digest it has.
    Never,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct DeployOptions {
    pub prune: bool,
    pub resolve_image: ResolveImage,
}

/// What the cluster has now.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub services: Vec<ServiceView>,
    pub networks: Vec<NetworkView>,
    pub secrets: Vec<PayloadView>,
    pub configs: Vec<PayloadView>,
}

/// A service the file asks for, as shoal's spec (names, not ids).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredService {
    /// The image the file names (the `com.docker.stack.image` label).
    pub image: String,
    pub spec: ServiceSpec,
}

/// A secret or config the file declares.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObject {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `None`: external; it must exist.
    pub data: Option<PayloadData>,
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    RemoveService {
        name: String,
        id: String,
    },
    CreateNetwork {
        name: String,
        request: Box<ApiRequest>,
    },
    RemoveNetwork {
        name: String,
        id: String,
    },
    CreatePayload {
        class: PayloadClass,
        name: String,
        labels: BTreeMap<String, String>,
        data: PayloadData,
    },
    /// Only the labels may change; the managers refuse other data.
    UpdatePayload {
        class: PayloadClass,
        name: String,
        id: String,
        version: u64,
        labels: BTreeMap<String, String>,
        data: PayloadData,
    },
    RemovePayload {
        class: PayloadClass,
        name: String,
        id: String,
    },
    CreateService {
        spec: Box<ServiceSpec>,
    },
    UpdateService {
        id: String,
        version: u64,
        spec: Box<ServiceSpec>,
    },
    /// The file's spec is the stored one: nothing is sent.
    KeepService {
        name: String,
        id: String,
        version: u64,
    },
}

fn class_word(class: PayloadClass) -> &'static str {
    match class {
        PayloadClass::Secret => "secret",
        PayloadClass::Config => "config",
    }
}

impl Step {
    /// The request that carries the step out (none for a kept service).
    pub fn request(&self) -> Option<ApiRequest> {
        Some(match self {
            Step::RemoveService { id, .. } => ApiRequest::ServiceRemove {
                service: id.clone(),
            },
            Step::CreateNetwork { request, .. } => (**request).clone(),
            Step::RemoveNetwork { id, .. } => ApiRequest::NetworkRemove {
                name_or_id: id.clone(),
            },
            Step::CreatePayload {
                class,
                name,
                labels,
                data,
            } => match class {
                PayloadClass::Secret => ApiRequest::SecretCreate {
                    name: name.clone(),
                    labels: labels.clone(),
                    data: data.clone(),
                },
                PayloadClass::Config => ApiRequest::ConfigCreate {
                    name: name.clone(),
                    labels: labels.clone(),
                    data: data.clone(),
                },
            },
            Step::UpdatePayload {
                class,
                id,
                version,
                labels,
                data,
                ..
            } => ApiRequest::PayloadUpdate {
                class: *class,
                name_or_id: id.clone(),
                version: Some(*version),
                labels: labels.clone(),
                data: Some(data.clone()),
            },
            Step::RemovePayload { class, id, .. } => match class {
                PayloadClass::Secret => ApiRequest::SecretRemove { secret: id.clone() },
                PayloadClass::Config => ApiRequest::ConfigRemove { config: id.clone() },
            },
            Step::CreateService { spec } => ApiRequest::ServiceCreate { spec: spec.clone() },
            Step::UpdateService { id, version, spec } => ApiRequest::ServiceUpdate {
                service: id.clone(),
                spec: spec.clone(),
                version: Some(*version),
                force: false,
            },
            Step::KeepService { .. } => return None,
        })
    }

    /// What Docker prints before the step (nothing for a payload update
    /// or a kept service).
    pub fn message(&self) -> Option<String> {
        Some(match self {
            Step::RemoveService { name, .. } => format!("Removing service {name}"),
            Step::CreateNetwork { name, .. } => format!("Creating network {name}"),
            Step::RemoveNetwork { name, .. } => format!("Removing network {name}"),
            Step::CreatePayload { class, name, .. } => {
                format!("Creating {} {name}", class_word(*class))
            }
            Step::RemovePayload { class, name, .. } => {
                format!("Removing {} {name}", class_word(*class))
            }
            Step::CreateService { spec } => format!("Creating service {}", spec.name),
            Step::UpdateService { id, spec, .. } => {
                format!("Updating service {} (id: {id})", spec.name)
            }
            Step::UpdatePayload { .. } | Step::KeepService { .. } => return None,
        })
    }
}

/// The steps of a deploy, in Docker's order: pruned services, networks,
/// secrets, configs, services.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeployPlan {
    pub steps: Vec<Step>,
}

fn in_stack(labels: &BTreeMap<String, String>, namespace: &str) -> bool {
    labels.get(NAMESPACE_LABEL).map(String::as_str) == Some(namespace)
}

/// Plans deploying `namespace`: `networks` are the stack's (name, create
/// request or `None` for an external one), `secrets` and `configs` those
/// the file declares, `services` what each service should be.
pub fn plan_deploy(
    namespace: &str,
    networks: &[(String, Option<ApiRequest>)],
    secrets: &[DesiredObject],
    configs: &[DesiredObject],
    services: &[DesiredService],
    cluster: &Cluster,
    options: DeployOptions,
) -> Result<DeployPlan, StackError> {
    let mut steps = Vec::new();
    let stack_services: Vec<&ServiceView> = cluster
        .services
        .iter()
        .filter(|s| in_stack(&s.spec.labels, namespace))
        .collect();
    if options.prune {
        let wanted: BTreeSet<&str> = services.iter().map(|s| s.spec.name.as_str()).collect();
        let mut gone: Vec<&&ServiceView> = stack_services
            .iter()
            .filter(|s| !wanted.contains(s.spec.name.as_str()))
            .collect();
        gone.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        steps.extend(gone.into_iter().map(|s| Step::RemoveService {
            name: s.spec.name.clone(),
            id: s.id.clone(),
        }));
    }

    for (name, request) in networks {
        match request {
            None => {
                if !cluster
                    .networks
                    .iter()
                    .any(|n| n.name == *name || n.id == *name)
                {
                    return Err(StackError::ExternalNetworkMissing(name.clone()));
                }
            }
            Some(request) => {
                let exists = cluster
                    .networks
                    .iter()
                    .any(|n| n.name == *name && in_stack(&n.labels, namespace));
                if !exists {
                    steps.push(Step::CreateNetwork {
                        name: name.clone(),
                        request: Box::new(request.clone()),
                    });
                }
            }
        }
    }

    for (class, desired, existing) in [
        (PayloadClass::Secret, secrets, &cluster.secrets),
        (PayloadClass::Config, configs, &cluster.configs),
    ] {
        for object in desired {
            let found = existing.iter().find(|p| p.spec.name == object.name);
            match (&object.data, found) {
                (None, Some(_)) => {}
                (None, None) => {
                    return Err(StackError::ExternalObjectMissing {
                        kind: class_word(class),
                        name: object.name.clone(),
                    })
                }
                (Some(data), None) => steps.push(Step::CreatePayload {
                    class,
                    name: object.name.clone(),
                    labels: object.labels.clone(),
                    data: data.clone(),
                }),
                (Some(data), Some(found)) => {
                    // A config shows its data: nothing to send when neither
                    // it nor the labels changed. A secret's data is never
                    // shown, so the managers compare it.
                    let same_config = found.spec.data.as_ref() == Some(data)
                        && found.spec.labels == object.labels;
                    if !same_config {
                        steps.push(Step::UpdatePayload {
                            class,
                            name: object.name.clone(),
                            id: found.id.clone(),
                            version: found.version.index,
                            labels: object.labels.clone(),
                            data: data.clone(),
                        });
                    }
                }
            }
        }
    }

    let mut services: Vec<&DesiredService> = services.iter().collect();
    services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    for desired in services {
        let current = stack_services
            .iter()
            .find(|s| s.spec.name == desired.spec.name);
        match current {
            None => steps.push(Step::CreateService {
                spec: Box::new(desired.spec.clone()),
            }),
            Some(current) => {
                let spec = as_stored(desired, current, cluster, options.resolve_image);
                if same_spec(&spec, &current.spec) {
                    steps.push(Step::KeepService {
                        name: current.spec.name.clone(),
                        id: current.id.clone(),
                        version: current.version,
                    });
                } else {
                    steps.push(Step::UpdateService {
                        id: current.id.clone(),
                        version: current.version,
                        spec: Box::new(spec),
                    });
                }
            }
        }
    }
    Ok(DeployPlan { steps })
}

/// The file's spec with what the managers resolved for `current` applied,
/// so that an unchanged file gives the stored spec back.
fn as_stored(
    desired: &DesiredService,
    current: &ServiceView,
    cluster: &Cluster,
    resolve: ResolveImage,
) -> ServiceSpec {
    let mut spec = desired.spec.clone();
    let same_image = current.spec.labels.get(IMAGE_LABEL) == Some(&desired.image);
    if let (Some(new), Some(old)) = (
        spec.task.container.as_mut(),
        current.spec.task.container.as_ref(),
    ) {
        // Docker keeps the digest the last deploy pinned unless the file
        // names another image (or `--resolve-image always`).
        if same_image && resolve != ResolveImage::Always {
            new.image.clone_from(&old.image);
        }
    }
    // `stack deploy` has no `--force`: keep the counter.
    spec.task.force_update = current.spec.task.force_update;
    let network_id = |name: &str| {
        cluster
            .networks
            .iter()
            .find(|n| n.name == name)
            .map_or_else(|| name.to_string(), |n| n.id.clone())
    };
    for network in &mut spec.networks {
        *network = network_id(network);
    }
    // The managers key a network's aliases by its id too.
    spec.network_aliases = std::mem::take(&mut spec.network_aliases)
        .into_iter()
        .map(|(network, aliases)| (network_id(&network), aliases))
        .collect();
    resolve_ids(&mut spec.task.secrets, &cluster.secrets);
    resolve_ids(&mut spec.task.configs, &cluster.configs);
    for port in spec.ports.iter_mut().filter(|p| p.published == 0) {
        if let Some(old) = current
            .spec
            .ports
            .iter()
            .find(|o| o.target == port.target && o.protocol == port.protocol)
        {
            port.published = old.published;
        }
    }
    spec
}

fn resolve_ids(references: &mut [PayloadReference], existing: &[PayloadView]) {
    for reference in references.iter_mut().filter(|r| r.id.is_empty()) {
        if let Some(found) = existing.iter().find(|p| p.spec.name == reference.name) {
            reference.id.clone_from(&found.id);
        }
    }
}

/// Equal specs, leaving out registry credentials (views never show them,
/// and the managers keep the stored ones when none are sent).
fn same_spec(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    let strip = |spec: &ServiceSpec| {
        let mut spec = spec.clone();
        if let Some(container) = spec.task.container.as_mut() {
            container.registry_auth = RegistryAuth::default();
        }
        spec
    };
    strip(a) == strip(b)
}

/// The steps of `stack rm`, in Docker's order: services, secrets, configs,
/// networks. Empty when nothing carries the stack's label.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemovePlan {
    /// Services, secrets and configs.
    pub steps: Vec<Step>,
    /// Removed once the services' tasks have stopped (a network is in use
    /// until then).
    pub networks: Vec<Step>,
    /// The ids of the services removed, to wait for their tasks.
    pub services: BTreeSet<String>,
}

impl RemovePlan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.networks.is_empty()
    }

    /// How many of `tasks` of the removed services still hold an address.
    pub fn draining(&self, tasks: &[TaskView]) -> usize {
        tasks
            .iter()
            .filter(|t| {
                self.services.contains(&t.service_id)
                    && t.current_state >= TaskState::Pending
                    && t.current_state < TaskState::Complete
            })
            .count()
    }
}

/// Plans removing everything labelled with `namespace`.
pub fn plan_remove(namespace: &str, cluster: &Cluster) -> RemovePlan {
    let mut services: Vec<&ServiceView> = cluster
        .services
        .iter()
        .filter(|s| in_stack(&s.spec.labels, namespace))
        .collect();
    services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    let mut steps: Vec<Step> = services
        .iter()
        .map(|s| Step::RemoveService {
            name: s.spec.name.clone(),
            id: s.id.clone(),
        })
        .collect();
    for (class, objects) in [
        (PayloadClass::Secret, &cluster.secrets),
        (PayloadClass::Config, &cluster.configs),
    ] {
        let mut objects: Vec<&PayloadView> = objects
            .iter()
            .filter(|p| in_stack(&p.spec.labels, namespace))
            .collect();
        objects.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        steps.extend(objects.into_iter().map(|p| Step::RemovePayload {
            class,
            name: p.spec.name.clone(),
            id: p.id.clone(),
        }));
    }
    let mut networks: Vec<&NetworkView> = cluster
        .networks
        .iter()
        .filter(|n| in_stack(&n.labels, namespace))
        .collect();
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    RemovePlan {
        steps,
        networks: networks
            .into_iter()
            .map(|n| Step::RemoveNetwork {
                name: n.name.clone(),
                id: n.id.clone(),
            })
            .collect(),
        services: services.iter().map(|s| s.id.clone()).collect(),
    }
}

/// `stack ls`: each stack's name and how many services carry its label,
/// by name.
pub fn stack_names(services: &[ServiceView]) -> Vec<(String, usize)> {
    let mut stacks: BTreeMap<String, usize> = BTreeMap::new();
    for service in services {
        if let Some(name) = service.spec.labels.get(NAMESPACE_LABEL) {
            *stacks.entry(name.clone()).or_default() += 1;
        }
    }
    stacks.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::{IpamView, ObjectVersion as PayloadVersion, PayloadSpecView};
    use crate::compose::{MemoryFiles, Stack};
    use crate::stack::convert::tests::stack_from;
    use crate::stack::service_spec;

    const FILE: &str = "\
services:
  web:
    image: reg:5000/web:1
    ports: ['8080:80', '9000']
    secrets: [pw]
    configs: [site]
  worker:
    image: reg:5000/worker:1
    environment: [MODE=fast]
secrets:
  pw: {file: ./pw.txt}
configs:
  site: {content: hello}
";

    fn stack(text: &str) -> Stack {
        stack_from(text, &[], &MemoryFiles::new())
    }

    fn desired(stack: &Stack) -> Vec<DesiredService> {
        stack
            .services
            .iter()
            .map(|s| DesiredService {
                image: s.image.clone(),
                spec: service_spec(s).unwrap().spec.to_shoal().unwrap().spec,
            })
            .collect()
    }

    fn network(name: &str, id: &str, stack: Option<&str>) -> NetworkView {
        NetworkView {
            name: name.into(),
            id: id.into(),
            created: String::new(),
            scope: "swarm".into(),
            driver: "overlay".into(),
            enable_ipv6: false,
            ipam: IpamView {
                driver: "default".into(),
                config: Vec::new(),
            },
            internal: false,
            attachable: false,
            ingress: false,
            options: BTreeMap::new(),
            labels: stack
                .map(|s| BTreeMap::from([(NAMESPACE_LABEL.to_string(), s.to_string())]))
                .unwrap_or_default(),
            addresses: None,
            failures: Vec::new(),
        }
    }

    fn payload(name: &str, id: &str, labels: &BTreeMap<String, String>) -> PayloadView {
        PayloadView {
            id: id.into(),
            version: PayloadVersion { index: 3 },
            created_at: String::new(),
            updated_at: String::new(),
            spec: PayloadSpecView {
                name: name.into(),
                labels: labels.clone(),
                data: None,
            },
        }
    }

    /// What the managers stored for `spec`: names as ids, the image
    /// pinned, auto ports allocated.
    fn stored(id: &str, spec: &ServiceSpec, cluster: &Cluster) -> ServiceView {
        let mut spec = spec.clone();
        let network_id = |name: &str| {
            cluster
                .networks
                .iter()
                .find(|x| x.name == name)
                .unwrap()
                .id
                .clone()
        };
        for n in &mut spec.networks {
            *n = network_id(n);
        }
        spec.network_aliases = std::mem::take(&mut spec.network_aliases)
            .into_iter()
            .map(|(n, aliases)| (network_id(&n), aliases))
            .collect();
        for (refs, all) in [
            (&mut spec.task.secrets, &cluster.secrets),
            (&mut spec.task.configs, &cluster.configs),
        ] {
            for r in refs.iter_mut() {
                r.id = all
                    .iter()
                    .find(|p| p.spec.name == r.name)
                    .unwrap()
                    .id
                    .clone();
            }
        }
        if let Some(c) = spec.task.container.as_mut() {
            c.image = format!("{}@sha256:{}", c.image, "a".repeat(64));
        }
        for p in spec.ports.iter_mut().filter(|p| p.published == 0) {
            p.published = 30000;
        }
        ServiceView {
            id: id.into(),
            name: spec.name.clone(),
            mode: "replicated".into(),
            running: 1,
            desired: 1,
            version: 7,
            spec,
            networks: Vec::new(),
            previous_spec: None,
            update_status: None,
            created_at: 0,
            updated_at: 0,
            virtual_ips: Vec::new(),
        }
    }

    fn objects(stack: &Stack) -> (Vec<DesiredObject>, Vec<DesiredObject>) {
        let desired = |objects: &[crate::compose::StackObject]| {
            objects
                .iter()
                .map(|o| DesiredObject {
                    name: o.name.clone(),
                    labels: o.labels.clone(),
                    data: Some(PayloadData(o.name.as_bytes().to_vec())),
                })
                .collect::<Vec<_>>()
        };
        (desired(&stack.secrets), desired(&stack.configs))
    }

    fn networks(stack: &Stack) -> Vec<(String, Option<ApiRequest>)> {
        stack
            .networks
            .iter()
            .map(|n| {
                let request = (!n.external).then(|| super::super::network_request(n).unwrap());
                (n.name.clone(), request)
            })
            .collect()
    }

    fn plan(text: &str, cluster: &Cluster, options: DeployOptions) -> DeployPlan {
        let stack = stack(text);
        let (secrets, configs) = objects(&stack);
        plan_deploy(
            "app",
            &networks(&stack),
            &secrets,
            &configs,
            &desired(&stack),
            cluster,
            options,
        )
        .unwrap()
    }

    /// The step of the service named `name`.
    fn service_step<'a>(plan: &'a DeployPlan, name: &str) -> &'a Step {
        plan.steps
            .iter()
            .find(|s| match s {
                Step::KeepService { name: n, .. } => n == name,
                Step::CreateService { spec } | Step::UpdateService { spec, .. } => {
                    spec.name == name
                }
                _ => false,
            })
            .unwrap_or_else(|| panic!("no step for {name}: {plan:?}"))
    }

    fn messages(plan: &DeployPlan) -> Vec<String> {
        plan.steps.iter().filter_map(Step::message).collect()
    }

    /// The cluster after deploying FILE once.
    fn deployed() -> Cluster {
        let stack = stack(FILE);
        let mut cluster = Cluster {
            networks: vec![network("app_default", "net1", Some("app"))],
            secrets: vec![payload("app_pw", "sec1", &stack.secrets[0].labels)],
            configs: vec![payload("app_site", "cfg1", &stack.configs[0].labels)],
            ..Cluster::default()
        };
        cluster.configs[0].spec.data = Some(PayloadData(b"app_site".to_vec()));
        let services = desired(&stack)
            .iter()
            .enumerate()
            .map(|(i, d)| stored(&format!("svc{i}"), &d.spec, &cluster))
            .collect();
        cluster.services = services;
        cluster
    }

    #[test]
    fn a_first_deploy_creates_everything_in_dockers_order() {
        let plan = plan(FILE, &Cluster::default(), DeployOptions::default());
        assert_eq!(
            messages(&plan),
            [
                "Creating network app_default",
                "Creating secret app_pw",
                "Creating config app_site",
                "Creating service app_web",
                "Creating service app_worker"
            ]
        );
        let requests: Vec<ApiRequest> = plan.steps.iter().filter_map(Step::request).collect();
        assert!(
            matches!(&requests[0], ApiRequest::NetworkCreate { name, .. } if name == "app_default")
        );
        assert!(
            matches!(&requests[1], ApiRequest::SecretCreate { name, data, .. } if name == "app_pw" && data.0 == b"app_pw")
        );
        assert!(
            matches!(&requests[3], ApiRequest::ServiceCreate { spec } if spec.name == "app_web")
        );
    }

    #[test]
    fn an_unchanged_file_changes_nothing() {
        let cluster = deployed();
        let plan = plan(FILE, &cluster, DeployOptions::default());
        assert!(messages(&plan).is_empty(), "{:?}", messages(&plan));
        // Only the secret is sent again: its data is never shown, so the
        // managers compare it (and refuse a change).
        let sent: Vec<&Step> = plan
            .steps
            .iter()
            .filter(|s| s.request().is_some())
            .collect();
        assert!(
            matches!(
                sent.as_slice(),
                [Step::UpdatePayload {
                    class: PayloadClass::Secret,
                    ..
                }]
            ),
            "{plan:?}"
        );
        assert!(matches!(
            service_step(&plan, "app_web"),
            Step::KeepService { .. }
        ));
        assert!(matches!(
            service_step(&plan, "app_worker"),
            Step::KeepService { .. }
        ));
    }

    #[test]
    fn only_the_changed_service_is_updated_with_the_version_read() {
        let cluster = deployed();
        let changed = FILE.replace("MODE=fast", "MODE=slow");
        let plan = plan(&changed, &cluster, DeployOptions::default());
        assert_eq!(messages(&plan), ["Updating service app_worker (id: svc1)"]);
        match service_step(&plan, "app_worker") {
            Step::UpdateService { id, version, spec } => {
                assert_eq!((id.as_str(), *version), ("svc1", 7));
                assert_eq!(spec.task.env, ["MODE=slow"]);
                // The pinned digest stays: the file names the same image.
                assert!(spec
                    .task
                    .container
                    .as_ref()
                    .unwrap()
                    .image
                    .contains("@sha256:"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            service_step(&plan, "app_web"),
            Step::KeepService { .. }
        ));
    }

    #[test]
    fn a_new_image_or_resolve_always_asks_the_registry_again() {
        let cluster = deployed();
        let plan_new = plan(
            &FILE.replace("worker:1", "worker:2"),
            &cluster,
            DeployOptions::default(),
        );
        match service_step(&plan_new, "app_worker") {
            Step::UpdateService { spec, .. } => {
                assert_eq!(
                    spec.task.container.as_ref().unwrap().image,
                    "reg:5000/worker:2"
                )
            }
            other => panic!("{other:?}"),
        }
        let always = plan(
            FILE,
            &cluster,
            DeployOptions {
                resolve_image: ResolveImage::Always,
                ..DeployOptions::default()
            },
        );
        assert_eq!(
            messages(&always),
            [
                "Updating service app_web (id: svc0)",
                "Updating service app_worker (id: svc1)"
            ]
        );
        let never = plan(
            FILE,
            &cluster,
            DeployOptions {
                resolve_image: ResolveImage::Never,
                ..DeployOptions::default()
            },
        );
        assert!(messages(&never).is_empty());
    }

    #[test]
    fn prune_removes_services_the_file_no_longer_names_and_nothing_else() {
        let mut cluster = deployed();
        let mut other = cluster.services[0].clone();
        other.id = "svc9".into();
        other.spec.name = "shop_web".into();
        other
            .spec
            .labels
            .insert(NAMESPACE_LABEL.into(), "shop".into());
        cluster.services.push(other);
        let without_worker = FILE.replace(
            "  worker:\n    image: reg:5000/worker:1\n    environment: [MODE=fast]\n",
            "",
        );
        let kept = plan(&without_worker, &cluster, DeployOptions::default());
        assert!(messages(&kept).is_empty(), "{:?}", messages(&kept));
        let pruned = plan(
            &without_worker,
            &cluster,
            DeployOptions {
                prune: true,
                ..DeployOptions::default()
            },
        );
        assert_eq!(messages(&pruned), ["Removing service app_worker"]);
        assert_eq!(
            pruned.steps[0].request(),
            Some(ApiRequest::ServiceRemove {
                service: "svc1".into()
            })
        );
    }

    #[test]
    fn external_objects_must_exist_and_are_never_created() {
        let text = "services:\n  a:\n    image: x\n    networks: [proxy]\n    secrets: [cert]\n\
                    networks:\n  proxy: {external: true}\nsecrets:\n  cert: {external: true}\n";
        let stack = stack(text);
        let externals = |names: &[&str]| {
            names
                .iter()
                .map(|n| DesiredObject {
                    name: n.to_string(),
                    labels: BTreeMap::new(),
                    data: None,
                })
                .collect::<Vec<_>>()
        };
        let run = |cluster: &Cluster| {
            plan_deploy(
                "app",
                &networks(&stack),
                &externals(&["cert"]),
                &[],
                &desired(&stack),
                cluster,
                DeployOptions::default(),
            )
        };
        let err = run(&Cluster::default()).unwrap_err();
        assert!(
            matches!(&err, StackError::ExternalNetworkMissing(n) if n == "proxy"),
            "{err}"
        );
        let mut cluster = Cluster {
            networks: vec![network("proxy", "n1", None)],
            ..Cluster::default()
        };
        let err = run(&cluster).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret not found: cert (it is declared as external: create it before the stack is deployed)"
        );
        cluster
            .secrets
            .push(payload("cert", "s1", &BTreeMap::new()));
        let plan = run(&cluster).unwrap();
        assert_eq!(messages(&plan), ["Creating service app_a"]);
    }

    #[test]
    fn changed_labels_or_config_data_update_the_object() {
        let mut cluster = deployed();
        cluster.configs[0].spec.data = Some(PayloadData(b"old".to_vec()));
        let plan = plan(FILE, &cluster, DeployOptions::default());
        let updates: Vec<&Step> = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::UpdatePayload { .. }))
            .collect();
        // The secret is always sent (its data is never shown; the managers
        // refuse a change), the config because its data changed.
        assert_eq!(updates.len(), 2, "{plan:?}");
        assert_eq!(
            updates[1].request(),
            Some(ApiRequest::PayloadUpdate {
                class: PayloadClass::Config,
                name_or_id: "cfg1".into(),
                version: Some(3),
                labels: cluster.configs[0].spec.labels.clone(),
                data: Some(PayloadData(b"app_site".to_vec())),
            })
        );
    }

    #[test]
    fn remove_takes_services_then_secrets_configs_and_networks_of_the_stack_only() {
        let mut cluster = deployed();
        cluster
            .networks
            .push(network("other_default", "net2", Some("other")));
        cluster.networks.push(network("plain", "net3", None));
        let plan = plan_remove("app", &cluster);
        let lines: Vec<String> = plan
            .steps
            .iter()
            .chain(&plan.networks)
            .filter_map(Step::message)
            .collect();
        assert_eq!(
            lines,
            [
                "Removing service app_web",
                "Removing service app_worker",
                "Removing secret app_pw",
                "Removing config app_site",
                "Removing network app_default"
            ]
        );
        assert_eq!(
            plan.networks[0].request(),
            Some(ApiRequest::NetworkRemove {
                name_or_id: "net1".into()
            })
        );
        assert!(plan_remove("nothing", &cluster).is_empty());

        let task = |service: &str, state: TaskState| -> TaskView {
            serde_json::from_value(json!({
                "ID": "t", "Name": "x.1", "ServiceID": service, "Slot": 1, "NodeID": null,
                "Node": "", "DesiredState": "shutdown", "CurrentState": state,
                "SinceMs": 0, "Message": "", "Error": null, "ExitCode": null,
                "Addresses": [], "SpecVersion": 1, "Command": [], "CreatedAtMs": 0
            }))
            .unwrap()
        };
        let tasks = [
            task("svc0", TaskState::Running),
            task("svc1", TaskState::Shutdown),
            task("svc9", TaskState::Running),
        ];
        assert_eq!(plan.draining(&tasks), 1);
    }

    #[test]
    fn stacks_are_counted_by_label() {
        let mut cluster = deployed();
        let mut other = cluster.services[0].clone();
        other.spec.labels = BTreeMap::from([(NAMESPACE_LABEL.into(), "b".into())]);
        cluster.services.push(other);
        let mut plain = cluster.services[0].clone();
        plain.spec.labels.clear();
        cluster.services.push(plain);
        assert_eq!(
            stack_names(&cluster.services),
            [("app".to_string(), 2), ("b".to_string(), 1)]
        );
    }
}
