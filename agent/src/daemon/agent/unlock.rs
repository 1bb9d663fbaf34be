//! `swarm unlock`: an autolocked manager opens its keys with the unlock key
//! and starts its parts.

use shoal_control::ca::UnlockKey;

use super::{AgentError, Membership};

impl Membership {
    pub(super) async fn unlock(&mut self, key: &str) -> Result<String, AgentError> {
        let Some(identity) = self.locked.clone() else {
            return Err(AgentError::NotLocked);
        };
        let kek: UnlockKey = key.parse()?;
        let certs = self.state.load_certs(Some(&kek))?;
        self.become_member(identity, certs, None, Some(kek)).await?;
        Ok("Swarm unlocked.".into())
    }
}
