//! Feeds arbitrary bytes to every decoder of network input in `chain`: signed transactions (from
//! peers' gossip and from clients), module calls inside them, blocks and commit certificates
//! (from block sync), state-tree nodes and state proofs (from untrusted agents, checked by light
//! clients). Each must return an error, never panic, and anything it accepts must re-encode to
//! exactly the same bytes.
#![no_main]

use carchain_primitives::codec;
use chain::block::{Block, ChainContext};
use chain::consensus::CommitCertificate;
use chain::ledger::bank::BankCall;
use chain::ledger::registry::RegistryCall;
use chain::ledger::staking::StakingCall;
use chain::state::smt::{Node, StateProof};
use chain::tx::SignedTx;
use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};

/// Decoding with the canonical codec accepts only canonical bytes.
fn roundtrip<T: Serialize + DeserializeOwned>(data: &[u8]) {
    if let Ok(v) = codec::from_slice::<T>(data) {
        assert_eq!(codec::to_vec(&v).ok().as_deref(), Some(data));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = SignedTx::decode(data, 1 << 16) {
        assert_eq!(tx.encode().ok().as_deref(), Some(data));
        let _ = tx.verify_signature();
    }
    if let Ok(node) = Node::decode(data) {
        assert_eq!(node.encode().ok().as_deref(), Some(data));
    }
    if let Ok(proof) = StateProof::from_bytes(data) {
        assert_eq!(proof.to_bytes().ok().as_deref(), Some(data));
        let _ = proof.verify(&[0; 32], b"key", Some(b"value"));
    }
    roundtrip::<BankCall>(data);
    roundtrip::<RegistryCall>(data);
    roundtrip::<StakingCall>(data);
    roundtrip::<Block>(data);
    roundtrip::<CommitCertificate<ChainContext>>(data);
});
