//! `/nodes` (ls with filters, inspect, update, rm) and `/networks`
//! (swarm-scope overlay create, ls, inspect, rm).

use shoal_control::error_chain::ErrorChain;
use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use shoal_control::api::{ApiRequest, Done, NetworkView, NodeView, MTU_OPTION};
use shoal_control::engine::filter::{self, Filters};
use shoal_control::engine::{NetworkResource, Node, NodeSpec};
use shoal_control::objects::{Availability, Role};

use super::http::{self, body, created, flag, no_content, ok, version, Answer, Refusal};
use super::Api;

/// The `filters` query parameter (Docker's JSON map), empty when absent.
pub fn filters(query: &http::Query) -> Result<Filters, Refusal> {
    match query.get("filters") {
        None => Ok(Filters::default()),
        Some(text) if text.is_empty() => Ok(Filters::default()),
        Some(text) => Filters::from_json(text).map_err(|e| Refusal::invalid(e.chain().to_string())),
    }
}

/// `GET /nodes?filters=...`.
pub async fn node_list(State(api): State<Api>, Query(query): Query<http::Query>) -> Answer {
    let filters = filters(&query)?;
    filter::check_nodes(&filters).map_err(|e| Refusal::invalid(e.chain().to_string()))?;
    let views: Vec<NodeView> = api.ask(ApiRequest::NodeList).await?;
    let nodes: Vec<Node> = views
        .iter()
        .map(Node::from)
        .filter(|n| filter::node_matches(&filters, n))
        .collect();
    ok(&nodes)
}

/// `GET /nodes/{id}`: by id, id prefix or hostname.
pub async fn node_inspect(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    let view: NodeView = api.ask(ApiRequest::NodeInspect { node: id }).await?;
    ok(&Node::from(&view))
}

/// `DELETE /nodes/{id}[?force=1]`.
pub async fn node_remove(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(query): Query<http::Query>,
) -> Answer {
    api.ask::<Done>(ApiRequest::NodeRemove {
        node: id,
        force: flag(&query, "force"),
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /nodes/{id}/update?version=N`: the whole new spec; shoal applies
/// the difference (availability, labels, role).
pub async fn node_update(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(query): Query<http::Query>,
    bytes: Bytes,
) -> Answer {
    let spec: NodeSpec = body(&bytes)?;
    let current: NodeView = api.ask(ApiRequest::NodeInspect { node: id }).await?;
    let current_version = Node::from(&current).version.index;
    if let Some(asked) = version(&query)? {
        if asked != current_version {
            return Err(Refusal::new(
                http::RefusalKind::Conflict,
                format!(
                    "update out of sequence: node {} is at version {current_version}, not {asked}; read it again",
                    current.description.hostname
                ),
            ));
        }
    }
    let availability = match spec.availability.as_str() {
        "" => None,
        text => Some(
            text.parse::<Availability>()
                .map_err(|e| Refusal::invalid(format!("Availability: {e}")))?,
        ),
    }
    .filter(|a| *a != current.spec.availability);
    let labels = spec.labels.unwrap_or_default();
    let label_add: Vec<(String, String)> = labels
        .iter()
        .filter(|(k, v)| current.spec.labels.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let label_rm: Vec<String> = current
        .spec
        .labels
        .keys()
        .filter(|k| !labels.contains_key(*k))
        .cloned()
        .collect();
    if availability.is_some() || !label_add.is_empty() || !label_rm.is_empty() {
        api.ask::<Done>(ApiRequest::NodeUpdate {
            node: current.id.clone(),
            availability,
            label_add,
            label_rm,
        })
        .await?;
    }
    if !spec.role.is_empty() {
        let role = spec
            .role
            .parse::<Role>()
            .map_err(|e| Refusal::invalid(format!("Role: {e}")))?;
        if role != current.spec.role {
            api.ask::<Done>(ApiRequest::NodeSetRole {
                node: current.id,
                role,
            })
            .await?;
        }
    }
    Ok(StatusCode::OK.into_response())
}

/// `GET /networks?filters=...`.
pub async fn network_list(State(api): State<Api>, Query(query): Query<http::Query>) -> Answer {
    let filters = filters(&query)?;
    filter::check_networks(&filters).map_err(|e| Refusal::invalid(e.chain().to_string()))?;
    let views: Vec<NetworkView> = api.ask(ApiRequest::NetworkList).await?;
    let networks: Vec<NetworkResource> = views
        .iter()
        .map(NetworkResource::from)
        .filter(|n| filter::network_matches(&filters, n))
        .collect();
    ok(&networks)
}

/// `GET /networks/{id}`: by id, name or id prefix.
pub async fn network_inspect(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    let view: NetworkView = api
        .ask(ApiRequest::NetworkInspect { name_or_id: id })
        .await?;
    ok(&NetworkResource::from(&view))
}

/// `DELETE /networks/{id}`: 204.
pub async fn network_remove(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    api.ask::<Done>(ApiRequest::NetworkRemove { name_or_id: id })
        .await?;
    no_content()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkCreate {
    name: String,
    driver: String,
    internal: bool,
    attachable: bool,
    ingress: bool,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    ipam: Option<shoal_control::engine::Ipam>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    config_only: bool,
    config_from: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkCreated {
    id: String,
    warning: String,
}

/// `POST /networks/create`: swarm-scope overlay networks only; what shoal
/// cannot honour is refused by name.
pub async fn network_create(State(api): State<Api>, bytes: Bytes) -> Answer {
    let request: NetworkCreate = body(&bytes)?;
    let refuse = |field: &str| {
        Err(Refusal::invalid(format!(
            "{field} is not supported by shoal's overlay networks; leave it out"
        )))
    };
    if request.driver != "overlay" {
        return Err(Refusal::invalid(format!(
            "network driver `{}` is not supported: shoal creates swarm-scope overlay networks (use -d overlay)",
            request.driver
        )));
    }
    if request.internal {
        return refuse("Internal");
    }
    if request.enable_ipv6 {
        return refuse("EnableIPv6");
    }
    if request.config_only || request.config_from.is_some() {
        return refuse("ConfigOnly/ConfigFrom");
    }
    let mut subnet = None;
    let mut gateway = None;
    if let Some(ipam) = &request.ipam {
        if !matches!(ipam.driver.as_str(), "" | "default") {
            return refuse("IPAM.Driver");
        }
        let configs = ipam.config.clone().unwrap_or_default();
        if configs.len() > 1 {
            return refuse("a second IPAM.Config");
        }
        if let Some(config) = configs.first() {
            if !config.ip_range.is_empty() {
                return refuse("IPAM.Config.IPRange");
            }
            if config.aux_address.as_ref().is_some_and(|a| !a.is_empty()) {
                return refuse("IPAM.Config.AuxiliaryAddresses");
            }
            subnet = (!config.subnet.is_empty()).then(|| config.subnet.clone());
            gateway = (!config.gateway.is_empty()).then(|| config.gateway.clone());
        }
    }
    let mut mtu = None;
    for (key, value) in request.options.unwrap_or_default() {
        if key == MTU_OPTION {
            mtu = Some(
                value
                    .parse()
                    .map_err(|_| Refusal::invalid(format!("invalid {MTU_OPTION} `{value}`")))?,
            );
        } else {
            return Err(Refusal::invalid(format!(
                "network option `{key}` is not supported by shoal (only {MTU_OPTION})"
            )));
        }
    }
    let view: NetworkView = api
        .ask(ApiRequest::NetworkCreate {
            name: request.name,
            driver: Some(request.driver),
            subnet,
            gateway,
            mtu,
            labels: request.labels.unwrap_or_default(),
            ingress: request.ingress,
            attachable: request.attachable,
        })
        .await?;
    created(&NetworkCreated {
        id: view.id,
        warning: String::new(),
    })
}
