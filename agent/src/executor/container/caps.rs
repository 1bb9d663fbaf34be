//! Linux capabilities as Docker grants them: its default set of 14, then
//! `--cap-add` / `--cap-drop` (names with or without `CAP_`, any case,
//! `ALL`) applied by Docker's rules.

use std::collections::BTreeSet;

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
pub const DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability Linux defines (0 to 40), in number order.
pub const ALL: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `net_admin` -> `CAP_NET_ADMIN`; `ALL` stays `ALL`; unknown names are
/// refused.
pub fn normalize(name: &str) -> Result<String, String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(format!("unknown capability `{name}`"))
    }
}

/// The capabilities a container gets: Docker's defaults with `add` and
/// `drop` applied. `add ALL` grants every capability but those dropped;
/// `drop ALL` keeps only those added.
pub fn resolve(add: &[String], drop: &[String]) -> Result<Vec<String>, String> {
    let add: BTreeSet<String> = add.iter().map(|c| normalize(c)).collect::<Result<_, _>>()?;
    let drop: BTreeSet<String> = drop
        .iter()
        .map(|c| normalize(c))
        .collect::<Result<_, _>>()?;
    let mut caps: BTreeSet<String> = if add.contains("ALL") {
        ALL.iter().map(|c| c.to_string()).collect()
    } else if drop.contains("ALL") {
        BTreeSet::new()
    } else {
        DEFAULT.iter().map(|c| c.to_string()).collect()
    };
    if !add.contains("ALL") {
        caps.extend(add.iter().cloned());
    }
    if !drop.contains("ALL") {
        caps.retain(|c| !drop.contains(c));
    }
    // In number order, as the kernel lists them.
    Ok(ALL
        .iter()
        .filter(|c| caps.contains(**c))
        .map(|c| c.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn defaults_are_dockers_fourteen() {
        let caps = resolve(&[], &[]).unwrap();
        assert_eq!(caps.len(), 14);
        assert!(caps.contains(&"CAP_NET_BIND_SERVICE".to_string()));
        assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_NET_ADMIN".to_string()));
    }

    #[test]
    fn add_and_drop_take_any_spelling() {
        let caps = resolve(
            &s(&["net_admin", "CAP_SYS_PTRACE"]),
            &s(&["chown", "Net_Raw"]),
        )
        .unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_SYS_PTRACE".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
        assert_eq!(caps.len(), 14);
    }

    #[test]
    fn all_in_either_list() {
        assert_eq!(resolve(&s(&["ALL"]), &[]).unwrap().len(), 41);
        assert_eq!(resolve(&s(&["all"]), &s(&["sys_admin"])).unwrap().len(), 40);
        assert_eq!(
            resolve(&s(&["kill"]), &s(&["ALL"])).unwrap(),
            s(&["CAP_KILL"])
        );
        assert!(resolve(&[], &s(&["all"])).unwrap().is_empty());
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!(resolve(&s(&["CAP_FLY"]), &[]).is_err());
        assert!(normalize("").is_err());
    }
}
