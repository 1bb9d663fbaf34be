//! `/_ping`, `/version`, `/info`, `/swarm` (inspect, init, join, leave,
//! update, unlock key, unlock).

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shoal_control::api::{
    ApiRequest, ClusterInfo as Standing, LocalRequest, NodeView, TokenAnswer,
};
use shoal_control::engine::{
    self, ClusterInfo, EncryptionConfig, Info, Peer, Swarm, SwarmInfo, SwarmSpec, Version,
};
use shoal_control::objects::Role;

use super::http::{self, body, flag, ok, Answer, Refusal, RefusalKind};
use super::{Api, NodeState};

/// `GET|HEAD /_ping`: `OK`, with the version headers the client reads.
pub async fn ping() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store, must-revalidate"),
            ),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        "OK",
    )
        .into_response()
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub async fn version() -> Answer {
    ok(&Version::of_shoal(&kernel_version()))
}

/// `GET /info`: the host, and this node's place in the swarm.
pub async fn info(State(api): State<Api>) -> Answer {
    let state = api.0.node_state();
    let mut swarm = SwarmInfo {
        local_node_state: match state {
            NodeState::Inactive => "inactive",
            NodeState::Locked => "locked",
            NodeState::Worker | NodeState::Manager => "active",
        }
        .into(),
        control_available: state == NodeState::Manager,
        ..SwarmInfo::default()
    };
    if state == NodeState::Manager {
        let standing: Standing = api.ask(ApiRequest::Info).await?;
        let nodes: Vec<NodeView> = api.ask(ApiRequest::NodeList).await?;
        swarm.node_id = standing.node_id.clone();
        swarm.node_addr = nodes
            .iter()
            .find(|n| n.id == standing.node_id)
            .map(|n| n.status.addr.clone())
            .unwrap_or_default();
        swarm.nodes = nodes.len() as i64;
        let managers: Vec<&NodeView> = nodes
            .iter()
            .filter(|n| n.spec.role == Role::Manager)
            .collect();
        swarm.managers = managers.len() as i64;
        swarm.remote_managers = Some(
            managers
                .iter()
                .map(|n| Peer {
                    node_id: n.id.clone(),
                    addr: n
                        .manager_status
                        .as_ref()
                        .map(|m| m.addr.clone())
                        .unwrap_or_default(),
                })
                .collect(),
        );
        swarm.cluster = Some(cluster_info(&standing));
    }
    let host = nix::sys::utsname::uname().ok();
    let info = Info {
        id: swarm.node_id.clone(),
        driver: "overlay2".into(),
        kernel_version: kernel_version(),
        operating_system: "shoal".into(),
        os_type: "linux".into(),
        architecture: std::env::consts::ARCH.into(),
        ncpu: std::thread::available_parallelism().map_or(1, |n| n.get() as i64),
        name: host
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_default(),
        server_version: env!("CARGO_PKG_VERSION").into(),
        default_runtime: "runc".into(),
        logging_driver: "json-file".into(),
        cgroup_driver: "cgroupfs".into(),
        swarm,
        ..Info::default()
    };
    ok(&info)
}

/// What shoal can say about the swarm object: its id and autolock
/// setting; timings shoal does not have stay zero.
fn cluster_info(standing: &Standing) -> ClusterInfo {
    ClusterInfo {
        id: standing.cluster_id.clone(),
        created_at: engine::ZERO_TIME.into(),
        updated_at: engine::ZERO_TIME.into(),
        spec: SwarmSpec {
            name: "default".into(),
            labels: Some(engine::Labels::new()),
            ..SwarmSpec::default()
        },
        ..ClusterInfo::default()
    }
}

/// `GET /swarm`: the swarm and its join tokens.
pub async fn swarm_inspect(State(api): State<Api>) -> Answer {
    ok(&swarm(&api).await?)
}

async fn swarm(api: &Api) -> Result<Swarm, Refusal> {
    let standing: Standing = api.ask(ApiRequest::Info).await?;
    let token = |role| ApiRequest::JoinToken {
        role,
        rotate: false,
    };
    let worker: TokenAnswer = api.ask(token(Role::Worker)).await?;
    let manager: TokenAnswer = api.ask(token(Role::Manager)).await?;
    let mut cluster = cluster_info(&standing);
    // Autolock is on exactly when there is an unlock key.
    let key = api.ask::<TokenAnswer>(ApiRequest::UnlockKey).await;
    cluster.spec.encryption_config = EncryptionConfig {
        auto_lock_managers: key.is_ok(),
    };
    Ok(Swarm {
        cluster,
        join_tokens: engine::JoinTokens {
            worker: worker.token,
            manager: manager.token,
        },
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct InitRequest {
    listen_addr: String,
    advertise_addr: String,
    force_new_cluster: bool,
    spec: SwarmSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct JoinRequest {
    listen_addr: String,
    advertise_addr: String,
    remote_addrs: Vec<String>,
    join_token: String,
}

/// The port of a `HOST:PORT` listen address (2377 when none is given).
fn listen_port(listen_addr: &str) -> Result<u16, Refusal> {
    match listen_addr.rsplit_once(':') {
        None => Ok(2377),
        Some((_, port)) => port
            .parse()
            .map_err(|_| Refusal::invalid(format!("invalid ListenAddr `{listen_addr}`"))),
    }
}

/// The IP of an advertise address `IP` or `IP:PORT`.
fn advertise_ip(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((ip, port)) if port.parse::<u16>().is_ok() && !ip.contains(':') => ip,
        _ => addr,
    }
}

/// `POST /swarm/init`: answers the new node's id as a JSON string.
pub async fn swarm_init(State(api): State<Api>, bytes: Bytes) -> Answer {
    let request: InitRequest = body(&bytes)?;
    if request.advertise_addr.is_empty() && !request.force_new_cluster {
        return Err(Refusal::invalid(
            "shoal needs the address other nodes reach this one on: use --advertise-addr IP",
        ));
    }
    let expiry = request.spec.ca_config.node_cert_expiry;
    api.verb(LocalRequest::Init {
        advertise_addr: advertise_ip(&request.advertise_addr).to_string(),
        listen_port: listen_port(&request.listen_addr)?,
        force_new_cluster: request.force_new_cluster,
        autolock: request.spec.encryption_config.auto_lock_managers,
        cert_expiry_secs: (expiry > 0).then_some(expiry.unsigned_abs() / 1_000_000_000),
    })
    .await?;
    let standing: Standing = api.ask(ApiRequest::Info).await?;
    ok(&standing.node_id)
}

/// `POST /swarm/join`.
pub async fn swarm_join(State(api): State<Api>, bytes: Bytes) -> Answer {
    let request: JoinRequest = body(&bytes)?;
    let Some(manager) = request.remote_addrs.first() else {
        return Err(Refusal::invalid("RemoteAddrs: give a manager's address"));
    };
    api.verb(LocalRequest::Join {
        token: request.join_token,
        manager: manager.clone(),
        advertise_addr: (!request.advertise_addr.is_empty())
            .then(|| advertise_ip(&request.advertise_addr).to_string()),
        listen_port: listen_port(&request.listen_addr)?,
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /swarm/leave[?force=1]`.
pub async fn swarm_leave(State(api): State<Api>, Query(query): Query<http::Query>) -> Answer {
    api.verb(LocalRequest::Leave {
        force: flag(&query, "force"),
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /swarm/update?rotateWorkerToken=..&rotateManagerToken=..`: the
/// whole spec comes back; shoal applies autolock, the certificate
/// lifetime, the task history limit (`TaskHistoryRetentionLimit`) and the
/// token rotations.
pub async fn swarm_update(
    State(api): State<Api>,
    Query(query): Query<http::Query>,
    bytes: Bytes,
) -> Answer {
    let spec: SwarmSpec = body(&bytes)?;
    if flag(&query, "rotateManagerUnlockKey") {
        return Err(Refusal::new(
            RefusalKind::NotImplemented,
            "rotating the unlock key alone is not supported: turn autolock off and on again",
        ));
    }
    for (key, role) in [
        ("rotateWorkerToken", Role::Worker),
        ("rotateManagerToken", Role::Manager),
    ] {
        if flag(&query, key) {
            api.ask::<TokenAnswer>(ApiRequest::JoinToken { role, rotate: true })
                .await?;
        }
    }
    let current = swarm(&api).await?;
    let autolock = spec.encryption_config.auto_lock_managers;
    let expiry = spec.ca_config.node_cert_expiry;
    let changed_autolock =
        (autolock != current.cluster.spec.encryption_config.auto_lock_managers).then_some(autolock);
    let changed_expiry = (expiry > 0 && expiry != current.cluster.spec.ca_config.node_cert_expiry)
        .then_some(expiry.unsigned_abs() / 1_000_000_000);
    if changed_autolock.is_some() || changed_expiry.is_some() {
        api.ask::<shoal_control::api::Done>(ApiRequest::SwarmUpdate {
            autolock: changed_autolock,
            cert_expiry_secs: changed_expiry,
            rotate_gossip_key: false,
        })
        .await?;
    }
    let history = spec.orchestration.task_history_retention_limit;
    if let Some(limit) = history.filter(|limit| {
        Some(*limit)
            != current
                .cluster
                .spec
                .orchestration
                .task_history_retention_limit
    }) {
        api.ask::<shoal_control::api::Done>(ApiRequest::SetTaskHistoryLimit { limit })
            .await?;
    }
    Ok(StatusCode::OK.into_response())
}

/// `GET /swarm/unlockkey`.
pub async fn unlock_key(State(api): State<Api>) -> Answer {
    let key: TokenAnswer = api.ask(ApiRequest::UnlockKey).await?;
    ok(&serde_json::json!({ "UnlockKey": key.token }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct UnlockRequest {
    unlock_key: String,
}

/// `POST /swarm/unlock`.
pub async fn swarm_unlock(State(api): State<Api>, bytes: Bytes) -> Answer {
    let request: UnlockRequest = body(&bytes)?;
    api.verb(LocalRequest::Unlock {
        key: request.unlock_key,
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

/// A path the API does not have: Docker's 404.
pub async fn unknown() -> Answer {
    Err(Refusal::not_found("page not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_and_advertise_addresses_read_like_dockers() {
        assert_eq!(listen_port("0.0.0.0:2377").unwrap(), 2377);
        assert_eq!(listen_port("0.0.0.0:4000").unwrap(), 4000);
        assert_eq!(listen_port("").unwrap(), 2377);
        assert!(listen_port("0.0.0.0:x").is_err());
        assert_eq!(advertise_ip("198.18.0.1"), "198.18.0.1");
        assert_eq!(advertise_ip("198.18.0.1:2377"), "198.18.0.1");
    }
}
