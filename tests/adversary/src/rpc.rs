//! gRPC calls to a manager's port 2377 with a chosen certificate (or none):
//! Raft's three methods and `Control.Call`. Each prints whether the call
//! was answered, and the status code and message when it was refused.

use anyhow::Context;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use serde_json::{json, Value};
use shoal_control::proto::control::control_client::ControlClient;
use shoal_control::proto::control::Json;
use shoal_control::proto::raft::raft_client::RaftClient;
use shoal_control::proto::raft::{snapshot_chunk, RaftMessage, SnapshotChunk};
use shoal_control::raft::SnapshotHeader;
use shoal_control::store::types::{SnapshotMeta, TypeConfig, Vote};
use tonic::transport::{Channel, Endpoint};

use crate::Tls;

/// The certificate and key PEMs `tls` names, if any.
pub fn identity(tls: &Tls) -> anyhow::Result<Option<(String, String)>> {
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        return Ok(None);
    };
    let cert = std::fs::read_to_string(cert).with_context(|| cert.display().to_string())?;
    let key = std::fs::read_to_string(key).with_context(|| key.display().to_string())?;
    // A key file of a state dir starts with its format line.
    let key = key
        .strip_prefix("shoal-plain-v1\n")
        .unwrap_or(&key)
        .to_string();
    Ok(Some((cert, key)))
}

pub async fn channel(tls: &Tls) -> anyhow::Result<Channel> {
    let ca = std::fs::read_to_string(&tls.ca).with_context(|| tls.ca.display().to_string())?;
    let identity = identity(tls)?;
    let config = shoal_control::ca::tls::client_config(
        &ca,
        identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
    )?;
    Ok(Endpoint::from_shared(format!("https://{}", tls.addr))?
        .tls_config(config)?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
        .connect()
        .await?)
}

fn outcome<T>(
    result: Result<tonic::Response<T>, tonic::Status>,
    answer: impl FnOnce(T) -> Value,
) -> Value {
    match result {
        Ok(resp) => json!({"ok": true, "answer": answer(resp.into_inner())}),
        Err(status) => json!({
            "ok": false,
            "code": format!("{:?}", status.code()),
            "message": status.message(),
        }),
    }
}

fn raft_answer(msg: RaftMessage) -> Value {
    serde_json::from_slice(&msg.json).unwrap_or(Value::Null)
}

pub async fn append(tls: &Tls, term: u64, leader: u64) -> anyhow::Result<Value> {
    let request = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, leader),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let json = serde_json::to_vec(&request)?;
    let mut client = RaftClient::new(channel(tls).await?);
    Ok(outcome(
        client.append_entries(RaftMessage { json }).await,
        raft_answer,
    ))
}

pub async fn vote(tls: &Tls, term: u64, candidate: u64) -> anyhow::Result<Value> {
    let request = VoteRequest::<TypeConfig>::new(Vote::new(term, candidate), None);
    let json = serde_json::to_vec(&request)?;
    let mut client = RaftClient::new(channel(tls).await?);
    let mut out = outcome(client.vote(RaftMessage { json }).await, raft_answer);
    // The responder's own term, read off its answer.
    let term = out["answer"]["vote"]["leader_id"]["term"].clone();
    out["term"] = term;
    Ok(out)
}

pub async fn snapshot(tls: &Tls, term: u64, leader: u64, size: u64) -> anyhow::Result<Value> {
    let header = SnapshotHeader {
        vote: Vote::new_committed(term, leader),
        meta: SnapshotMeta::default(),
        size,
    };
    let meta = SnapshotChunk {
        part: Some(snapshot_chunk::Part::Meta(serde_json::to_vec(&header)?)),
    };
    let mut client = RaftClient::new(channel(tls).await?);
    let stream = tokio_stream::iter(vec![meta]);
    Ok(outcome(client.install_snapshot(stream).await, raft_answer))
}

pub async fn control(tls: &Tls, request: &str) -> anyhow::Result<Value> {
    let mut client = ControlClient::new(channel(tls).await?);
    let result = client
        .call(Json {
            json: request.to_string(),
        })
        .await;
    Ok(outcome(result, |reply| {
        serde_json::from_str(&reply.json).unwrap_or(Value::Null)
    }))
}
