//! Promotion and demotion, learned from the heartbeat answer: the node
//! renews its certificate for the new role, then starts or stops its
//! manager parts.

use shoal_control::objects::Role;

use super::renewal::renew_certificate;
use super::Membership;

impl Membership {
    pub(super) async fn change_role(&mut self, role: Role) -> anyhow::Result<()> {
        let Some(member) = &self.member else {
            return Ok(());
        };
        let resp = renew_certificate(&self.state, member).await?;
        if resp.role != role {
            return Ok(());
        }
        member.update_identity(&self.state, |id| {
            id.role = role;
            id.raft_id = resp.raft_id;
        })?;
        match role {
            Role::Manager if member.manager.is_none() => {
                let _ = std::fs::remove_dir_all(self.state.raft_dir());
                let _ = std::fs::remove_file(self.state.dek_file());
                let manager = self
                    .start_manager(
                        &member.identity,
                        &member.certs,
                        &member.peers,
                        None,
                        member.kek.as_ref(),
                    )
                    .await?;
                if let Some(member) = self.member.as_mut() {
                    member.manager = Some(manager);
                }
                self.publish();
                tracing::info!("promoted: now a manager");
            }
            Role::Worker => {
                let Some(member) = self.member.as_mut() else {
                    return Ok(());
                };
                let manager = member.manager.take();
                // Workers are never locked.
                member.kek = None;
                self.publish();
                if let Some(m) = manager {
                    m.stop().await;
                }
                let _ = std::fs::remove_dir_all(self.state.raft_dir());
                let _ = std::fs::remove_file(self.state.dek_file());
                if let Some(member) = &self.member {
                    self.state
                        .save_certs(&super::member::read(&member.certs), None)?;
                }
                tracing::info!("demoted: now a worker");
            }
            Role::Manager => {}
        }
        Ok(())
    }
}
