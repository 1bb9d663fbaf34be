//! Object ids, Swarm's shape: 25 lowercase base36 characters from 128
//! random bits. One generator per kind of object, so every call site says
//! what it names.

use rand::Rng;

/// Characters of an id.
pub const ID_LEN: usize = 25;

/// A new node's id (also its certificate's CN).
pub fn new_node_id() -> String {
    random_id()
}

/// A new swarm's id (its certificates' O).
pub fn new_cluster_id() -> String {
    random_id()
}

/// A new network's id.
pub fn new_network_id() -> String {
    random_id()
}

/// A new service's id.
pub fn new_service_id() -> String {
    random_id()
}

/// A new secret's or config's id.
pub fn new_payload_id() -> String {
    random_id()
}

/// A new task's id.
pub fn new_task_id() -> String {
    random_id()
}

fn random_id() -> String {
    to_base36(rand::rng().random(), ID_LEN)
}

/// `value` in lowercase base36, left-padded with zeros to `width`.
pub fn to_base36(mut value: u128, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(width);
    while value > 0 {
        out.push(DIGITS[(value % 36) as usize]);
        value /= 36;
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_25_base36_chars_and_differ() {
        for id in [
            new_node_id(),
            new_cluster_id(),
            new_network_id(),
            new_service_id(),
            new_task_id(),
        ] {
            assert_eq!(id.len(), ID_LEN);
            assert!(id
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        }
        assert_ne!(new_task_id(), new_task_id());
        assert_eq!(to_base36(u128::MAX, ID_LEN).len(), ID_LEN);
        assert_eq!(to_base36(35, 2), "0z");
    }
}
