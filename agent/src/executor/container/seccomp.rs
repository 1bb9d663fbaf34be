//! Docker's default seccomp profile, as data of our own, resolved into the
//! OCI `linux.seccomp` object when a container's spec is made: rules that
//! depend on a capability, an architecture or a kernel version are kept or
//! dropped right then, so runc gets a plain allow-list. Everything not
//! allowed fails with EPERM (`clone3` with ENOSYS, so libc falls back to
//! `clone`, whose namespace flags stay forbidden without CAP_SYS_ADMIN).
//! The facts (names and conditions) follow moby's
//! `profiles/seccomp/default.json`.

use serde_json::{json, Value};

/// Allowed for every container.
#[rustfmt::skip]
const ALWAYS: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "capget", "capset",
    "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres",
    "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat",
    "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old",
    "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
    "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64",
    "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown",
    "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock",
    "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64",
    "fsync", "ftruncate", "ftruncate64", "futex", "futex_time64", "futex_waitv", "futimesat",
    "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32",
    "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid",
    "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresgid32",
    "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid",
    "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid",
    "getuid32", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1",
    "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup", "io_submit", "io_uring_enter",
    "io_uring_register", "io_uring_setup", "ipc", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32", "lgetxattr",
    "link", "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek",
    "lsetxattr", "lstat", "lstat64", "madvise", "membarrier", "memfd_create", "memfd_secret",
    "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap",
    "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap",
    "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2",
    "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev",
    "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom",
    "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename",
    "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl",
    "semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64",
    "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid",
    "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid",
    "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid",
    "setreuid32", "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area",
    "set_tid_address", "setuid", "setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget",
    "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall",
    "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink",
    "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time",
    "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64",
    "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64",
    "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev",
];

/// The namespace flags `clone` may not be given without CAP_SYS_ADMIN:
/// CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET (0x7E020000).
const CLONE_NAMESPACE_FLAGS: u64 = 2_114_060_288;

/// A syscall argument comparison.
#[derive(Clone, Copy, Debug)]
struct Arg {
    index: u32,
    value: u64,
    op: &'static str,
}

/// One conditional rule of the profile.
struct Rule {
    names: &'static [&'static str],
    /// `None` allows; `Some(errno)` fails with it.
    errno: Option<u32>,
    args: &'static [Arg],
    /// Kept only with all of these capabilities.
    with_caps: &'static [&'static str],
    /// Dropped when the container has any of these capabilities.
    without_caps: &'static [&'static str],
    /// Kept only on these architectures (Go's names); empty = all.
    arches: &'static [&'static str],
    /// Dropped on these architectures.
    not_arches: &'static [&'static str],
    /// Kept only from this kernel on.
    min_kernel: Option<(u32, u32)>,
}

const RULE: Rule = Rule {
    names: &[],
    errno: None,
    args: &[],
    with_caps: &[],
    without_caps: &[],
    arches: &[],
    not_arches: &[],
    min_kernel: None,
};

const fn eq(index: u32, value: u64) -> Arg {
    Arg {
        index,
        value,
        op: "SCMP_CMP_EQ",
    }
}

const RULES: &[Rule] = &[
    Rule {
        names: &["process_vm_readv", "process_vm_writev", "ptrace"],
        min_kernel: Some((4, 8)),
        ..RULE
    },
    // AF_VSOCK (40) sockets only are refused.
    Rule {
        names: &["socket"],
        args: &[Arg {
            index: 0,
            value: 40,
            op: "SCMP_CMP_NE",
        }],
        ..RULE
    },
    Rule {
        names: &["personality"],
        args: &[eq(0, 0)],
        ..RULE
    },
    Rule {
        names: &["personality"],
        args: &[eq(0, 8)],
        ..RULE
    },
    Rule {
        names: &["personality"],
        args: &[eq(0, 131_072)],
        ..RULE
    },
    Rule {
        names: &["personality"],
        args: &[eq(0, 131_080)],
        ..RULE
    },
    Rule {
        names: &["personality"],
        args: &[eq(0, 4_294_967_295)],
        ..RULE
    },
    Rule {
        names: &["sync_file_range2", "swapcontext"],
        arches: &["ppc64le"],
        ..RULE
    },
    Rule {
        names: &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        arches: &["arm", "arm64"],
        ..RULE
    },
    Rule {
        names: &["arch_prctl"],
        arches: &["amd64", "x32"],
        ..RULE
    },
    Rule {
        names: &["modify_ldt"],
        arches: &["amd64", "x32", "x86"],
        ..RULE
    },
    Rule {
        names: &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
        arches: &["s390", "s390x"],
        ..RULE
    },
    Rule {
        names: &["riscv_flush_icache"],
        arches: &["riscv64"],
        ..RULE
    },
    Rule {
        names: &["open_by_handle_at"],
        with_caps: &["CAP_DAC_READ_SEARCH"],
        ..RULE
    },
    Rule {
        names: &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        with_caps: &["CAP_SYS_ADMIN"],
        ..RULE
    },
    Rule {
        names: &["clone"],
        args: &[Arg {
            index: 0,
            value: CLONE_NAMESPACE_FLAGS,
            op: "SCMP_CMP_MASKED_EQ",
        }],
        without_caps: &["CAP_SYS_ADMIN"],
        not_arches: &["s390", "s390x"],
        ..RULE
    },
    Rule {
        names: &["clone"],
        args: &[Arg {
            index: 1,
            value: CLONE_NAMESPACE_FLAGS,
            op: "SCMP_CMP_MASKED_EQ",
        }],
        arches: &["s390", "s390x"],
        without_caps: &["CAP_SYS_ADMIN"],
        ..RULE
    },
    Rule {
        names: &["clone3"],
        errno: Some(38),
        without_caps: &["CAP_SYS_ADMIN"],
        ..RULE
    },
    Rule {
        names: &["reboot"],
        with_caps: &["CAP_SYS_BOOT"],
        ..RULE
    },
    Rule {
        names: &["chroot"],
        with_caps: &["CAP_SYS_CHROOT"],
        ..RULE
    },
    Rule {
        names: &["delete_module", "init_module", "finit_module"],
        with_caps: &["CAP_SYS_MODULE"],
        ..RULE
    },
    Rule {
        names: &["acct"],
        with_caps: &["CAP_SYS_PACCT"],
        ..RULE
    },
    Rule {
        names: &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
        with_caps: &["CAP_SYS_PTRACE"],
        ..RULE
    },
    Rule {
        names: &["iopl", "ioperm"],
        with_caps: &["CAP_SYS_RAWIO"],
        ..RULE
    },
    Rule {
        names: &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        with_caps: &["CAP_SYS_TIME"],
        ..RULE
    },
    Rule {
        names: &["vhangup"],
        with_caps: &["CAP_SYS_TTY_CONFIG"],
        ..RULE
    },
    Rule {
        names: &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
        with_caps: &["CAP_SYS_NICE"],
        ..RULE
    },
    Rule {
        names: &["syslog"],
        with_caps: &["CAP_SYSLOG"],
        ..RULE
    },
    Rule {
        names: &["bpf"],
        with_caps: &["CAP_BPF"],
        ..RULE
    },
    Rule {
        names: &["perf_event_open"],
        with_caps: &["CAP_PERFMON"],
        ..RULE
    },
];

/// The machine a profile is resolved for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Go's architecture name: `amd64`, `arm64`...
    pub arch: String,
    /// The running kernel's (major, minor).
    pub kernel: (u32, u32),
}

impl Target {
    /// This machine.
    pub fn current() -> Target {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Target {
            arch: arch.to_string(),
            kernel: parse_kernel(&release),
        }
    }
}

/// `6.1.0-18-amd64` -> (6, 1).
fn parse_kernel(release: &str) -> (u32, u32) {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

/// libseccomp's names of the architectures a profile covers on `arch`
/// (the native one and the 32-bit ones it can run).
fn scmp_arches(arch: &str) -> Vec<&'static str> {
    match arch {
        "amd64" => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "arm64" => vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "s390x" => vec!["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
        "ppc64le" => vec!["SCMP_ARCH_PPC64LE"],
        "riscv64" => vec!["SCMP_ARCH_RISCV64"],
        _ => vec![],
    }
}

/// The OCI `linux.seccomp` object for a container with `caps` on `target`.
pub fn profile(caps: &[String], target: &Target) -> Value {
    let has = |cap: &&str| caps.iter().any(|c| c == cap);
    let mut syscalls = vec![json!({"names": ALWAYS, "action": "SCMP_ACT_ALLOW"})];
    for rule in RULES {
        let keep = rule.with_caps.iter().all(has)
            && !rule.without_caps.iter().any(has)
            && (rule.arches.is_empty() || rule.arches.contains(&target.arch.as_str()))
            && !rule.not_arches.contains(&target.arch.as_str())
            && rule.min_kernel.is_none_or(|min| target.kernel >= min);
        if !keep {
            continue;
        }
        let mut entry = json!({
            "names": rule.names,
            "action": if rule.errno.is_some() { "SCMP_ACT_ERRNO" } else { "SCMP_ACT_ALLOW" },
        });
        if let Some(errno) = rule.errno {
            entry["errnoRet"] = json!(errno);
        }
        if !rule.args.is_empty() {
            entry["args"] = rule
                .args
                .iter()
                .map(|a| json!({"index": a.index, "value": a.value, "op": a.op}))
                .collect();
        }
        syscalls.push(entry);
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": scmp_arches(&target.arch),
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd64() -> Target {
        Target {
            arch: "amd64".into(),
            kernel: (6, 1),
        }
    }

    /// The rules that allow `name` in a resolved profile.
    fn rules_for(profile: &Value, name: &str) -> Vec<Value> {
        profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"].as_array().unwrap().iter().any(|n| n == name))
            .cloned()
            .collect()
    }

    fn defaults() -> Vec<String> {
        super::super::caps::resolve(&[], &[]).unwrap()
    }

    #[test]
    fn default_caps_forbid_mount_unshare_and_modules() {
        let p = profile(&defaults(), &amd64());
        for name in [
            "mount",
            "unshare",
            "setns",
            "init_module",
            "finit_module",
            "bpf",
            "reboot",
            "umount2",
        ] {
            assert!(rules_for(&p, name).is_empty(), "{name} is allowed");
        }
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        assert_eq!(p["architectures"][0], "SCMP_ARCH_X86_64");
    }

    #[test]
    fn clone_is_allowed_only_without_namespace_flags_and_clone3_says_enosys() {
        let p = profile(&defaults(), &amd64());
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone[0]["args"][0]["index"], 0);
        let clone3 = rules_for(&p, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3[0]["errnoRet"], 38);
    }

    #[test]
    fn capabilities_open_their_syscalls() {
        let mut caps = defaults();
        caps.push("CAP_SYS_ADMIN".into());
        caps.push("CAP_SYS_PTRACE".into());
        let p = profile(&caps, &amd64());
        assert_eq!(rules_for(&p, "mount").len(), 1);
        // With SYS_ADMIN, clone is unrestricted and clone3 allowed.
        let clone = rules_for(&p, "clone");
        assert!(clone.iter().all(|r| r.get("args").is_none()));
        assert!(rules_for(&p, "clone3")
            .iter()
            .all(|r| r["action"] == "SCMP_ACT_ALLOW"));
        assert!(!rules_for(&p, "kcmp").is_empty());
        // chroot comes with the default SYS_CHROOT.
        assert!(!rules_for(&p, "chroot").is_empty());
    }

    #[test]
    fn arch_and_kernel_conditions_resolve() {
        let p = profile(&defaults(), &amd64());
        assert!(!rules_for(&p, "arch_prctl").is_empty());
        assert!(rules_for(&p, "cacheflush").is_empty());
        let arm = Target {
            arch: "arm64".into(),
            kernel: (5, 15),
        };
        let p = profile(&defaults(), &arm);
        assert!(rules_for(&p, "arch_prctl").is_empty());
        assert!(!rules_for(&p, "cacheflush").is_empty());
        let old = Target {
            arch: "amd64".into(),
            kernel: (4, 4),
        };
        assert!(rules_for(&profile(&defaults(), &old), "ptrace").is_empty());
        assert!(!rules_for(&profile(&defaults(), &amd64()), "ptrace").is_empty());
    }

    #[test]
    fn kernel_release_strings_parse() {
        assert_eq!(parse_kernel("6.1.0-18-amd64"), (6, 1));
        assert_eq!(parse_kernel("5.15.0-91-generic"), (5, 15));
        assert_eq!(parse_kernel("6.18"), (6, 18));
        assert_eq!(parse_kernel("garbage"), (0, 0));
    }
}
