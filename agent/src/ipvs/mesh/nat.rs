//! The nftables rules of the IPVS mesh, as `nft -f` input, each replacing
//! its table in one transaction (`add` then `delete` of an empty table,
//! then the table as wanted), so a re-apply never leaves a gap:
//! - the node's: what IPVS sends into the ingress network leaves from the
//!   node's underlay address (SNAT), so the backend's answer comes back
//!   through this node, where IPVS translates it back; and what comes up
//!   the link from the ingress network is only ever an answer: a packet
//!   that would open a flow (to the node itself, or forwarded on) is
//!   dropped, so a task cannot reach its node's ports (2377, 7946, the
//!   metrics, ssh) or, through it, the underlay;
//! - a task sandbox's: packets to a virtual IP carry the VIP's address as
//!   their firewall mark, the key of the VIP's IPVS service.

use shoal_control::error_chain::ErrorChain;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use super::vip_mark;
use crate::balancer::BalancerError;

/// The node's table.
pub const NODE_TABLE: &str = "shoal_ipvs_mesh";
/// A sandbox's table.
pub const SANDBOX_TABLE: &str = "shoal_vips";

/// The start of a script that replaces table `name`.
fn replace(name: &str) -> String {
    format!("add table ip {name}\ndelete table ip {name}\n")
}

/// The node's rules: SNAT to `source` of what leaves over `link`, and
/// nothing but answers (conntrack `established` or `related`) taken in or
/// forwarded from `link`.
pub fn node_rules(link: &str, source: Ipv4Addr) -> String {
    let mut script = replace(NODE_TABLE);
    let _ = writeln!(
        script,
        "table ip {NODE_TABLE} {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; \
         policy accept;\n    oifname \"{link}\" snat to {source}\n  }}"
    );
    for hook in ["input", "forward"] {
        let _ = writeln!(
            script,
            "  chain {hook} {{\n    type filter hook {hook} priority filter; policy accept;\n    \
             iifname \"{link}\" ct state != {{ established, related }} drop\n  }}"
        );
    }
    script.push_str("}\n");
    script
}

/// Removes the node's rules.
pub fn remove_node_rules() -> String {
    replace(NODE_TABLE)
}

/// A sandbox's rules: each of `vips` marked for its service.
pub fn sandbox_rules(vips: &BTreeSet<Ipv4Addr>) -> String {
    let mut script = replace(SANDBOX_TABLE);
    if vips.is_empty() {
        return script;
    }
    let _ = writeln!(
        script,
        "table ip {SANDBOX_TABLE} {{\n  chain out {{\n    type route hook output priority mangle; \
         policy accept;"
    );
    for vip in vips {
        let _ = writeln!(
            script,
            "    ip daddr {vip} meta mark set {:#010x}",
            vip_mark(*vip)
        );
    }
    script.push_str("  }\n}\n");
    script
}

/// Runs `nft -f -` with `script` in the network namespace at `netns` (the
/// caller's when `None`).
pub fn run(netns: Option<&Path>, script: &str) -> Result<(), BalancerError> {
    let mut command = match netns {
        Some(path) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", path.display())).arg("nft");
            c
        }
        None => Command::new("nft"),
    };
    command
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let place = netns.map_or_else(|| "the node".to_string(), |p| p.display().to_string());
    let fail = |why: String| {
        BalancerError::Attach(format!(
            "cannot write the IPVS mesh's nftables rules in {place}: {why} (is `nft` \
             installed? the IPVS mesh needs the nftables package)"
        ))
    };
    let mut child = command.spawn().map_err(|e| fail(e.chain().to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| fail(e.chain().to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(e.chain().to_string()))?;
    if !out.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_snats_what_leaves_over_the_link_to_its_address() {
        let script = node_rules("sh-ingress", Ipv4Addr::new(198, 18, 0, 1));
        assert!(
            script.starts_with("add table ip shoal_ipvs_mesh\ndelete table ip shoal_ipvs_mesh\n")
        );
        assert!(script.contains("type nat hook postrouting priority srcnat"));
        assert!(script.contains("oifname \"sh-ingress\" snat to 198.18.0.1"));
    }

    #[test]
    fn only_answers_come_up_the_link_to_the_node_or_through_it() {
        let script = node_rules("sh-ingress", Ipv4Addr::new(198, 18, 0, 1));
        for hook in ["input", "forward"] {
            let chain = script
                .split(&format!("chain {hook} {{"))
                .nth(1)
                .and_then(|rest| rest.split("\n  }").next())
                .unwrap_or_else(|| panic!("no {hook} chain in:\n{script}"));
            assert!(chain.contains(&format!("type filter hook {hook} priority filter")));
            assert!(
                chain.contains("iifname \"sh-ingress\" ct state != { established, related } drop"),
                "{hook}: {chain}"
            );
        }
    }

    #[test]
    fn a_sandbox_marks_each_vip_with_its_address() {
        let vips = BTreeSet::from([Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 2, 0, 9)]);
        let script = sandbox_rules(&vips);
        assert!(script.contains("type route hook output priority mangle"));
        assert!(script.contains("ip daddr 10.1.0.2 meta mark set 0x0a010002"));
        assert!(script.contains("ip daddr 10.2.0.9 meta mark set 0x0a020009"));
    }

    #[test]
    fn no_vips_leaves_no_table() {
        assert_eq!(
            sandbox_rules(&BTreeSet::new()),
            "add table ip shoal_vips\ndelete table ip shoal_vips\n"
        );
    }

    /// nft itself accepts what is generated (`nft -c`: checked, not
    /// applied). Needs `nft` and CAP_NET_ADMIN, as `cargo xtask test` has.
    #[test]
    fn nft_accepts_the_generated_rules() {
        let vips = BTreeSet::from([Ipv4Addr::new(10, 1, 0, 2)]);
        for script in [
            node_rules("sh-ingress", Ipv4Addr::new(198, 18, 0, 1)),
            remove_node_rules(),
            sandbox_rules(&vips),
            sandbox_rules(&BTreeSet::new()),
        ] {
            let mut child = Command::new("nft")
                .args(["-c", "-f", "-"])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run nft: {e}"));
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write as _;
                stdin
                    .write_all(script.as_bytes())
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
            assert!(
                out.status.success(),
                "nft refused:\n{script}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
