//! What a node keeps of its tasks (#13, item 8): a finished task keeps no
//! cgroup (in cgroup2 and, on a hybrid host, in the v1 hierarchies that hold
//! its limits), and `swarm leave` leaves no namespace mount under the
//! agent's run dir, including those of tasks on no network.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_tests::swarm::{cli_ok, create, start_agent, tasks, wait_for, wait_running};
use shoal_tests::{cgroup2_mount, require_root, Host, Underlay};

/// The directories that hold the agent's task cgroups: its `--cgroup-root`
/// on cgroup2 and the same path in every cgroup v1 hierarchy.
fn cgroup_roots(host: &Host) -> Vec<PathBuf> {
    let mut roots = vec![cgroup2_mount().join(host.netns())];
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.get(dash + 1) == Some(&"cgroup") {
            roots.push(Path::new(fields[4]).join(host.netns()));
        }
    }
    roots
}

/// Every task cgroup of the host's agent: `(root, child)` directories.
fn task_cgroups(host: &Host) -> Vec<PathBuf> {
    cgroup_roots(host)
        .iter()
        .filter_map(|root| std::fs::read_dir(root).ok())
        .flat_map(|entries| entries.filter_map(Result::ok))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// The mounts at or under the host's run dir, as the agent `pid` sees them.
fn run_dir_mounts(host: &Host, pid: u32) -> Vec<String> {
    let mountinfo =
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("agent's mountinfo");
    let run_dir = host.run_dir();
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(&run_dir))
        .map(str::to_string)
        .collect()
}

#[test]
fn finished_tasks_keep_no_cgroup_and_leave_removes_every_task_mount() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let h = &ul.hosts()[0];
    let pid = start_agent(h).expect("agent");
    let addr = h.addr().to_string();
    cli_ok(h, &["swarm", "init", "--advertise-addr", &addr]);

    // Tasks on no network that end at once, with limits (so a hybrid host
    // gives them v1 cgroups too), and are not restarted.
    create(
        h,
        "done",
        &[
            "--replicas",
            "3",
            "--restart-condition",
            "none",
            "--limit-memory",
            "64M",
            "--limit-cpu",
            "0.5",
        ],
        &["sh", "-c", "exit 0"],
    );
    let complete = wait_for(Duration::from_secs(60), || {
        let all = tasks(h, &["service", "ps", "done"]);
        all.len() == 3
            && all.iter().all(|t| {
                t["CurrentState"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Complete"))
            })
    });
    assert!(
        complete,
        "the tasks of `done` did not complete: {:?}",
        tasks(h, &["service", "ps", "done"])
    );
    let released = wait_for(Duration::from_secs(20), || task_cgroups(h).is_empty());
    assert!(
        released,
        "finished tasks kept their cgroups: {:?}",
        task_cgroups(h)
    );

    // Tasks on no network that run: each has a cgroup and a namespace.
    create(
        h,
        "bare",
        &["--replicas", "2", "--limit-memory", "64M"],
        &["sleep", "1000"],
    );
    wait_running(h, "bare", 2, Duration::from_secs(60));
    let running = task_cgroups(h);
    assert!(
        running.len() >= 2,
        "running tasks have no cgroup: {running:?}"
    );
    let mounts = run_dir_mounts(h, pid);
    assert!(
        mounts.iter().filter(|m| m.contains("tk-")).count() >= 2,
        "the tasks on no network have no namespace mount: {mounts:?}"
    );

    cli_ok(h, &["swarm", "leave", "--force"]);
    let clean = wait_for(Duration::from_secs(20), || {
        run_dir_mounts(h, pid).is_empty() && task_cgroups(h).is_empty()
    });
    assert!(
        clean,
        "after `swarm leave`: mounts under the run dir {:?}, task cgroups {:?}",
        run_dir_mounts(h, pid),
        task_cgroups(h)
    );
}
