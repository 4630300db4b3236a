//! Decoders of bytes a node receives and keeps: the stored shard (`StoredShard::decode` and
//! the verifying `StoredShard::open`) and the stripe manifest (`Manifest::decode`). Each must
//! return an error, never panic; an accepted shard or manifest must re-encode to exactly the
//! input bytes (one canonical encoding).
#![no_main]

use kvs::coding::StoredShard;
use kvs::model::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = StoredShard::decode(data) {
        assert_eq!(s.encode(), data);
        let _ = StoredShard::open(data, &[7; 32], s.index);
    }
    if let Ok(m) = Manifest::decode(data) {
        assert_eq!(m.encode().ok().as_deref(), Some(data));
        let _ = m.entries();
        let _ = m.digest();
    }
});
