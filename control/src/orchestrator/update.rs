//! Rolling updates and rollbacks. A task is current when it was made from
//! the service's task spec and networks; an update replaces the others a
//! batch (`parallelism`) at a time. A batch is done when each of its new
//! tasks has run for `monitor`; the next starts `delay` later. A new task
//! that fails during the update triggers `failure_action`: pause, continue,
//! or roll back to the previous spec (with the rollback settings).

use crate::objects::{
    FailureAction, Service, Task, TaskState, UpdateOrder, UpdateState, UpdateStatus,
};

use std::collections::BTreeMap;

use super::slots::Key;

/// What an update needs of the pass it runs in: the tasks, and the two
/// moves it makes.
pub(super) trait Tasks {
    fn now(&self) -> u64;
    /// The ingress network's id, if the swarm has one: a service with
    /// published ports attaches its tasks to it first.
    fn ingress(&self) -> Option<&str>;
    fn task(&self, id: &str) -> Option<&Task>;
    fn all(&self) -> impl Iterator<Item = &Task>;
    /// The ids of a service's wanted tasks, by key, oldest first.
    fn wanted_by_key(&self, service_id: &str) -> BTreeMap<Key, Vec<String>>;
    /// Asks a task to stop.
    fn shut_down(&mut self, id: &str, why: &str);
    /// A new task of `service` for `key`, from its current spec.
    fn create(&mut self, service: &Service, key: &Key);
}

/// Whether `task` runs what `service` asks now: its spec, and its
/// networks as the allocator gives them (the ingress network first when the
/// service publishes ports, then the service's own). Comparing with the
/// service's networks alone would call every task of a published service
/// outdated, and an update would replace them without end.
pub(super) fn is_current(task: &Task, service: &Service, ingress: Option<&str>) -> bool {
    let ingress = ingress.filter(|_| !service.spec.ports.is_empty());
    task.spec == service.spec.task
        && task.host_ports == service.spec.host_ports()
        && if task.status.state == TaskState::New && task.networks.is_empty() {
            true
        } else {
            task.networks.iter().map(|a| a.network.as_str()).eq(ingress
                .into_iter()
                .chain(service.spec.networks.iter().map(String::as_str)))
                && task
                    .networks
                    .iter()
                    .all(|a| attachment_is_current(a, service))
        }
}

/// Whether an attachment carries the service's virtual IP (none for
/// `dnsrr`) and aliases on its network, so a change of endpoint mode or
/// aliases replaces the tasks, as Swarm does.
fn attachment_is_current(attachment: &crate::objects::TaskAttachment, service: &Service) -> bool {
    let vip = service
        .virtual_ips
        .iter()
        .find(|v| v.network == attachment.network)
        .map(|v| v.addr);
    let aliases = service
        .spec
        .network_aliases
        .get(&attachment.network)
        .map_or(&[][..], Vec::as_slice);
    attachment.vip == vip && attachment.aliases == aliases
}

/// Moves the service's update on; returns the service if its update status
/// (or, for a rollback, its spec) changed.
pub(super) fn advance(pass: &mut impl Tasks, service: &Service) -> Option<Service> {
    let status = service.update_status.as_ref()?;
    if !status.state.in_progress() {
        return None;
    }
    let rollback = status.state.is_rollback();
    let config = if rollback {
        service.spec.rollback
    } else {
        service.spec.update
    };
    let now = pass.now();
    let keys = pass.wanted_by_key(&service.id);
    let ingress = pass.ingress().map(str::to_string);
    let ingress = ingress.as_deref();

    let failed: Vec<&Task> = pass
        .all()
        .filter(|t| {
            t.service_id == service.id
                && t.created_at_ms >= status.started_at_ms
                && is_current(t, service, ingress)
                && matches!(
                    t.status.state,
                    TaskState::Failed | TaskState::Rejected | TaskState::Complete
                )
        })
        .collect();
    let allowed = config.max_failure_ratio * keys.len().max(1) as f32;
    if !failed.is_empty() && failed.len() as f32 > allowed {
        let culprit = failed[0].id.clone();
        match config.failure_action {
            FailureAction::Continue => {}
            FailureAction::Rollback if !rollback && service.previous_spec.is_some() => {
                return Some(rolled_back(service, &culprit, now));
            }
            _ => return Some(paused(service, rollback, &culprit, now)),
        }
    }

    // A key whose new task runs no longer needs its old ones (start-first).
    for ids in keys.values() {
        let has_running_current = ids.iter().any(|id| {
            pass.task(id).is_some_and(|t| {
                is_current(t, service, ingress) && t.status.state == TaskState::Running
            })
        });
        if has_running_current {
            for id in ids {
                if pass
                    .task(id)
                    .is_some_and(|t| !is_current(t, service, ingress))
                {
                    pass.shut_down(id, "updated");
                }
            }
        }
    }

    let mut in_flight = false;
    let mut last_done = 0;
    let mut dirty: Vec<&Key> = Vec::new();
    for (key, ids) in &keys {
        let tasks: Vec<&Task> = ids.iter().filter_map(|id| pass.task(id)).collect();
        let current: Vec<&&Task> = tasks
            .iter()
            .filter(|t| is_current(t, service, ingress))
            .collect();
        if current.is_empty() {
            dirty.push(key);
        }
        for t in current {
            if t.status.state.is_final() {
                continue;
            }
            let done_at = t.status.timestamp_ms + config.monitor_ms;
            if t.status.state != TaskState::Running || now < done_at {
                in_flight = true;
            } else {
                last_done = last_done.max(done_at);
            }
        }
    }
    if in_flight {
        return None;
    }
    if dirty.is_empty() {
        let mut done = service.clone();
        done.update_status = Some(UpdateStatus {
            state: if rollback {
                UpdateState::RollbackCompleted
            } else {
                UpdateState::Completed
            },
            started_at_ms: status.started_at_ms,
            completed_at_ms: Some(now),
            message: if rollback {
                "rollback completed".into()
            } else {
                "update completed".into()
            },
        });
        return Some(done);
    }
    if last_done > 0 && now < last_done + config.delay_ms {
        return None;
    }
    let batch = if config.parallelism == 0 {
        dirty.len()
    } else {
        config.parallelism as usize
    };
    let batch: Vec<(Key, Vec<String>)> = dirty
        .into_iter()
        .take(batch)
        .map(|k| (k.clone(), keys.get(k).cloned().unwrap_or_default()))
        .collect();
    for (key, old) in batch {
        if config.order == UpdateOrder::StopFirst {
            for id in &old {
                pass.shut_down(id, "updated");
            }
        }
        pass.create(service, &key);
    }
    None
}

fn paused(service: &Service, rollback: bool, culprit: &str, now: u64) -> Service {
    let mut s = service.clone();
    let what = if rollback { "rollback" } else { "update" };
    s.update_status = Some(UpdateStatus {
        state: if rollback {
            UpdateState::RollbackPaused
        } else {
            UpdateState::Paused
        },
        started_at_ms: service
            .update_status
            .as_ref()
            .map_or(now, |u| u.started_at_ms),
        completed_at_ms: None,
        message: format!("{what} paused due to failure or early termination of task {culprit}"),
    });
    s
}

/// The service with its previous spec back, rolling back from now.
pub fn rolled_back(service: &Service, culprit: &str, now: u64) -> Service {
    let mut s = service.clone();
    if let Some(previous) = s.previous_spec.take() {
        s.previous_spec = Some(std::mem::replace(&mut s.spec, previous));
        s.spec_version += 1;
    }
    s.update_status = Some(UpdateStatus {
        state: UpdateState::RollbackStarted,
        started_at_ms: now,
        completed_at_ms: None,
        message: if culprit.is_empty() {
            "manually requested rollback".into()
        } else {
            format!("update rolled back due to failure or early termination of task {culprit}")
        },
    });
    s.updated_at = now / 1000;
    s
}
