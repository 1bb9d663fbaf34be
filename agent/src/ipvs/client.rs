//! [`IpvsClient`]: the real [`IpvsKernel`], requests over a genetlink
//! connection whose driver runs as a task on the current tokio runtime (and
//! ends with the client).

use futures::StreamExt;
use genetlink::{GenetlinkError, GenetlinkHandle};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_generic::GenlMessage;
use shoal_control::error_chain::ErrorChain;

use super::objects::{Destination, Info, Service, ServiceKey, Timeouts};
use super::wire::{attr, cmd, find, Attr, IpvsMessage};
use super::{IpvsError, IpvsKernel};

/// A connection to the kernel's IPVS.
pub struct IpvsClient {
    handle: GenetlinkHandle,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for IpvsClient {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl IpvsClient {
    /// Opens the socket and resolves the `IPVS` family (the kernel loads
    /// `ip_vs` on that lookup when it can).
    pub async fn connect() -> Result<IpvsClient, IpvsError> {
        let (connection, handle, _) = genetlink::new_connection().map_err(IpvsError::Socket)?;
        let driver = tokio::spawn(connection);
        let client = IpvsClient { handle, driver };
        client.family_id().await?;
        Ok(client)
    }

    /// The family id the kernel assigned to `IPVS`.
    pub async fn family_id(&self) -> Result<u16, IpvsError> {
        match self.handle.resolve_family::<IpvsMessage>().await {
            Ok(family) => Ok(family.id),
            Err(GenetlinkError::NetlinkError(e)) if e.raw_os_error() == Some(libc::ENOENT) => {
                Err(IpvsError::NoIpvs)
            }
            Err(e) => Err(IpvsError::Netlink {
                op: "family lookup",
                reason: e.chain().to_string(),
            }),
        }
    }

    /// The kernel's IPVS version and connection table size.
    pub async fn info(&mut self) -> Result<Info, IpvsError> {
        let answer = self
            .one(
                IpvsMessage::new(cmd::GET_INFO, vec![]),
                "GET_INFO",
                String::new(),
            )
            .await?;
        Info::parse(&answer.attrs).map_err(|e| decode("GET_INFO", e))
    }

    /// Sends `message` and collects the answers: for a dump every message,
    /// else the ACK (an empty list) or the kernel's error.
    async fn exchange(
        &mut self,
        message: IpvsMessage,
        dump: bool,
        op: &'static str,
        object: String,
    ) -> Result<Vec<IpvsMessage>, IpvsError> {
        let mut request = NetlinkMessage::from(GenlMessage::from_payload(message));
        request.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        request.finalize();
        let mut answers = self
            .handle
            .request(request)
            .await
            .map_err(|e| netlink_error(op, &object, e))?;
        let mut messages = Vec::new();
        while let Some(answer) = answers.next().await {
            let answer = answer.map_err(|e| decode(op, e))?;
            match answer.payload {
                NetlinkPayload::InnerMessage(genl) => messages.push(genl.payload),
                NetlinkPayload::Error(e) => {
                    if let Some(code) = e.code {
                        return Err(IpvsError::Kernel {
                            op,
                            object,
                            errno: -code.get(),
                        });
                    }
                }
                NetlinkPayload::Done(_) => break,
                _ => {}
            }
        }
        Ok(messages)
    }

    /// A request answered by exactly one message.
    async fn one(
        &mut self,
        message: IpvsMessage,
        op: &'static str,
        object: String,
    ) -> Result<IpvsMessage, IpvsError> {
        let mut request = NetlinkMessage::from(GenlMessage::from_payload(message));
        request.header.flags = NLM_F_REQUEST;
        request.finalize();
        let mut answers = self
            .handle
            .request(request)
            .await
            .map_err(|e| netlink_error(op, &object, e))?;
        while let Some(answer) = answers.next().await {
            let answer = answer.map_err(|e| decode(op, e))?;
            match answer.payload {
                NetlinkPayload::InnerMessage(genl) => return Ok(genl.payload),
                NetlinkPayload::Error(e) => {
                    if let Some(code) = e.code {
                        return Err(IpvsError::Kernel {
                            op,
                            object,
                            errno: -code.get(),
                        });
                    }
                }
                _ => {}
            }
        }
        Err(IpvsError::Decode {
            op,
            reason: "no answer".into(),
        })
    }

    async fn act(
        &mut self,
        message: IpvsMessage,
        op: &'static str,
        object: String,
    ) -> Result<(), IpvsError> {
        self.exchange(message, false, op, object).await.map(|_| ())
    }
}

fn netlink_error(op: &'static str, object: &str, e: GenetlinkError) -> IpvsError {
    match e {
        GenetlinkError::NetlinkError(io) if io.raw_os_error().is_some() => IpvsError::Kernel {
            op,
            object: object.to_string(),
            errno: io.raw_os_error().unwrap_or(libc::EIO),
        },
        other => IpvsError::Netlink {
            op,
            reason: other.to_string(),
        },
    }
}

fn decode(op: &'static str, e: impl std::fmt::Display) -> IpvsError {
    IpvsError::Decode {
        op,
        reason: e.to_string(),
    }
}

/// The service nested in a message.
fn service_attr(service: Vec<Attr>) -> Attr {
    Attr::Nested(attr::SERVICE, service)
}

impl IpvsKernel for IpvsClient {
    async fn services(&mut self) -> Result<Vec<Service>, IpvsError> {
        let answers = self
            .exchange(
                IpvsMessage::new(cmd::GET_SERVICE, vec![]),
                true,
                "GET_SERVICE",
                "every service".into(),
            )
            .await?;
        answers
            .iter()
            .map(|m| {
                let nested = find(&m.attrs, attr::SERVICE)
                    .ok_or_else(|| decode("GET_SERVICE", "an answer without a service"))?;
                let attrs = nested.children().map_err(|e| decode("GET_SERVICE", e))?;
                Service::parse(&attrs).map_err(|e| decode("GET_SERVICE", e))
            })
            .collect()
    }

    async fn destinations(&mut self, service: &ServiceKey) -> Result<Vec<Destination>, IpvsError> {
        let ipv6 = matches!(
            service,
            ServiceKey::Addr {
                addr: std::net::IpAddr::V6(_),
                ..
            } | ServiceKey::Fwmark { ipv6: true, .. }
        );
        let answers = self
            .exchange(
                IpvsMessage::new(cmd::GET_DEST, vec![service_attr(service.attrs())]),
                true,
                "GET_DEST",
                service.to_string(),
            )
            .await?;
        answers
            .iter()
            .map(|m| {
                let nested = find(&m.attrs, attr::DEST)
                    .ok_or_else(|| decode("GET_DEST", "an answer without a destination"))?;
                let attrs = nested.children().map_err(|e| decode("GET_DEST", e))?;
                Destination::parse(&attrs, ipv6).map_err(|e| decode("GET_DEST", e))
            })
            .collect()
    }

    async fn add_service(&mut self, service: &Service) -> Result<(), IpvsError> {
        let message = IpvsMessage::new(cmd::NEW_SERVICE, vec![service_attr(service.attrs())]);
        self.act(message, "NEW_SERVICE", service.key.to_string())
            .await
    }

    async fn update_service(&mut self, service: &Service) -> Result<(), IpvsError> {
        let message = IpvsMessage::new(cmd::SET_SERVICE, vec![service_attr(service.attrs())]);
        self.act(message, "SET_SERVICE", service.key.to_string())
            .await
    }

    async fn remove_service(&mut self, service: &ServiceKey) -> Result<(), IpvsError> {
        let message = IpvsMessage::new(cmd::DEL_SERVICE, vec![service_attr(service.attrs())]);
        self.act(message, "DEL_SERVICE", service.to_string()).await
    }

    async fn add_destination(
        &mut self,
        service: &ServiceKey,
        destination: &Destination,
    ) -> Result<(), IpvsError> {
        let message = dest_message(cmd::NEW_DEST, service, destination.attrs());
        self.act(message, "NEW_DEST", dest_name(service, destination))
            .await
    }

    async fn update_destination(
        &mut self,
        service: &ServiceKey,
        destination: &Destination,
    ) -> Result<(), IpvsError> {
        let message = dest_message(cmd::SET_DEST, service, destination.attrs());
        self.act(message, "SET_DEST", dest_name(service, destination))
            .await
    }

    async fn remove_destination(
        &mut self,
        service: &ServiceKey,
        destination: &Destination,
    ) -> Result<(), IpvsError> {
        let message = dest_message(cmd::DEL_DEST, service, destination.key_attrs());
        self.act(message, "DEL_DEST", dest_name(service, destination))
            .await
    }

    async fn timeouts(&mut self) -> Result<Timeouts, IpvsError> {
        let answer = self
            .one(
                IpvsMessage::new(cmd::GET_CONFIG, vec![]),
                "GET_CONFIG",
                "the timeouts".into(),
            )
            .await?;
        Timeouts::parse(&answer.attrs).map_err(|e| decode("GET_CONFIG", e))
    }

    async fn set_timeouts(&mut self, timeouts: &Timeouts) -> Result<(), IpvsError> {
        let message = IpvsMessage::new(cmd::SET_CONFIG, timeouts.attrs());
        self.act(message, "SET_CONFIG", "the timeouts".into()).await
    }

    async fn flush(&mut self) -> Result<(), IpvsError> {
        self.act(
            IpvsMessage::new(cmd::FLUSH, vec![]),
            "FLUSH",
            "every service".into(),
        )
        .await
    }
}

pub fn dest_message(command: u8, service: &ServiceKey, dest: Vec<Attr>) -> IpvsMessage {
    IpvsMessage::new(
        command,
        vec![
            service_attr(service.attrs()),
            Attr::Nested(attr::DEST, dest),
        ],
    )
}

fn dest_name(service: &ServiceKey, destination: &Destination) -> String {
    format!(
        "real server {}:{} of {service}",
        destination.addr, destination.port
    )
}
