//! Watches the host's links: when a link the agent made (an `sh-` name, as
//! the ingress network's `sh-ingress`) is deleted from outside (an
//! operator's `ip link del`, a network manager), the data plane is kicked
//! to make it again at once rather than at its next periodic pass.

use std::sync::Arc;

use futures::StreamExt;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The rtnetlink multicast group of link changes (`RTMGRP_LINK`).
const RTMGRP_LINK: u32 = 1;

/// Whether `name` is a host link the agent makes.
pub fn ours(name: &str) -> bool {
    name.starts_with("sh-")
}

/// The name of a deleted link of ours, from one rtnetlink message.
fn deleted_link(message: &RouteNetlinkMessage) -> Option<&str> {
    let RouteNetlinkMessage::DelLink(LinkMessage { attributes, .. }) = message else {
        return None;
    };
    attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) if ours(name) => Some(name.as_str()),
        _ => None,
    })
}

/// Listens for link deletions in this process's network namespace until
/// `stop`; each deletion of a link of ours notifies `kick`. Returns when the
/// socket cannot be opened or closes.
pub async fn watch(kick: Arc<Notify>, stop: CancellationToken) -> std::io::Result<()> {
    let (mut connection, _handle, mut messages) = rtnetlink::new_connection()?;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, RTMGRP_LINK))?;
    let driver = tokio::spawn(connection);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            next = messages.next() => {
                let Some((message, _)) = next else { break };
                if let NetlinkPayload::InnerMessage(inner) = &message.payload {
                    if let Some(name) = deleted_link(inner) {
                        tracing::info!("link {name} was deleted: rebuilding it now");
                        kick.notify_one();
                    }
                }
            }
        }
    }
    driver.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str) -> LinkMessage {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName(name.into()));
        link
    }

    #[test]
    fn only_the_deletion_of_a_link_of_ours_counts() {
        let del = |name| RouteNetlinkMessage::DelLink(link(name));
        assert_eq!(deleted_link(&del("sh-ingress")), Some("sh-ingress"));
        assert_eq!(deleted_link(&del("eth0")), None);
        assert_eq!(deleted_link(&del("veth-sh-x")), None);
        assert_eq!(
            deleted_link(&RouteNetlinkMessage::NewLink(link("sh-ingress"))),
            None
        );
    }
}
