//! `shoal volume ls|rm`: this node's named local volumes (what `--mount
//! type=volume` creates), through the local agent's `Images` service,
//! printed as Docker prints them.

use std::path::Path;

use clap::Subcommand;

use super::format;
use crate::daemon::{ImageEvent, ImageRequest};
use crate::executor::VolumeUse;

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List this node's volumes.
    #[command(alias = "list")]
    Ls {
        /// Only volume names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove volumes from this node (never one a container mounts).
    #[command(alias = "remove")]
    Rm {
        /// Do not complain about a volume that does not exist.
        #[arg(short, long)]
        force: bool,
        /// Volume names.
        #[arg(required = true)]
        volumes: Vec<String>,
    },
}

impl VolumeCommand {
    pub async fn run(self, socket: &Path) -> anyhow::Result<()> {
        let request = match &self {
            VolumeCommand::Ls { .. } => ImageRequest::VolumeList,
            VolumeCommand::Rm { force, volumes } => ImageRequest::VolumeRemove {
                names: volumes.clone(),
                force: *force,
            },
        };
        super::image::image_events(socket, &request, |event| {
            Ok(match (event, &self) {
                (ImageEvent::Line(text), _) => Some(text + "\n"),
                (ImageEvent::Volumes(volumes), VolumeCommand::Ls { quiet }) => {
                    Some(list(&volumes, *quiet))
                }
                _ => None,
            })
        })
        .await
    }
}

/// Docker's `volume ls`: DRIVER and VOLUME NAME.
fn list(volumes: &[VolumeUse], quiet: bool) -> String {
    if quiet {
        return volumes.iter().map(|v| format!("{}\n", v.name)).collect();
    }
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| vec![v.driver.clone(), v.name.clone()])
        .collect();
    format::table(&["DRIVER", "VOLUME NAME"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_list_with_dockers_columns() {
        let volumes = vec![
            VolumeUse {
                name: "data".into(),
                driver: "local".into(),
                mountpoint: "/var/lib/shoal/volumes/data/_data".into(),
                tasks: vec!["t1".into()],
            },
            VolumeUse {
                name: "cache-1".into(),
                driver: "local".into(),
                mountpoint: "/var/lib/shoal/volumes/cache-1/_data".into(),
                tasks: Vec::new(),
            },
        ];
        let table = list(&volumes, false);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("DRIVER") && lines[0].contains("VOLUME NAME"),
            "{table}"
        );
        assert!(
            lines[1].starts_with("local") && lines[1].ends_with("data"),
            "{table}"
        );
        assert_eq!(list(&volumes, true), "data\ncache-1\n");
    }
}
