//! `PacketSocket`: an AF_PACKET raw socket bound to one interface, which sees every frame
//! arriving on it (promiscuously) and sends whole Ethernet frames out of it. The only
//! unsafe code of the relay lives here, each call a plain libc syscall on an fd we own.

use std::{
    io, mem,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// Bytes of socket receive buffer: a 50 ms burst at a few hundred Mbit/s.
const RECV_BUFFER_BYTES: libc::c_int = 8 << 20;
/// Length of an 802.1Q tag: TPID and TCI.
const VLAN_TAG_LEN: usize = 4;
/// Offset of the EtherType (or a VLAN tag) in an Ethernet frame: after both MACs.
const ETHERTYPE_OFFSET: usize = 12;

/// An AF_PACKET socket bound to one interface, receiving every protocol.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    iface: String,
}

/// A frame `PacketSocket::recv` got.
#[derive(Debug)]
pub struct Received<'b> {
    /// The frame as it was on the wire, its VLAN tag (if any) put back.
    pub frame: &'b [u8],
    /// The frame was longer than the buffer and was cut; it must not be forwarded.
    pub truncated: bool,
    /// The sender left the L4 checksum to offload, so the frame on its own is not
    /// valid: the sender's tx checksum offload should have been turned off.
    pub checksum_pending: bool,
}

impl PacketSocket {
    /// Opens a socket on `iface` that receives every frame arriving on it, in promiscuous
    /// mode (undone by the kernel when the socket closes), and none that leave it.
    pub fn open(iface: &str) -> io::Result<Self> {
        let ifindex = nix::net::if_::if_nametoindex(iface)
            .map_err(|errno| with_context(errno.into(), iface, "find interface"))?;
        let ifindex = libc::c_int::try_from(ifindex)
            .map_err(|_| with_context(io::ErrorKind::InvalidInput.into(), iface, "index"))?;
        // Protocol 0: the socket receives nothing until `bind` names ETH_P_ALL and the
        // interface, so no frame of another interface slips in between.
        // SAFETY: socket(2) takes no pointers; the result is checked below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(with_context(
                io::Error::last_os_error(),
                iface,
                "open AF_PACKET socket",
            ));
        }
        // SAFETY: `raw` is a descriptor socket(2) just returned, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let socket = Self {
            fd,
            iface: iface.to_owned(),
        };
        socket.set_int(libc::SOL_PACKET, libc::PACKET_AUXDATA, 1, "PACKET_AUXDATA")?;
        socket.set_int(
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            1,
            "PACKET_IGNORE_OUTGOING",
        )?;
        socket.set_int(
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            RECV_BUFFER_BYTES,
            "SO_RCVBUFFORCE",
        )?;

        // SAFETY: sockaddr_ll is plain integers and arrays; all zeroes is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex;
        // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its size.
        let bound = unsafe {
            libc::bind(
                socket.fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                socklen_of::<libc::sockaddr_ll>(),
            )
        };
        if bound < 0 {
            return Err(with_context(io::Error::last_os_error(), iface, "bind"));
        }

        // SAFETY: packet_mreq is plain integers and arrays; all zeroes is a valid value.
        let mut promisc: libc::packet_mreq = unsafe { mem::zeroed() };
        promisc.mr_ifindex = ifindex;
        promisc.mr_type = libc::PACKET_MR_PROMISC as libc::c_ushort;
        socket.set_option(
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            &promisc,
            "PACKET_ADD_MEMBERSHIP (promiscuous)",
        )?;
        Ok(socket)
    }

    /// The interface the socket is bound to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Waits for the next frame arriving on the interface and reads it into `buf`.
    /// Frames leaving the interface (such as those `send` wrote) are skipped, should
    /// the kernel predate PACKET_IGNORE_OUTGOING.
    pub fn recv<'b>(&self, buf: &'b mut [u8]) -> io::Result<Received<'b>> {
        loop {
            let got = self.recv_raw(&mut buf[VLAN_TAG_LEN..])?;
            if got.pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let room = buf.len() - VLAN_TAG_LEN;
            let truncated = got.len > room;
            let len = got.len.min(room);
            let frame = match got.vlan {
                // The kernel hands the tag over beside the frame; put it back where it
                // was, between the source MAC and the EtherType.
                Some((tpid, tci)) if len >= ETHERTYPE_OFFSET => {
                    buf.copy_within(VLAN_TAG_LEN..VLAN_TAG_LEN + ETHERTYPE_OFFSET, 0);
                    buf[ETHERTYPE_OFFSET..ETHERTYPE_OFFSET + 2]
                        .copy_from_slice(&tpid.to_be_bytes());
                    buf[ETHERTYPE_OFFSET + 2..ETHERTYPE_OFFSET + 4]
                        .copy_from_slice(&tci.to_be_bytes());
                    &buf[..len + VLAN_TAG_LEN]
                }
                _ => &buf[VLAN_TAG_LEN..VLAN_TAG_LEN + len],
            };
            return Ok(Received {
                frame,
                truncated,
                checksum_pending: got.checksum_pending,
            });
        }
    }

    /// Sends `frame`, a whole Ethernet frame, out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: the pointer and length describe `frame`, which outlives the call.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast::<libc::c_void>(),
                frame.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Frames the kernel dropped because the socket's buffer was full, since the last
    /// call (reading the count resets it).
    pub fn take_drops(&self) -> io::Result<u64> {
        // SAFETY: tpacket_stats is two integers; all zeroes is a valid value.
        let mut stats: libc::tpacket_stats = unsafe { mem::zeroed() };
        let mut len = socklen_of::<libc::tpacket_stats>();
        // SAFETY: the pointers describe `stats` and `len`, which outlive the call.
        let done = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut stats).cast::<libc::c_void>(),
                &raw mut len,
            )
        };
        if done < 0 {
            return Err(with_context(
                io::Error::last_os_error(),
                &self.iface,
                "PACKET_STATISTICS",
            ));
        }
        Ok(u64::from(stats.tp_drops))
    }

    /// One recvmsg(2): the frame into `buf`, its real length, type and aux data.
    fn recv_raw(&self, buf: &mut [u8]) -> io::Result<RawFrame> {
        // SAFETY: sockaddr_ll is plain integers and arrays; all zeroes is a valid value.
        let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
        // u64s keep the control buffer aligned for cmsghdr.
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast::<libc::c_void>(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is integers and pointers; all zeroes (null pointers, zero
        // lengths) is a valid value, and every field recvmsg reads is set below.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = (&raw mut from).cast::<libc::c_void>();
        msg.msg_namelen = socklen_of::<libc::sockaddr_ll>();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast::<libc::c_void>();
        msg.msg_controllen = mem::size_of_val(&control);
        let len = loop {
            // SAFETY: every pointer in `msg` refers to a local that outlives the call,
            // with the matching length; MSG_TRUNC makes the kernel return the frame's
            // real length even when it did not fit.
            let len = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, libc::MSG_TRUNC) };
            if len >= 0 {
                break len.unsigned_abs();
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        };

        let mut frame = RawFrame {
            len,
            pkttype: from.sll_pkttype,
            vlan: None,
            checksum_pending: false,
        };
        // SAFETY: `msg` was filled in by a successful recvmsg, so the CMSG macros walk
        // headers inside `control`, bounded by msg_controllen.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
        while !cmsg.is_null() {
            // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR only return headers wholly inside
            // `control`.
            let header = unsafe { &*cmsg };
            if header.cmsg_level == libc::SOL_PACKET && header.cmsg_type == libc::PACKET_AUXDATA {
                // SAFETY: a PACKET_AUXDATA message carries a tpacket_auxdata; the read
                // is unaligned-safe.
                let aux = unsafe {
                    libc::CMSG_DATA(cmsg)
                        .cast::<libc::tpacket_auxdata>()
                        .read_unaligned()
                };
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        libc::ETH_P_8021Q as u16
                    };
                    frame.vlan = Some((tpid, aux.tp_vlan_tci));
                }
                frame.checksum_pending = aux.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0;
            }
            // SAFETY: as for CMSG_FIRSTHDR; returns null after the last header.
            cmsg = unsafe { libc::CMSG_NXTHDR(&raw const msg, cmsg) };
        }
        Ok(frame)
    }

    fn set_int(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
        what: &str,
    ) -> io::Result<()> {
        self.set_option(level, name, &value, what)
    }

    fn set_option<T>(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: &T,
        what: &str,
    ) -> io::Result<()> {
        // SAFETY: the pointer and length describe `value`, which outlives the call.
        let done = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast::<libc::c_void>(),
                socklen_of::<T>(),
            )
        };
        if done < 0 {
            return Err(with_context(io::Error::last_os_error(), &self.iface, what));
        }
        Ok(())
    }
}

/// What one recvmsg returned, before the VLAN tag is put back.
struct RawFrame {
    len: usize,
    pkttype: u8,
    vlan: Option<(u16, u16)>,
    checksum_pending: bool,
}

fn socklen_of<T>() -> libc::socklen_t {
    // The structs passed are a few dozen bytes; the cast cannot truncate.
    mem::size_of::<T>() as libc::socklen_t
}

fn with_context(err: io::Error, iface: &str, what: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{iface}: {what}: {err}"))
}
