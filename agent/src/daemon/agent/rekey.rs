//! Autolock was turned on, off or rotated: a manager re-seals its data key
//! and TLS key with the new unlock key (or stores them plain).

use shoal_control::ca::UnlockKey;

use super::member::read;
use super::Membership;

impl Membership {
    pub(super) fn rekey(&mut self, key: Option<String>) -> anyhow::Result<()> {
        let Some(member) = self.member.as_mut() else {
            return Ok(());
        };
        if member.manager.is_none() {
            return Ok(());
        }
        let kek: Option<UnlockKey> = key.as_deref().map(str::parse).transpose()?;
        let dek = self.state.data_key(member.kek.as_ref())?;
        self.state
            .reseal(&read(&member.certs), Some(&dek), kek.as_ref())?;
        member.kek = kek;
        let autolock = member.kek.is_some();
        let updated = member.update_identity(&self.state, |id| id.autolock = autolock)?;
        tracing::info!(
            "autolock {}",
            if updated.autolock {
                "on: keys sealed"
            } else {
                "off"
            }
        );
        Ok(())
    }
}
