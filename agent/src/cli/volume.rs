//! `shoal volume ls|rm`: this node's named local volumes (what `--mount
//! type=volume` creates), through the local agent's `Images` service,
//! printed as Docker prints them.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use futures::StreamExt;
use shoal_control::proto::images::images_client::ImagesClient;
use shoal_control::proto::images::ImageJson;

use super::{client, format};
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
        let channel = client::connect(socket).await?;
        let json = serde_json::to_string(&request)?;
        let mut events = ImagesClient::new(channel)
            .run(ImageJson { json })
            .await
            .map_err(|status| anyhow::anyhow!("{}", status.message()))?
            .into_inner();
        let mut stdout = std::io::stdout();
        while let Some(item) = events.next().await {
            let item = item.map_err(|status| anyhow::anyhow!("{}", status.message()))?;
            let event: ImageEvent = serde_json::from_str(&item.json)
                .context("the agent sent an unreadable volume answer")?;
            let text = match (event, &self) {
                (ImageEvent::Line(text), _) => text + "\n",
                (ImageEvent::Volumes(volumes), VolumeCommand::Ls { quiet }) => {
                    list(&volumes, *quiet)
                }
                _ => continue,
            };
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
        Ok(())
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
