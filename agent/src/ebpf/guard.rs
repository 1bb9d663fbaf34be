//! The guard: `shoal_guard` attached to an interface's TC ingress. It counts
//! packets and bytes per IP protocol and drops IPv4 TCP/UDP packets to blocked
//! destination ports. A [`Guard`] owns the attachment: dropping it detaches
//! the program (pinned maps, if any, stay).

use std::fmt;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, Map, MapData, MapError, PerCpuArray};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::Ebpf;
use shoal_control::objects::Protocol;
use shoal_ebpf_common::guard::{
    BlockedPortKey, Counters, BLOCKED, BLOCKED_PORTS_MAP, PROGRAM_NAME, SLOT_DROPPED, SLOT_ICMP,
    SLOT_MALFORMED, SLOT_NON_IPV4, SLOT_OTHER, SLOT_TCP, SLOT_UDP, STATS_MAP, STATS_SLOTS,
};

use super::loader::{self, ObjectSource};
use super::EbpfError;

/// The guard's maps, all pinned when a pin directory is given.
const MAPS: [&str; 2] = [STATS_MAP, BLOCKED_PORTS_MAP];

/// The guard's counters, summed over all CPUs, since the maps were created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardStats {
    /// IPv4 TCP packets (dropped ones included).
    pub tcp: Counters,
    /// IPv4 UDP packets (dropped ones included).
    pub udp: Counters,
    /// IPv4 ICMP packets.
    pub icmp: Counters,
    /// IPv4 packets of any other protocol.
    pub other: Counters,
    /// Frames that are not IPv4 (ARP, IPv6, ...).
    pub non_ipv4: Counters,
    /// IPv4 packets with truncated or invalid headers.
    pub malformed: Counters,
    /// Packets dropped because their destination port is blocked.
    pub dropped: Counters,
}

impl GuardStats {
    /// Builds the stats from each slot's per-CPU values, indexed by slot.
    fn from_per_cpu_slots<'a>(slots: impl IntoIterator<Item = (u32, &'a [Counters])>) -> Self {
        let mut stats = Self::default();
        for (slot, per_cpu) in slots {
            let total = per_cpu.iter().fold(Counters::default(), |acc, c| Counters {
                packets: acc.packets.wrapping_add(c.packets),
                bytes: acc.bytes.wrapping_add(c.bytes),
            });
            let field = match slot {
                SLOT_TCP => &mut stats.tcp,
                SLOT_UDP => &mut stats.udp,
                SLOT_ICMP => &mut stats.icmp,
                SLOT_OTHER => &mut stats.other,
                SLOT_NON_IPV4 => &mut stats.non_ipv4,
                SLOT_MALFORMED => &mut stats.malformed,
                SLOT_DROPPED => &mut stats.dropped,
                _ => continue,
            };
            *field = total;
        }
        stats
    }
}

/// `shoal_guard` attached to one interface's ingress, with its maps.
pub struct Guard {
    iface: String,
    blocked: HashMap<MapData, BlockedPortKey, u32>,
    stats: PerCpuArray<MapData, Counters>,
    pin_dir: Option<PathBuf>,
    /// Owns the program and its TC link; dropped last, which detaches it.
    _ebpf: Ebpf,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("iface", &self.iface)
            .field("pin_dir", &self.pin_dir)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// Loads shoal's eBPF object and attaches `shoal_guard` to the ingress of
    /// `iface` in the calling thread's network namespace.
    ///
    /// With `pin_dir` (a directory on bpffs, created if missing), the maps are
    /// pinned there, and maps already pinned there are reused with their
    /// entries and counters.
    pub fn load_and_attach(iface: &str, pin_dir: Option<&Path>) -> Result<Self, EbpfError> {
        let (mut ebpf, origin) = loader::load_object(pin_dir, &MAPS)?;
        let blocked = take_map(&mut ebpf, &origin, BLOCKED_PORTS_MAP)?;
        let blocked =
            HashMap::try_from(blocked).map_err(|e| map_error(BLOCKED_PORTS_MAP, "open", e))?;
        let stats = take_map(&mut ebpf, &origin, STATS_MAP)?;
        let stats = PerCpuArray::try_from(stats).map_err(|e| map_error(STATS_MAP, "open", e))?;

        loader::ensure_clsact(iface)?;
        let program: &mut SchedClassifier = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| EbpfError::MissingInObject {
                origin: origin.to_string(),
                kind: "program",
                name: PROGRAM_NAME,
            })?
            .try_into()
            .map_err(|e| program_error("use it as a TC classifier".to_owned(), e))?;
        program
            .load()
            .map_err(|e| program_error("load it into the kernel".to_owned(), e))?;
        program
            .attach(iface, TcAttachType::Ingress)
            .map_err(|e| program_error(format!("attach it to the ingress of `{iface}`"), e))?;

        Ok(Self {
            iface: iface.to_owned(),
            blocked,
            stats,
            pin_dir: pin_dir.map(Path::to_path_buf),
            _ebpf: ebpf,
        })
    }

    /// The interface the guard is attached to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Drops IPv4 packets of `proto` to destination `port` from now on.
    pub fn block_port(&mut self, port: u16, proto: Protocol) -> Result<(), EbpfError> {
        self.blocked
            .insert(BlockedPortKey::new(port, proto.number()), BLOCKED, 0)
            .map_err(|e| map_error(BLOCKED_PORTS_MAP, &format!("block {proto} port {port}"), e))
    }

    /// Lets packets to `port` through again. Unblocking a port that is not
    /// blocked is not an error.
    pub fn unblock_port(&mut self, port: u16, proto: Protocol) -> Result<(), EbpfError> {
        match self
            .blocked
            .remove(&BlockedPortKey::new(port, proto.number()))
        {
            Ok(()) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(())
            }
            Err(e) => Err(map_error(
                BLOCKED_PORTS_MAP,
                &format!("unblock {proto} port {port}"),
                e,
            )),
        }
    }

    /// The blocked (port, protocol) pairs, sorted.
    pub fn blocked_ports(&self) -> Result<Vec<(u16, Protocol)>, EbpfError> {
        let mut ports = Vec::new();
        for key in self.blocked.keys() {
            let key = key.map_err(|e| map_error(BLOCKED_PORTS_MAP, "list keys", e))?;
            // Keys of other protocols cannot be written through this API.
            if let Some(proto) = Protocol::from_number(key.proto) {
                ports.push((key.port, proto));
            }
        }
        ports.sort_unstable();
        Ok(ports)
    }

    /// The counters, summed over all CPUs.
    pub fn stats(&self) -> Result<GuardStats, EbpfError> {
        let mut slots = Vec::with_capacity(STATS_SLOTS as usize);
        for slot in 0..STATS_SLOTS {
            let per_cpu = self
                .stats
                .get(&slot, 0)
                .map_err(|e| map_error(STATS_MAP, &format!("read slot {slot}"), e))?;
            slots.push((slot, per_cpu));
        }
        Ok(GuardStats::from_per_cpu_slots(
            slots.iter().map(|(slot, per_cpu)| (*slot, &per_cpu[..])),
        ))
    }

    /// Removes the guard's map pins under `pin_dir` (and the directory if it
    /// is then empty). Call after dropping every `Guard` that uses them to let
    /// the kernel free the maps.
    pub fn remove_pins(pin_dir: &Path) -> Result<(), EbpfError> {
        loader::remove_pins(pin_dir, &MAPS)
    }
}

fn take_map(ebpf: &mut Ebpf, origin: &ObjectSource, name: &'static str) -> Result<Map, EbpfError> {
    ebpf.take_map(name)
        .ok_or_else(|| EbpfError::MissingInObject {
            origin: origin.to_string(),
            kind: "map",
            name,
        })
}

fn map_error(map: &'static str, action: &str, e: MapError) -> EbpfError {
    EbpfError::Map {
        map,
        action: action.to_owned(),
        source: Box::new(e),
    }
}

fn program_error(action: String, e: aya::programs::ProgramError) -> EbpfError {
    EbpfError::Program {
        program: PROGRAM_NAME,
        action,
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(packets: u64, bytes: u64) -> Counters {
        Counters { packets, bytes }
    }

    #[test]
    fn stats_sum_each_slot_over_cpus() {
        let tcp = [c(1, 100), c(2, 200)];
        let icmp = [c(3, 84), c(0, 0)];
        let dropped = [c(0, 0), c(1, 60)];
        let stats = GuardStats::from_per_cpu_slots([
            (SLOT_TCP, &tcp[..]),
            (SLOT_ICMP, &icmp[..]),
            (SLOT_DROPPED, &dropped[..]),
        ]);
        assert_eq!(stats.tcp, c(3, 300));
        assert_eq!(stats.icmp, c(3, 84));
        assert_eq!(stats.dropped, c(1, 60));
        assert_eq!(stats.udp, Counters::default());
        assert_eq!(stats.non_ipv4, Counters::default());
    }

    #[test]
    fn stats_ignore_unknown_slots() {
        let junk = [c(9, 9)];
        let stats = GuardStats::from_per_cpu_slots([(STATS_SLOTS, &junk[..])]);
        assert_eq!(stats, GuardStats::default());
    }

    #[test]
    fn protocols_round_trip_through_the_numbers_the_programs_use() {
        for proto in [Protocol::Tcp, Protocol::Udp] {
            assert_eq!(Protocol::from_number(proto.number()), Some(proto));
        }
        use shoal_ebpf_common::guard::{IPPROTO_TCP, IPPROTO_UDP};
        assert_eq!(Protocol::Tcp.number(), IPPROTO_TCP);
        assert_eq!(Protocol::Udp.number(), IPPROTO_UDP);
        assert_eq!(Protocol::Tcp.number(), shoal_ebpf_common::mesh::IPPROTO_TCP);
        assert_eq!(Protocol::Udp.number(), shoal_ebpf_common::mesh::IPPROTO_UDP);
        assert_eq!(Protocol::from_number(1), None);
    }
}
