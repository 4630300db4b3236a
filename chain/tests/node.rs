//! The node over real QUIC on loopback: a peer whose key is not in the validator set may connect
//! (it can relay transactions and follow the chain), but its consensus messages are refused and
//! counted, and they change nothing: the chain keeps finalizing.
#![cfg(feature = "node")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use chain::block::ChainContext;
use chain::consensus::driver::ConsensusMessage;
use chain::consensus::secp::{self, ValidatorAddress};
use chain::consensus::{Context, InstanceId, Round, SignedVote, Vote, VoteType};
use chain::ledger::{Genesis, Ledger};
use chain::node::net::{NetConfig, Network, WireMsg};
use chain::node::{GenesisState, NodeConfig, NodeHandle};
use secp256k1::{SecretKey, SECP256K1};
use tokio::sync::mpsc;

async fn wait_for(what: &str, node: &NodeHandle, cond: impl Fn(&chain::node::NodeStatus) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if node.status().await.is_some_and(|s| cond(&s)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consensus_messages_from_a_non_validator_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let seed = 41;
    let genesis = Genesis::example(1, seed);
    let ledger = Arc::new(Ledger::new());
    let state = GenesisState::derive(&ledger, &genesis).unwrap();
    let mut cfg = NodeConfig::new(
        genesis.chain_id.clone(),
        dir.path().to_path_buf(),
        "127.0.0.1:0".parse().unwrap(),
    );
    cfg.block_interval = Duration::from_millis(50);
    let max_frame = cfg.max_frame;
    let (node, _task) =
        chain::node::start(cfg, Genesis::example_key(seed, 0), state, ledger).unwrap();
    wait_for("the first block", &node, |s| s.height >= 1).await;

    // An outsider connects with a key of its own and sends a prevote for the next height.
    let outsider = SecretKey::from_slice(&[7; 32]).unwrap();
    let (tx, _rx) = mpsc::channel(64);
    let net = Network::start(
        &NetConfig {
            chain_id: genesis.chain_id.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            peers: vec![node.listen],
            max_frame,
        },
        outsider,
        tx,
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while net.peers().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = node.status().await.unwrap();
    assert_eq!(before.refused_non_validator, 0);
    let ctx = ChainContext::new(genesis.chain_id.clone());
    let vote = Vote::<ChainContext> {
        instance: InstanceId(0),
        height: before.height + 1,
        round: Round(0),
        vote_type: VoteType::Prevote,
        value: None,
        validator: ValidatorAddress::from_public_key(&outsider.public_key(SECP256K1)),
    };
    let signature = secp::sign(&outsider, &ctx.vote_sign_bytes(&vote).unwrap());
    for _ in 0..3 {
        net.broadcast(&WireMsg::Consensus {
            instance: InstanceId(0),
            message: ConsensusMessage::Vote(SignedVote {
                vote: vote.clone(),
                signature,
            }),
        });
    }
    wait_for("the votes to be refused", &node, |s| {
        s.refused_non_validator >= 3
    })
    .await;
    // The chain goes on as before.
    let h = node.status().await.unwrap().height;
    wait_for("three more blocks", &node, |s| s.height >= h + 3).await;
}
