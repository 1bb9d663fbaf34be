//! `secret create|ls|inspect|rm` and `config create|ls|inspect|rm`, the
//! resolution of a service's `--secret`/`--config` to the objects, and the
//! index the dispatcher uses to put their data in the assignments of the
//! tasks that use them (and only those). Creates and removals write the
//! service guard, as service creates and updates do: a service can never
//! be stored using a secret that a racing `secret rm` removed.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{now_secs, Link, Manager, ManagerError, Store};
use crate::api::{ApiResponse, PayloadView};
use crate::objects::{
    find, new_payload_id, Config, ConfigKind, GuardVersions, LookupError, Payload, PayloadData,
    PayloadError, PayloadFile, PayloadKind, PayloadReference, Secret, SecretKind, ServiceSpec,
    TaskSpec, CONFIGS_BASE, SECRETS_BASE,
};
use crate::store::{Command, Objects, Response};

/// How many times a change decides again after losing a race.
const ATTEMPTS: usize = 5;

/// What a kind is to a task spec: where its references are, and where its
/// files go by default.
pub trait TaskFiles: PayloadKind {
    const BASE: &'static str;
    fn references(spec: &TaskSpec) -> &[PayloadReference];
    fn references_mut(spec: &mut TaskSpec) -> &mut Vec<PayloadReference>;
}

impl TaskFiles for SecretKind {
    const BASE: &'static str = SECRETS_BASE;
    fn references(spec: &TaskSpec) -> &[PayloadReference] {
        &spec.secrets
    }
    fn references_mut(spec: &mut TaskSpec) -> &mut Vec<PayloadReference> {
        &mut spec.secrets
    }
}

impl TaskFiles for ConfigKind {
    const BASE: &'static str = CONFIGS_BASE;
    fn references(spec: &TaskSpec) -> &[PayloadReference] {
        &spec.configs
    }
    fn references_mut(spec: &mut TaskSpec) -> &mut Vec<PayloadReference> {
        &mut spec.configs
    }
}

impl<S: Store, L: Link> Manager<S, L> {
    /// Every object of kind `K` with its version, by name.
    fn payloads<K: PayloadKind>(
        &self,
        objects: &Objects,
    ) -> Result<Vec<(Payload<K>, u64)>, ManagerError> {
        let mut all: Vec<(Payload<K>, u64)> = objects
            .list_as::<Payload<K>>(K::KIND)
            .map_err(ManagerError::store)?
            .into_iter()
            .map(|(_, v)| (v.value, v.version))
            .collect();
        all.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(all)
    }

    /// `secret create` / `config create` (leader only).
    pub(super) async fn create_payload<K: PayloadKind>(
        &self,
        name: String,
        labels: BTreeMap<String, String>,
        data: PayloadData,
    ) -> Result<ApiResponse, ManagerError> {
        let object = Payload::<K>::new(new_payload_id(), name, labels, data, now_secs())?;
        for _ in 0..ATTEMPTS {
            let objects = self.objects();
            let guards = GuardVersions::read(&objects);
            if self
                .payloads::<K>(&objects)?
                .iter()
                .any(|(p, _)| p.name == object.name)
            {
                return Err(PayloadError::NameTaken(object.name.clone(), K::WHAT).into());
            }
            let write = Command::Batch(vec![
                guards
                    .services_changed(&object.id)
                    .map_err(ManagerError::store)?,
                Command::put(&object, Some(0)).map_err(ManagerError::store)?,
            ]);
            if let Response::Ok { version } = self.submit(write).await? {
                tracing::info!("{} {} ({}) created", K::WHAT, object.name, object.id);
                return Ok(ApiResponse::Payload {
                    item: Box::new(PayloadView::new(&object, version)),
                });
            }
        }
        Err(ManagerError::Contended { kind: K::WHAT })
    }

    /// `secret ls` / `config ls`.
    pub(super) fn payload_list<K: PayloadKind>(&self) -> Result<ApiResponse, ManagerError> {
        let items = self
            .payloads::<K>(&self.objects())?
            .iter()
            .map(|(p, v)| PayloadView::new(p, *v))
            .collect();
        Ok(ApiResponse::Payloads { items })
    }

    /// `secret inspect` / `config inspect`.
    pub(super) fn payload_inspect<K: PayloadKind>(
        &self,
        wanted: &str,
    ) -> Result<ApiResponse, ManagerError> {
        let all = self.payloads::<K>(&self.objects())?;
        let objects: Vec<Payload<K>> = all.iter().map(|(p, _)| p.clone()).collect();
        let found = find(&objects, wanted)?;
        let version = all
            .iter()
            .find(|(p, _)| p.id == found.id)
            .map_or(0, |(_, v)| *v);
        Ok(ApiResponse::Payload {
            item: Box::new(PayloadView::new(found, version)),
        })
    }

    /// `secret rm` / `config rm` (leader only): refused while a service's
    /// spec uses it, naming the services, as Docker does.
    pub(super) async fn remove_payload<K: TaskFiles>(
        &self,
        wanted: &str,
    ) -> Result<ApiResponse, ManagerError> {
        for _ in 0..ATTEMPTS {
            let objects = self.objects();
            let guards = GuardVersions::read(&objects);
            let all: Vec<Payload<K>> = self
                .payloads::<K>(&objects)?
                .into_iter()
                .map(|(p, _)| p)
                .collect();
            let found = find(&all, wanted)?;
            let mut users: Vec<String> = self
                .services(&objects)
                .iter()
                .filter(|s| K::references(&s.spec.task).iter().any(|r| r.id == found.id))
                .map(|s| s.spec.name.clone())
                .collect();
            if !users.is_empty() {
                users.sort();
                return Err(PayloadError::InUse {
                    what: K::WHAT,
                    name: found.name.clone(),
                    services: users.join(", "),
                }
                .into());
            }
            let write = Command::Batch(vec![
                guards
                    .services_changed(&found.id)
                    .map_err(ManagerError::store)?,
                Command::remove::<Payload<K>>(&found.id, None),
            ]);
            match self.submit(write).await? {
                Response::Ok { .. } => {
                    tracing::info!("{} {} ({}) removed", K::WHAT, found.name, found.id);
                    return Ok(ApiResponse::Done {
                        message: found.id.clone(),
                    });
                }
                Response::Conflict { .. } => continue,
                Response::NotFound { .. } => {
                    return Err(LookupError::NotFound {
                        kind: K::WHAT,
                        name: wanted.to_string(),
                    }
                    .into())
                }
            }
        }
        Err(ManagerError::Contended { kind: K::WHAT })
    }

    /// A label update (leader only): the data may be given again, but not
    /// changed, as in Docker.
    pub(super) async fn update_payload<K: PayloadKind>(
        &self,
        wanted: &str,
        version: Option<u64>,
        labels: BTreeMap<String, String>,
        data: Option<PayloadData>,
    ) -> Result<ApiResponse, ManagerError> {
        let objects = self.objects();
        let all = self.payloads::<K>(&objects)?;
        let items: Vec<Payload<K>> = all.iter().map(|(p, _)| p.clone()).collect();
        let found = find(&items, wanted)?;
        let stored = all
            .iter()
            .find(|(p, _)| p.id == found.id)
            .map_or(0, |(_, v)| *v);
        if let Some(read) = version.filter(|v| *v != stored) {
            return Err(ManagerError::Stale {
                name: found.name.clone(),
                read,
                now: stored,
            });
        }
        if data
            .as_ref()
            .is_some_and(|d| !d.0.is_empty() && *d != found.data)
        {
            return Err(PayloadError::DataChange { what: K::WHAT }.into());
        }
        let mut updated = found.clone();
        updated.labels = labels;
        updated.updated_at = now_secs();
        let write = Command::put(&updated, Some(stored)).map_err(ManagerError::store)?;
        match self.submit(write).await? {
            Response::Ok { version } => Ok(ApiResponse::Payload {
                item: Box::new(PayloadView::new(&updated, version)),
            }),
            Response::Conflict { .. } | Response::NotFound { .. } => Err(ManagerError::Changed {
                kind: K::WHAT,
                name: found.name.clone(),
            }),
        }
    }

    /// Resolves the spec's `--secret` and `--config` references (names or
    /// ids) to the stored objects, checking their targets.
    pub(super) fn resolve_payloads(
        &self,
        objects: &Objects,
        spec: &mut ServiceSpec,
    ) -> Result<(), ManagerError> {
        self.resolve::<SecretKind>(objects, &mut spec.task)?;
        self.resolve::<ConfigKind>(objects, &mut spec.task)
    }

    fn resolve<K: TaskFiles>(
        &self,
        objects: &Objects,
        task: &mut TaskSpec,
    ) -> Result<(), ManagerError> {
        if K::references(task).is_empty() {
            return Ok(());
        }
        let all: Vec<Payload<K>> = self
            .payloads::<K>(objects)?
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let mut paths = HashSet::new();
        for reference in K::references_mut(task) {
            let wanted = if reference.id.is_empty() {
                &reference.name
            } else {
                &reference.id
            };
            let found = find(&all, wanted)?;
            reference.id.clone_from(&found.id);
            reference.name.clone_from(&found.name);
            check_target::<K>(reference)?;
            if !paths.insert(reference.path_in_task(K::BASE)) {
                return Err(PayloadError::DuplicateTarget {
                    what: K::WHAT,
                    target: reference.path_in_task(K::BASE),
                }
                .into());
            }
        }
        Ok(())
    }
}

/// A target is a path without `.` or `..` components or empty ones, and a
/// mode only of permission bits.
fn check_target<K: PayloadKind>(reference: &PayloadReference) -> Result<(), PayloadError> {
    let path = reference.path_in_task("/");
    let bad_component = path
        .split('/')
        .skip(1)
        .any(|c| c.is_empty() || c == "." || c == "..");
    if bad_component || path == "/" {
        return Err(PayloadError::BadTarget {
            what: K::WHAT,
            target: reference.target.clone(),
        });
    }
    if reference.mode > 0o777 {
        return Err(PayloadError::BadMode {
            what: K::WHAT,
            mode: reference.mode,
        });
    }
    Ok(())
}

/// The data of every secret and config by id, for the assignments.
pub(super) struct PayloadIndex {
    secrets: HashMap<String, Secret>,
    configs: HashMap<String, Config>,
}

impl PayloadIndex {
    pub(super) fn new(secrets: Vec<Secret>, configs: Vec<Config>) -> Self {
        PayloadIndex {
            secrets: secrets.into_iter().map(|s| (s.id.clone(), s)).collect(),
            configs: configs.into_iter().map(|c| (c.id.clone(), c)).collect(),
        }
    }

    /// The files of a task's secrets; one removed since is left out (the
    /// node refuses to start a task whose secret is missing).
    pub(super) fn secret_files(&self, references: &[PayloadReference]) -> Vec<PayloadFile> {
        files::<SecretKind>(&self.secrets, references)
    }

    pub(super) fn config_files(&self, references: &[PayloadReference]) -> Vec<PayloadFile> {
        files::<ConfigKind>(&self.configs, references)
    }
}

fn files<K: TaskFiles>(
    objects: &HashMap<String, Payload<K>>,
    references: &[PayloadReference],
) -> Vec<PayloadFile> {
    references
        .iter()
        .filter_map(|r| {
            objects.get(&r.id).map(|o| PayloadFile {
                path: r.path_in_task(K::BASE),
                uid: r.uid,
                gid: r.gid,
                mode: r.mode,
                data: o.data.clone(),
            })
        })
        .collect()
}
