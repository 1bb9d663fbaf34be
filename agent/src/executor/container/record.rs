//! What the container runtime keeps on disk per container, so a restarted
//! agent adopts what still runs: the image it uses, the container's init
//! (pid and start time, so a recycled pid is never taken for it), its stop
//! signal, its resolved health check, its anonymous volumes and, once
//! known, how it ended.

use std::fs;
use std::io;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::process::HealthCheck;
use crate::executor::process::store::{Identity, StoredExit};
use crate::image::Digest;

pub const RECORD_FILE: &str = "container.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub task_id: String,
    pub image: Digest,
    /// The container's init; its start time is 0 when it ended before it
    /// could be read.
    pub pid: u32,
    pub start_time: u64,
    /// The shim watching it: while it lives, an exit is still to come.
    pub shim_pid: u32,
    pub shim_start_time: u64,
    pub stop_signal: i32,
    /// runc's cgroupsPath (for the OOM count).
    pub cgroups_path: String,
    #[serde(default)]
    pub health: Option<HealthCheck>,
    #[serde(default)]
    pub anonymous_volumes: Vec<String>,
    /// The named volumes it mounts (`volume rm` refuses them).
    #[serde(default)]
    pub named_volumes: Vec<String>,
    #[serde(default)]
    pub exit: Option<StoredExit>,
}

impl ContainerRecord {
    pub fn identity(&self) -> Identity {
        Identity {
            pid: self.pid,
            start_time: self.start_time,
        }
    }

    pub fn shim_identity(&self) -> Identity {
        Identity {
            pid: self.shim_pid,
            start_time: self.shim_start_time,
        }
    }
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(RECORD_FILE)
}

pub fn load(dir: &Path) -> io::Result<Option<ContainerRecord>> {
    let text = match fs::read(path(dir)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes atomically, 0600; never recreates a removed directory.
pub fn save(dir: &Path, record: &ContainerRecord) -> io::Result<()> {
    let text = serde_json::to_vec(record).map_err(io::Error::other)?;
    let tmp = dir.join(format!("{RECORD_FILE}.tmp"));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&text)?;
    fs::rename(&tmp, path(dir))
}
