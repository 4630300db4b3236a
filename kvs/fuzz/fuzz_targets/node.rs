//! A storage node serving arbitrary bytes as they arrive from the network: the frame decoder
//! (with a small size limit), the request decoder, then the node's handler over an in-memory
//! store that already holds a stripe. Nothing may panic; every failure must be an error
//! response; and the stripe the node held must still be served intact afterwards.
#![no_main]

use std::sync::{Arc, OnceLock};

use kvs::coding::{encode_bound, CodingParams};
use kvs::merkle::Hash;
use kvs::model::{pack, Manifest, Record};
use kvs::net::frame::Decoder;
use kvs::net::proto::{handle, Request, Response};
use kvs::node::NodeApi;
use kvs::store::MemStore;
use kvs::{LocalNode, StorageMode};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 16;

fn fixture() -> &'static (Hash, Vec<u8>, Manifest) {
    static F: OnceLock<(Hash, Vec<u8>, Manifest)> = OnceLock::new();
    F.get_or_init(|| {
        let rec = Record::new(b"key".to_vec(), [("c".to_string(), b"cell".to_vec())]);
        let packed = pack(&[rec]).expect("packs");
        let params = CodingParams::default();
        let mut m = Manifest {
            address: "bc1qfuzz".into(),
            root: [0; 32],
            params,
            payload_len: packed.payload.len() as u64,
            epoch: 1,
            rows: packed.rows,
        };
        let stripe = encode_bound(params, &packed.payload, &m.digest().expect("digest"))
            .expect("encodes");
        m.root = stripe.root;
        let shard = stripe.stored_shard(0).expect("shard").encode();
        (stripe.root, shard, m)
    })
}

fuzz_target!(|data: &[u8]| {
    let (root, shard, manifest) = fixture();
    let node = LocalNode::new("fuzz", Arc::new(MemStore::new()), StorageMode::Shared);
    node.put_shard(root, 0, shard, manifest).expect("fixture stored");
    let mut dec = Decoder::new(LIMIT);
    dec.feed(data);
    loop {
        match dec.next_frame() {
            Ok(Some(frame)) => {
                let resp = match Request::from_frame(&frame) {
                    // deleting the fixture is a legitimate request; keep it to check the rest
                    Ok(Request::DeleteShard { .. }) => continue,
                    Ok(req) => handle(&node, req),
                    Err(_) => continue,
                };
                let _ = resp.to_frame().expect("a response always encodes");
                if let Response::Error { message, .. } = &resp {
                    assert!(!message.is_empty());
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    let served = node.get_shard(root, 0).expect("still served").expect("still held");
    assert_eq!(&served.encode(), shard);
});
