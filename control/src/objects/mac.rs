//! Ethernet MAC addresses, written `02:42:0a:00:00:02` in files and on the wire.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

/// A MAC address that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid MAC address `{0}`: expected six hex bytes like 02:42:0a:00:00:02")]
pub struct MacParseError(pub String);

impl MacAddr {
    /// The locally administered unicast MAC that Docker derives from an IPv4
    /// address: `02:42` followed by the four address bytes. Deterministic, so
    /// every node computes the same MAC for a task IP without asking anyone.
    pub fn from_ipv4(ip: Ipv4Addr) -> Self {
        let [a, b, c, d] = ip.octets();
        MacAddr([0x02, 0x42, a, b, c, d])
    }

    /// The six bytes, as netlink wants them.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Builds a MAC from a netlink link-layer attribute; `None` unless it is
    /// exactly six bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints() {
        let mac: MacAddr = "02:42:0A:00:00:FE".parse().unwrap();
        assert_eq!(mac.to_string(), "02:42:0a:00:00:fe");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "02:42",
            "02:42:0a:00:00:fe:01",
            "zz:42:0a:00:00:fe",
            "2:42:0a:00:00:fe0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn derived_from_ipv4_like_docker() {
        let mac = MacAddr::from_ipv4(Ipv4Addr::new(10, 0, 1, 7));
        assert_eq!(mac.to_string(), "02:42:0a:00:01:07");
    }

    proptest! {
        #[test]
        fn round_trips(bytes in any::<[u8; 6]>()) {
            let mac = MacAddr(bytes);
            prop_assert_eq!(mac.to_string().parse::<MacAddr>().unwrap(), mac);
            let json = serde_json::to_string(&mac).unwrap();
            prop_assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), mac);
        }
    }
}
