//! Fuzzes what a manager decodes of a Raft call once the caller presented a
//! manager certificate, before the rest of the caller check: the JSON of an
//! AppendEntries or Vote request, and a snapshot's first chunk, whose
//! announced size must be bounded. Malformed input is refused, never a
//! panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_control::raft::{decode_header, decode_wire, RaftWire, MAX_SNAPSHOT_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    let wire = match which % 3 {
        0 => RaftWire::AppendEntries,
        1 => RaftWire::Vote,
        _ => RaftWire::SnapshotHeader,
    };
    let _ = decode_wire(wire, json);
    if let Ok(header) = decode_header(json) {
        assert!(header.size <= MAX_SNAPSHOT_BYTES);
    }
});
