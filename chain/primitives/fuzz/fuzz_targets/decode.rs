//! Feeds arbitrary bytes to every decoder of network and disk input in `primitives`: the
//! canonical codec (through the envelope and a few shapes), the order-preserving key decoder and
//! the canonical value decoder. Each must return an error, never panic, and anything it accepts
//! must re-encode to the same bytes.
#![no_main]

use carchain_primitives::codec;
use carchain_primitives::record::{decode_value, encode_value, RecordKey};
use carchain_primitives::SealedRecord;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    if let Ok(sealed) = SealedRecord::from_bytes(data) {
        assert_eq!(sealed.to_bytes().ok().as_deref(), Some(data));
    }
    if let Ok(key) = RecordKey::decode(data) {
        assert_eq!(key.encode(), data);
    }
    if let Ok(value) = decode_value(data) {
        assert_eq!(encode_value(&value), data);
    }
    if let Ok(v) = codec::from_slice::<Vec<(u64, String, Option<bool>)>>(data) {
        assert_eq!(codec::to_vec(&v).ok().as_deref(), Some(data));
    }
    if let Ok(m) = codec::from_slice::<BTreeMap<Vec<u8>, i32>>(data) {
        assert_eq!(codec::to_vec(&m).ok().as_deref(), Some(data));
    }
});
