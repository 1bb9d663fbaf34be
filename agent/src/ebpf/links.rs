//! The mesh's pinned TCX links, and what to do with one that no longer
//! serves its interface.
//!
//! A TCX link pinned in bpffs outlives the agent, which is what lets a new
//! agent take it over without a gap. But when its interface is deleted
//! (the ingress network's namespace rebuilt, `sh-ingress` deleted, the
//! ingress network removed and made again), the kernel detaches the link
//! and leaves a husk: it is still pinned, reports interface 0, and
//! `BPF_LINK_UPDATE` on it fails with ENOLINK ("Link has been severed").
//! An interface made again under the same name needs a new link: the pin
//! is dropped and the program attached anew, and that is reported once.
//!
//! This module decides; [`KernelPins`] reads the kernel (through
//! `super::probe`), a fake reads a table in tests.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What is pinned at one link's place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinState {
    /// Nothing.
    Absent,
    /// A TCX link attached to the interface with this index.
    Attached { ifindex: u32 },
    /// A TCX link whose interface was deleted.
    Severed,
    /// Something else, or nothing readable (not a TCX link).
    Unreadable,
}

/// Reads what is pinned at a place: the kernel's pins, or a fake.
pub trait Pins {
    fn state(&self, pin: &Path) -> PinState;
}

/// The pins in bpffs, as the kernel reports them.
pub struct KernelPins;

impl Pins for KernelPins {
    fn state(&self, pin: &Path) -> PinState {
        match super::probe::tcx_link_ifindex(pin) {
            Ok(Some(0)) => PinState::Severed,
            Ok(Some(ifindex)) => PinState::Attached { ifindex },
            Ok(None) => PinState::Unreadable,
            Err(e) if e.kind() == io::ErrorKind::NotFound => PinState::Absent,
            Err(_) => PinState::Unreadable,
        }
    }
}

/// Why a pinned link is replaced rather than taken over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stale {
    /// Its interface was deleted (made again since, or not).
    Severed,
    /// It serves another interface than the one of that name now.
    OtherInterface { was: u32, now: u32 },
    /// The pin is not a link shoal can use.
    Unreadable,
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stale::Severed => f.write_str("was severed (its interface had been deleted)"),
            Stale::OtherInterface { was, now } => write!(
                f,
                "served interface index {was}, and the interface of that name is now {now}"
            ),
            Stale::Unreadable => f.write_str("could not be read as a TCX link"),
        }
    }
}

/// What attaching a program at a pinned place does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takeover {
    /// Nothing pinned: attach, and pin the new link.
    Create,
    /// A link serving the interface: point it at the new program in one
    /// step, so no packet meets a missing program.
    Update,
    /// A pin that serves nothing: unpin it, attach and pin anew.
    Replace(Stale),
}

/// The step for a place whose pin is in `state`, the interface having
/// index `iface` now (`None`: not found; attaching will say so).
pub fn takeover(state: PinState, iface: Option<u32>) -> Takeover {
    match (state, iface) {
        (PinState::Absent, _) => Takeover::Create,
        (PinState::Severed, _) => Takeover::Replace(Stale::Severed),
        (PinState::Unreadable, _) => Takeover::Replace(Stale::Unreadable),
        (PinState::Attached { ifindex }, Some(now)) if ifindex != now => {
            Takeover::Replace(Stale::OtherInterface { was: ifindex, now })
        }
        (PinState::Attached { .. }, _) => Takeover::Update,
    }
}

/// Whether the pin file `name` in the links directory is the TC link of
/// one of `programs` (`<program>@<namespace>@<interface>`; the cgroup
/// hooks' links are not interface links).
pub fn is_tc_pin(name: &str, programs: &[&str]) -> bool {
    name.split_once('@')
        .is_some_and(|(program, place)| programs.contains(&program) && place.contains('@'))
}

/// Of the TC link pins `candidates`, those whose interface was deleted.
pub fn severed(pins: &impl Pins, candidates: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    candidates
        .into_iter()
        .filter(|pin| pins.state(pin) == PinState::Severed)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Pins as a table.
    struct FakePins(BTreeMap<PathBuf, PinState>);

    impl Pins for FakePins {
        fn state(&self, pin: &Path) -> PinState {
            self.0.get(pin).copied().unwrap_or(PinState::Absent)
        }
    }

    #[test]
    fn a_live_link_is_taken_over_in_place_and_a_severed_one_replaced() {
        assert_eq!(takeover(PinState::Absent, Some(7)), Takeover::Create);
        assert_eq!(
            takeover(PinState::Attached { ifindex: 7 }, Some(7)),
            Takeover::Update
        );
        // The interface was deleted and made again: the old link is a husk.
        assert_eq!(
            takeover(PinState::Severed, Some(9)),
            Takeover::Replace(Stale::Severed)
        );
        assert_eq!(
            takeover(PinState::Severed, None),
            Takeover::Replace(Stale::Severed)
        );
        // A link still on an interface that lost its name to another.
        assert_eq!(
            takeover(PinState::Attached { ifindex: 7 }, Some(9)),
            Takeover::Replace(Stale::OtherInterface { was: 7, now: 9 })
        );
        assert_eq!(
            takeover(PinState::Unreadable, Some(7)),
            Takeover::Replace(Stale::Unreadable)
        );
        assert_eq!(
            Stale::Severed.to_string(),
            "was severed (its interface had been deleted)"
        );
    }

    #[test]
    fn only_severed_interface_links_are_found_when_reconciling() {
        let programs = ["shoal_reply", "shoal_learn"];
        assert!(is_tc_pin("shoal_reply@host@sh-ingress", &programs));
        assert!(is_tc_pin("shoal_learn@sn-abc@vx-4096", &programs));
        assert!(!is_tc_pin("shoal_connect@cgroup", &programs));
        assert!(!is_tc_pin("shoal_other@host@eth0", &programs));
        let dir = PathBuf::from("/sys/fs/bpf/shoal/x/links");
        let pins = FakePins(BTreeMap::from([
            (dir.join("shoal_reply@host@sh-ingress"), PinState::Severed),
            (
                dir.join("shoal_learn@sn-abc@ig0"),
                PinState::Attached { ifindex: 3 },
            ),
            (dir.join("shoal_learn@sn-abc@vx-4096"), PinState::Severed),
        ]));
        let found = severed(
            &pins,
            [
                dir.join("shoal_reply@host@sh-ingress"),
                dir.join("shoal_learn@sn-abc@ig0"),
                dir.join("shoal_learn@sn-abc@vx-4096"),
                dir.join("shoal_learn@sn-abc@gone"),
            ],
        );
        assert_eq!(
            found,
            [
                dir.join("shoal_reply@host@sh-ingress"),
                dir.join("shoal_learn@sn-abc@vx-4096")
            ]
        );
    }
}
