//! A member gone bad: it holds a node certificate and, through that node's
//! heartbeat, the cluster's gossip key, so it can speak gossip. It sends a
//! peer one sync over TCP 7946 with its own record (which must go through:
//! the channel works) and, in another node's name, a new record, a
//! tombstone of one of that node's records, and an authority page claiming
//! the node has no records at all (which must all be refused).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{json, Value};
use shoal_agent::gossip::codec::{Codec, Keyring, Message, SecretKey};
use shoal_agent::gossip::table::{
    Authority, CertNotary, Change, Delta, EndpointRecord, ManualClock, Notary, Proof, SyncPage,
    Tables, Version,
};
use shoal_agent::gossip::transport;
use shoal_control::api::{Heartbeat, HeartbeatResponse};
use shoal_control::objects::MacAddr;
use shoal_control::proto::control::dispatcher_client::DispatcherClient;
use shoal_control::proto::control::Json;

use crate::rpc::{channel, identity};
use crate::Tls;

/// Where to send, as whom, and whose records to forge.
pub struct Target {
    pub to: SocketAddr,
    pub node: String,
    pub network: String,
    pub victim: String,
    pub victim_task: String,
    pub victim_ip: Ipv4Addr,
    pub honest_task: String,
    pub gossip_key_file: Option<std::path::PathBuf>,
}

fn record(task: &str, ip: Ipv4Addr) -> EndpointRecord {
    EndpointRecord {
        task_id: task.to_string(),
        service: "adversary".into(),
        ip,
        mac: MacAddr::from_ipv4(ip),
        vtep: Ipv4Addr::new(198, 19, 255, 254),
        ports: Vec::new(),
        vip: None,
        aliases: Vec::new(),
        host_ports: Vec::new(),
    }
}

pub async fn forge(tls: &Tls, target: &Target) -> anyhow::Result<Value> {
    let ca = std::fs::read_to_string(&tls.ca)?;
    let (cert, key) = identity(tls)?.context("forging needs a node certificate and key")?;
    let der: rustls::pki_types::CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(cert.as_bytes())?;

    let (id, secret) = match target.gossip_key_file.as_deref() {
        Some(file) if file.exists() => {
            let text = std::fs::read_to_string(file)?;
            let (id, key) = text
                .trim()
                .split_once(' ')
                .context("a malformed key file")?;
            (id.parse()?, key.to_string())
        }
        _ => {
            let (id, key) = gossip_key(tls, target).await?;
            if let Some(file) = &target.gossip_key_file {
                std::fs::write(file, format!("{id} {key}"))?;
            }
            (id, key)
        }
    };
    let secret = shoal_control::hex::decode(&secret).context("a malformed gossip key")?;
    let keyring = Keyring::new(id, SecretKey::from_slice(&secret)?);

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let notary = || CertNotary::new(&ca, &cert, &key);
    let clock = Arc::new(ManualClock::new(now));
    let mut own = Tables::with_clock(target.node.clone(), clock).with_notary(Box::new(notary()?));
    let honest = own.publish(
        &target.network,
        record(&target.honest_task, Ipv4Addr::new(10, 0, 0, 250)),
    );
    let signer = notary()?;
    let in_victims_name = |version: Version, change: Change| {
        let mut delta = Delta {
            network: target.network.clone(),
            owner: target.victim.as_str().into(),
            version,
            written_at: now,
            change,
            proof: Proof::Local,
        };
        delta.proof = signer.sign(&delta.signed_bytes());
        delta
    };
    let high = Version {
        epoch: now + 3_600_000,
        seq: 1,
    };
    let forged = in_victims_name(
        high,
        Change::Publish(record("adv-forged", Ipv4Addr::new(10, 0, 0, 251))),
    );
    let tombstone = in_victims_name(
        high,
        Change::Withdraw {
            task_id: target.victim_task.clone(),
            ip: target.victim_ip,
        },
    );
    let mut authority = Authority {
        owner: target.victim.as_str().into(),
        as_of: high,
        at: now,
        after: None,
        through: None,
        proof: Proof::Local,
    };
    authority.proof = signer.sign(&authority.signed_bytes(&[]));

    let messages = [
        Message::Hello,
        Message::Certificates(vec![der.to_vec()]),
        Message::SyncPage {
            session: 1,
            index: 0,
            last: false,
            page: SyncPage {
                deltas: vec![honest, forged, tombstone],
                authority: None,
            },
        },
        Message::SyncPage {
            session: 1,
            index: 1,
            last: true,
            page: SyncPage {
                deltas: Vec::new(),
                authority: Some(authority),
            },
        },
    ];
    let mut codec = Codec::new(&target.node, keyring, now);
    let frames = messages
        .iter()
        .map(|m| codec.seal_frame(m, now))
        .collect::<Result<Vec<_>, _>>()?;
    let answer = transport::exchange(target.to, frames).await;
    Ok(json!({
        "sent": true,
        "answered": answer.is_ok(),
        "error": answer.err().map(|e| e.to_string()),
    }))
}

/// The primary gossip key (id, hex), as the node's own heartbeat gets it.
async fn gossip_key(tls: &Tls, target: &Target) -> anyhow::Result<(u32, String)> {
    let beat = Heartbeat {
        node_id: target.node.clone(),
        resources: None,
        tasks: Vec::new(),
        logs: Vec::new(),
        network_failures: None,
        build_failures: None,
        restart_window_ms: None,
    };
    let reply = DispatcherClient::new(channel(tls).await?)
        .heartbeat(Json {
            json: serde_json::to_string(&beat)?,
        })
        .await?;
    let reply: HeartbeatResponse = serde_json::from_str(&reply.into_inner().json)?;
    let gossip = reply
        .gossip
        .context("the heartbeat answer has no gossip keys")?;
    let primary = gossip
        .keys
        .iter()
        .find(|k| k.id == gossip.primary)
        .context("no primary gossip key")?;
    Ok((primary.id, primary.key.clone()))
}
