//! shoal's eBPF programs, built for `bpfel-unknown-none` by `cargo xtask build-ebpf`
//! and loaded by the agent (`agent/src/ebpf`). Map names and layouts come from
//! `shoal-ebpf-common`, so both sides agree on them by construction.
#![no_std]
#![no_main]

mod mesh;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach a panic, so this is
    // never called; it exists only because `no_std` binaries must have one.
    loop {}
}
