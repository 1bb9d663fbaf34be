//! The `bpf()` calls aya 0.14 does not offer: whether the kernel makes TCX
//! links, pointing any link at another program (`BPF_LINK_UPDATE`), which
//! interface a pinned TCX link serves (`BPF_OBJ_GET_INFO_BY_FD`), and
//! running a loaded program once on a packet (`BPF_PROG_TEST_RUN`, for the
//! bench).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
/// `enum bpf_link_type`'s TCX.
const BPF_LINK_TYPE_TCX: u32 = 11;
/// Larger than `struct bpf_link_info` on any kernel: the kernel fills what
/// it knows and checks that the rest is zero.
const LINK_INFO_SIZE: usize = 256;
/// `union bpf_attr` is larger than any command's part of it; the kernel
/// checks that the bytes it does not know are zero.
const ATTR_SIZE: usize = 128;

/// Loads a classifier that passes every packet on (`r0 = -1`, TCX_NEXT;
/// `exit`), links it to the TCX ingress of this namespace's loopback, and
/// drops both at once. Fails with the kernel's error when it cannot.
pub fn tcx_link() -> io::Result<()> {
    // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm -1; BPF_JMP | BPF_EXIT.
    let insns: [u64; 2] = [
        u64::from_ne_bytes([0xb7, 0x00, 0, 0, 0xff, 0xff, 0xff, 0xff]),
        u64::from_ne_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
    ];
    let license = b"GPL\0";
    let mut attr = [0u8; ATTR_SIZE];
    put_u32(&mut attr, 0, BPF_PROG_TYPE_SCHED_CLS);
    put_u32(&mut attr, 4, insns.len() as u32);
    put_u64(&mut attr, 8, insns.as_ptr() as u64);
    put_u64(&mut attr, 16, license.as_ptr() as u64);
    let prog = bpf(BPF_PROG_LOAD, &mut attr)?;

    let lo = nix::net::if_::if_nametoindex("lo").map_err(io::Error::from)?;
    let mut attr = [0u8; ATTR_SIZE];
    put_u32(&mut attr, 0, prog.as_raw_fd() as u32);
    put_u32(&mut attr, 4, lo);
    put_u32(&mut attr, 8, BPF_TCX_INGRESS);
    let link = bpf(BPF_LINK_CREATE, &mut attr)?;
    drop(link);
    drop(prog);
    Ok(())
}

/// What one test run gave: the verdict, the kernel's measured run time in
/// ns, and the frame as the program left it.
pub struct TestRun {
    pub verdict: u32,
    pub ns: u32,
    pub frame: Vec<u8>,
}

/// Runs the program `prog_fd` once on `frame`.
pub fn test_run(prog_fd: i32, frame: &[u8]) -> io::Result<TestRun> {
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = [0u8; ATTR_SIZE];
    put_u32(&mut attr, 0, prog_fd as u32);
    put_u32(&mut attr, 8, frame.len() as u32);
    put_u32(&mut attr, 12, out.len() as u32);
    put_u64(&mut attr, 16, frame.as_ptr() as u64);
    put_u64(&mut attr, 24, out.as_mut_ptr() as u64);
    put_u32(&mut attr, 32, 1);
    // SAFETY: `attr` is a `union bpf_attr` for BPF_PROG_TEST_RUN whose
    // buffers (`frame`, `out`) outlive the call; the size passed is its own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            attr.as_mut_ptr(),
            ATTR_SIZE,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let verdict = u32::from_ne_bytes([attr[4], attr[5], attr[6], attr[7]]);
    let size_out = u32::from_ne_bytes([attr[12], attr[13], attr[14], attr[15]]) as usize;
    let ns = u32::from_ne_bytes([attr[36], attr[37], attr[38], attr[39]]);
    out.truncate(size_out.min(out.len()));
    Ok(TestRun {
        verdict,
        ns,
        frame: out,
    })
}

/// Points the link pinned at `pin` at the program `prog_fd`, atomically
/// (`BPF_LINK_UPDATE`).
pub fn link_update(pin: &std::path::Path, prog_fd: i32) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(pin.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = [0u8; ATTR_SIZE];
    put_u64(&mut attr, 0, path.as_ptr() as u64);
    let link = bpf(BPF_OBJ_GET, &mut attr)?;
    let mut attr = [0u8; ATTR_SIZE];
    put_u32(&mut attr, 0, link.as_raw_fd() as u32);
    put_u32(&mut attr, 4, prog_fd as u32);
    // SAFETY: `attr` is a zeroed `union bpf_attr` for BPF_LINK_UPDATE with
    // both descriptors set; it holds no pointers.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_UPDATE, attr.as_mut_ptr(), ATTR_SIZE) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The index of the interface the TCX link pinned at `pin` is attached
/// to: 0 once that interface was deleted (the kernel severed the link).
/// `None` when the pin is not a TCX link. Fails with `NotFound` when
/// nothing is pinned there.
pub fn tcx_link_ifindex(pin: &std::path::Path) -> io::Result<Option<u32>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(pin.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = [0u8; ATTR_SIZE];
    put_u64(&mut attr, 0, path.as_ptr() as u64);
    let link = bpf(BPF_OBJ_GET, &mut attr)?;
    let mut info = [0u8; LINK_INFO_SIZE];
    let mut attr = [0u8; ATTR_SIZE];
    put_u32(&mut attr, 0, link.as_raw_fd() as u32);
    put_u32(&mut attr, 4, LINK_INFO_SIZE as u32);
    put_u64(&mut attr, 8, info.as_mut_ptr() as u64);
    // SAFETY: `attr` is a zeroed `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD
    // pointing at `info`, which outlives the call and is as long as said.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            ATTR_SIZE,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // struct bpf_link_info { u32 type; u32 id; u32 prog_id; union (8-byte
    // aligned, at 16) { ... struct { u32 ifindex; u32 attach_type; } tcx; } }
    let at = |i: usize| u32::from_ne_bytes([info[i], info[i + 1], info[i + 2], info[i + 3]]);
    Ok((at(0) == BPF_LINK_TYPE_TCX).then(|| at(16)))
}

/// `bpf(cmd, attr)` for a command that answers a new descriptor.
fn bpf(cmd: libc::c_long, attr: &mut [u8; ATTR_SIZE]) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a zeroed `union bpf_attr` with the command's fields
    // set; every pointer in it refers to memory that outlives the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), ATTR_SIZE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn put_u32(attr: &mut [u8; ATTR_SIZE], at: usize, v: u32) {
    attr[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(attr: &mut [u8; ATTR_SIZE], at: usize, v: u64) {
    attr[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}
