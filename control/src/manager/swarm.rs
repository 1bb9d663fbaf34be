//! The cluster object's requests: `swarm join-token [--rotate]`,
//! `swarm update` (autolock, certificate expiry, gossip key rotation,
//! scheduling strategy) and `swarm unlock-key`.

use std::time::Duration;

use super::gossip::rotation_message;
use super::{now_ms, Link, Manager, ManagerError, Store};
use crate::api::ApiResponse;
use crate::ca::{ca_digest, JoinToken, RootCa, UnlockKey};
use crate::objects::{Cluster, GossipKeyring, Role, Strategy, GOSSIP_KEYRING_ID};
use crate::store::{kind, Command};

/// What `swarm init --autolock` and `swarm update --autolock=true` print.
pub fn unlock_instructions(key: &str) -> String {
    format!(
        "\nTo unlock a swarm manager after it restarts, run the `shoal swarm unlock`\n\
         command and provide the following key:\n\n    {key}\n\n\
         Please remember to store this key in a password manager, since without it you\n\
         will not be able to restart the manager.\n"
    )
}

/// The join token for `role`.
pub(super) fn token_for(cluster: &Cluster, role: Role) -> Result<String, ManagerError> {
    let digest = ca_digest(&cluster.ca_cert_pem)?;
    let secret = match role {
        Role::Worker => cluster.worker_secret.clone(),
        Role::Manager => cluster.manager_secret.clone(),
    };
    Ok(JoinToken { digest, secret }.to_string())
}

/// A certificate for `node_id` in `role`, signed by the swarm's CA.
pub(super) fn sign(
    cluster: &Cluster,
    csr_pem: &str,
    node_id: &str,
    role: Role,
) -> Result<String, ManagerError> {
    let ca = RootCa::from_pem(&cluster.ca_cert_pem, &cluster.ca_key_pem)?;
    Ok(ca.sign(
        csr_pem,
        node_id,
        role,
        &cluster.id,
        Duration::from_secs(cluster.cert_expiry_secs),
    )?)
}

fn cluster_changed(_: &str) -> ManagerError {
    ManagerError::Changed {
        kind: kind::CLUSTER,
        name: "settings".into(),
    }
}

impl<S: Store, L: Link> Manager<S, L> {
    /// `swarm join-token ROLE [--rotate]`.
    pub(super) async fn join_token(
        &self,
        role: Role,
        rotate: bool,
    ) -> Result<ApiResponse, ManagerError> {
        let (mut cluster, version) = self.versioned_cluster()?;
        if rotate {
            let secret = JoinToken::new_secret()?;
            match role {
                Role::Worker => cluster.worker_secret = secret,
                Role::Manager => cluster.manager_secret = secret,
            }
            let put = Command::put(&cluster, Some(version)).map_err(ManagerError::store)?;
            self.submit_all(vec![put], cluster_changed).await?;
        }
        Ok(ApiResponse::Token {
            token: token_for(&cluster, role)?,
            addr: self.me.api_addr(),
        })
    }

    /// `swarm unlock-key`.
    pub(super) fn unlock_key(&self) -> Result<ApiResponse, ManagerError> {
        let key = self
            .cluster()?
            .unlock_key
            .ok_or(ManagerError::NoUnlockKey)?;
        Ok(ApiResponse::Token {
            token: key,
            addr: self.me.api_addr(),
        })
    }

    /// `swarm update --autolock / --cert-expiry / --rotate-gossip-key`: one
    /// write for everything asked, so a rotation never half-happens with
    /// the other settings.
    pub(super) async fn update_swarm(
        &self,
        autolock: Option<bool>,
        cert_expiry_secs: Option<u64>,
        rotate_gossip_key: bool,
    ) -> Result<ApiResponse, ManagerError> {
        let (mut cluster, version) = self.versioned_cluster()?;
        let before = cluster.clone();
        let mut message = "Swarm updated.".to_string();
        if let Some(secs) = cert_expiry_secs {
            cluster.cert_expiry_secs = secs.max(1);
        }
        match autolock {
            Some(true) if cluster.unlock_key.is_none() => {
                let key = UnlockKey::generate()?.to_string();
                message.push_str(&unlock_instructions(&key));
                cluster.unlock_key = Some(key);
                cluster.autolock = true;
            }
            Some(false) => {
                cluster.unlock_key = None;
                cluster.autolock = false;
            }
            Some(true) | None => {}
        }
        let mut commands = Vec::new();
        if cluster != before || !rotate_gossip_key {
            commands.push(Command::put(&cluster, Some(version)).map_err(ManagerError::store)?);
        }
        if rotate_gossip_key {
            let objects = self.objects();
            let (mut keyring, keyring_version) = objects
                .one::<GossipKeyring>(GOSSIP_KEYRING_ID)
                .map_err(ManagerError::store)?
                .map(|v| (v.value, v.version))
                .unwrap_or_default();
            let rotation = keyring.rotate(&cluster, rand::random::<[u8; 32]>(), now_ms());
            commands
                .push(Command::put(&keyring, Some(keyring_version)).map_err(ManagerError::store)?);
            message.push('\n');
            message.push_str(&rotation_message(&rotation));
        }
        self.submit_all(commands, cluster_changed).await?;
        Ok(ApiResponse::Done { message })
    }

    /// `swarm update --scheduling-strategy`.
    pub(super) async fn set_strategy(
        &self,
        strategy: Strategy,
    ) -> Result<ApiResponse, ManagerError> {
        let (cluster, version) = self.versioned_cluster()?;
        let updated = Cluster {
            strategy,
            ..cluster
        };
        let put = Command::put(&updated, Some(version)).map_err(ManagerError::store)?;
        self.submit_all(vec![put], cluster_changed).await?;
        Ok(ApiResponse::Done {
            message: format!("Scheduling strategy set to {strategy}."),
        })
    }

    /// `swarm init|update --task-history-limit`.
    pub(super) async fn set_task_history_limit(
        &self,
        limit: i64,
    ) -> Result<ApiResponse, ManagerError> {
        let (cluster, version) = self.versioned_cluster()?;
        let updated = Cluster {
            task_history_limit: limit,
            ..cluster
        };
        let put = Command::put(&updated, Some(version)).map_err(ManagerError::store)?;
        self.submit_all(vec![put], cluster_changed).await?;
        Ok(ApiResponse::Done {
            message: format!("Task history limit set to {limit}."),
        })
    }

    /// `swarm update --max-replicas`.
    pub(super) async fn set_max_replicas(
        &self,
        max_replicas: u64,
    ) -> Result<ApiResponse, ManagerError> {
        let (cluster, version) = self.versioned_cluster()?;
        let updated = Cluster {
            max_replicas,
            ..cluster
        };
        let put = Command::put(&updated, Some(version)).map_err(ManagerError::store)?;
        self.submit_all(vec![put], cluster_changed).await?;
        Ok(ApiResponse::Done {
            message: format!("Services may now have up to {max_replicas} replicas."),
        })
    }
}
