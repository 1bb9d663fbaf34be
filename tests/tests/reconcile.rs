//! One bad object never stalls the rest, on namespaced hosts with the real
//! binary: a network the node's kernel refuses is reported (`network
//! inspect`, the task's error, the metrics) and retried with backoff, while
//! a network created after it is built and its published service answers.

use std::time::Duration;

use shoal_tests::mesh::{curl, METRICS, SERVER};
use shoal_tests::swarm::{
    cli, cli_ok, create, form, start_agent_with, tasks, text, wait_for, wait_running,
};
use shoal_tests::{require_root, Host, Underlay};

/// The VNI `network inspect` shows for `network`.
fn vni(h: &Host, network: &str) -> String {
    cli_ok(
        h,
        &[
            "network",
            "inspect",
            "--format",
            "{{index .Options \"com.docker.network.driver.overlay.vxlanid_list\"}}",
            network,
        ],
    )
}

/// `network inspect`'s failures of `network`, as JSON text.
fn failures(h: &Host, network: &str) -> String {
    cli_ok(
        h,
        &[
            "network",
            "inspect",
            "--format",
            "{{json .Failures}}",
            network,
        ],
    )
}

/// The value of the metric line starting with `prefix` on `h`'s agent.
fn metric(h: &Host, prefix: &str) -> Option<u64> {
    let text = curl(h, &format!("http://{METRICS}/metrics"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
}

#[test]
fn a_network_the_kernel_refuses_never_stalls_the_networks_after_it() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let (h, client) = (&ul.hosts()[0], &ul.hosts()[1]);
    start_agent_with(h, &["--metrics-addr", METRICS]).expect("agent");
    form(h, &[], &[]);

    // Networks get the lowest free VNI: learn the one `bad` will get, then
    // take it on the host with a VXLAN device of its own, as another VXLAN
    // user of the host would. The kernel then refuses shoal's device.
    cli_ok(h, &["network", "create", "probe"]);
    let taken = vni(h, "probe");
    cli_ok(h, &["network", "rm", "probe"]);
    let blocker = "vxblock";
    let out = h
        .exec(
            "ip",
            &[
                "link", "add", blocker, "type", "vxlan", "id", &taken, "dstport", "4789",
            ],
        )
        .expect("ip link add");
    assert!(out.status.success(), "{}", text(&out));
    cli_ok(h, &["network", "create", "bad"]);
    assert_eq!(vni(h, "bad"), taken, "`bad` did not get the VNI taken");

    // A network created after it is built, and a service on it answers on
    // its published port.
    cli_ok(h, &["network", "create", "good"]);
    create(
        h,
        "web",
        &["--network", "good", "--publish", "8080:80"],
        &["python3", "-c", SERVER],
    );
    wait_running(h, "web", 1, Duration::from_secs(60));
    let url = format!("http://{}:8080/", h.addr());
    let answered = wait_for(Duration::from_secs(20), || {
        curl(client, &url).is_some_and(|body| body.starts_with("task="))
    });
    assert!(answered, "the service on `good` does not answer on {url}");
    let good = failures(h, "good");
    assert!(!good.contains(h.name()), "{good}");

    // The user sees why, on the network.
    let reported = wait_for(Duration::from_secs(20), || {
        failures(h, "bad").contains(h.name())
    });
    let shown = failures(h, "bad");
    assert!(reported, "network inspect shows no failure: {shown}");
    assert!(shown.contains("File exists"), "{shown}");

    // A task on the failing network fails with the network's error.
    create(h, "onbad", &["--network", "bad"], &["sleep", "300"]);
    let mut seen = String::new();
    let explained = wait_for(Duration::from_secs(30), || {
        seen = format!("{:?}", tasks(h, &["service", "ps", "onbad"]));
        seen.contains("is not built on this node") && seen.contains("File exists")
    });
    assert!(explained, "the task's error does not say why: {seen}");

    // The failures are counted, and retried with backoff, not every pass.
    let counted = metric(h, "shoal_reconcile_failures_total{part=\"network\"}");
    assert!(counted.is_some_and(|n| n >= 1), "{counted:?}");
    std::thread::sleep(Duration::from_secs(5));
    let later = metric(h, "shoal_reconcile_failures_total{part=\"network\"}");
    let passes = metric(h, "shoal_overlay_reconciles_total").unwrap_or(0);
    let attempts = later.unwrap_or(0) - counted.unwrap_or(0);
    assert!(
        attempts <= 3,
        "{attempts} attempts at `bad` in 5 s ({passes} passes in all): no backoff"
    );
    assert_eq!(
        metric(h, "shoal_reconcile_failing{part=\"network\"}"),
        Some(1)
    );
    assert!(metric(h, "shoal_tasks{state=\"running\"}").is_some_and(|n| n >= 1));

    // Once the VNI is free, the network is built without a restart.
    let out = h
        .exec("ip", &["link", "del", blocker])
        .expect("ip link del");
    assert!(out.status.success(), "{}", text(&out));
    let recovered = wait_for(Duration::from_secs(75), || {
        !failures(h, "bad").contains(h.name())
    });
    assert!(recovered, "still failing: {}", failures(h, "bad"));
    assert_eq!(
        metric(h, "shoal_reconcile_failing{part=\"network\"}"),
        Some(0)
    );
    let out = cli(h, &["service", "rm", "onbad", "web"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_subnet_over_a_nodes_underlay_address_is_refused_naming_both() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let h: &Host = &ul.hosts()[0];
    start_agent_with(h, &[]).expect("agent");
    form(h, &[], &[]);
    let addr = h.addr();
    let octets = addr.octets();
    let subnet = format!("{}.{}.{}.0/24", octets[0], octets[1], octets[2]);
    let out = cli(h, &["network", "create", "--subnet", &subnet, "under"]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains(&subnet), "{said}");
    assert!(said.contains(&format!("{addr}/32")), "{said}");
    assert!(said.contains(h.name()), "{said}");
    let names = cli_ok(h, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(!names.lines().any(|n| n == "under"), "{names}");
    // A subnet clear of the underlay is taken.
    cli_ok(
        h,
        &["network", "create", "--subnet", "10.77.0.0/24", "clear"],
    );

    // A route only the node knows: the managers take the subnet, the node
    // does not build it and says why, naming both.
    let route = ["route", "add", "10.88.0.0/16", "dev", h.iface()];
    let out = h.exec("ip", &route).expect("ip route add");
    assert!(out.status.success(), "{}", text(&out));
    cli_ok(
        h,
        &["network", "create", "--subnet", "10.88.1.0/24", "routed"],
    );
    let reported = wait_for(Duration::from_secs(20), || {
        failures(h, "routed").contains("10.88.0.0/16")
    });
    let shown = failures(h, "routed");
    assert!(reported, "no failure shown: {shown}");
    assert!(
        shown.contains("10.88.1.0/24") && shown.contains(h.name()),
        "{shown}"
    );
    assert!(!failures(h, "clear").contains(h.name()));
    let out = h
        .exec("ip", &["route", "del", "10.88.0.0/16", "dev", h.iface()])
        .expect("ip route del");
    assert!(out.status.success(), "{}", text(&out));
    let built = wait_for(Duration::from_secs(75), || {
        !failures(h, "routed").contains(h.name())
    });
    assert!(built, "still refused: {}", failures(h, "routed"));
}
