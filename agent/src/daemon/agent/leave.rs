//! `swarm leave [--force]`, and leaving when the managers removed this
//! node: the parts stop, the overlay and the tasks go, and the state dir
//! forgets the swarm.

use super::{AgentError, Membership};

impl Membership {
    pub(super) async fn leave(&mut self, force: bool) -> Result<String, AgentError> {
        let Some(member) = &self.member else {
            return Err(AgentError::NotMember);
        };
        if member.manager.is_some() && !force {
            return Err(AgentError::ManagerMustForce);
        }
        self.stop_member(true).await;
        self.state.wipe().map_err(anyhow::Error::from)?;
        Ok("Node left the swarm.".into())
    }
}
