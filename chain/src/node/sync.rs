//! Block sync and round catch-up.
//!
//! Every node gossips its (height, round). A node that sees a peer ahead asks it for the
//! committed blocks above its own head ([`WireMsg::SyncRequest`]); each block received
//! ([`WireMsg::SyncBlocks`]) is applied only after its commit certificate verifies against the
//! validator set of its height (the set our own head names for the next height) and the block
//! matches the certified hash; it then enters consensus as a decided value. A peer at our
//! height but an earlier round gets our own messages of its round again.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::net::{PeerId, WireMsg};
use super::Node;
use crate::block::ChainContext;
use crate::consensus::secp::ValidatorAddress;
use crate::consensus::{Context, Decision, Input, Round, Step};

/// Most blocks sent in one [`WireMsg::SyncBlocks`].
pub const SYNC_BATCH: u32 = 32;
/// Most bytes of blocks sent in one batch (below the frame limit).
pub const SYNC_BATCH_BYTES: usize = 8 << 20;
/// Minimum pause between two sync requests while a request is outstanding.
const REQUEST_RETRY: Duration = Duration::from_millis(1000);

/// Where sync stands.
#[derive(Debug, Default)]
pub struct SyncState {
    /// Highest height a peer reported working on.
    best_peer_height: u64,
    /// When we last asked, and from which height.
    last_request: Option<(Instant, u64)>,
    /// Per peer: the last catch-up we sent (height, round), to send each once.
    caught_up: HashMap<ValidatorAddress, (u64, Round)>,
}

impl SyncState {
    /// Whether peers are more than one height ahead of `committed` (then the node starts the
    /// next height at once instead of waiting for the block interval).
    pub fn behind(&self, committed: u64) -> bool {
        self.best_peer_height > committed.saturating_add(1)
    }
}

impl Node {
    pub(super) fn on_status(&mut self, peer: &PeerId, height: u64, round: Round) {
        let core = self.driver.core();
        let ours = core.height();
        if height > ours {
            self.request_sync(peer, height);
            return;
        }
        if height == ours && round < core.round() && core.step() != Step::Commit {
            if self.sync.caught_up.get(&peer.address) == Some(&(height, round)) {
                return;
            }
            self.sync.caught_up.insert(peer.address, (height, round));
            for message in self.driver.catch_up(round) {
                self.net.send(
                    &peer.address,
                    &WireMsg::Consensus {
                        instance: self.instance,
                        message,
                    },
                );
            }
        }
    }

    /// Asks `peer`, which works on `their_height`, for the blocks above our head.
    pub(super) fn request_sync(&mut self, peer: &PeerId, their_height: u64) {
        self.sync.best_peer_height = self.sync.best_peer_height.max(their_height);
        let Ok(head) = self.shared.store.require_head() else {
            return;
        };
        // A peer one height ahead is usually just finishing the height we are in.
        if their_height <= head.height.saturating_add(1) {
            return;
        }
        let from = head.height.saturating_add(1);
        if let Some((at, h)) = self.sync.last_request {
            if h == from && at.elapsed() < REQUEST_RETRY {
                return;
            }
        }
        self.sync.last_request = Some((Instant::now(), from));
        tracing::debug!(peer = %peer.address, from, their_height, "requesting blocks");
        self.net.send(
            &peer.address,
            &WireMsg::SyncRequest {
                instance: self.instance,
                from,
                max: SYNC_BATCH,
            },
        );
    }

    pub(super) fn serve_sync(&mut self, peer: &PeerId, from: u64, max: u32) {
        let Ok(head) = self.shared.store.require_head() else {
            return;
        };
        let mut decisions = Vec::new();
        let mut bytes = 0usize;
        let mut h = from.max(1);
        while h <= head.height
            && decisions.len() < usize::try_from(max.min(SYNC_BATCH)).unwrap_or(0)
        {
            match self.shared.store.decision(h) {
                Ok(Some(d)) => {
                    let size: usize = d
                        .value
                        .txs
                        .iter()
                        .map(Vec::len)
                        .fold(0, usize::saturating_add);
                    bytes = bytes.saturating_add(size);
                    if bytes > SYNC_BATCH_BYTES && !decisions.is_empty() {
                        break;
                    }
                    decisions.push(d);
                }
                _ => break,
            }
            let Some(next) = h.checked_add(1) else { break };
            h = next;
        }
        if !decisions.is_empty() {
            self.net.send(
                &peer.address,
                &WireMsg::SyncBlocks {
                    instance: self.instance,
                    decisions,
                },
            );
        }
    }

    pub(super) fn on_sync_blocks(&mut self, peer: &PeerId, decisions: Vec<Decision<ChainContext>>) {
        let full = decisions.len() >= usize::try_from(SYNC_BATCH).unwrap_or(usize::MAX);
        let mut last = 0;
        for d in decisions {
            let Ok(head) = self.shared.store.require_head() else {
                return;
            };
            let height = d.certificate.height;
            if height <= head.height {
                continue;
            }
            if head.height.checked_add(1) != Some(height) {
                break;
            }
            if let Err(e) = d
                .certificate
                .verify(&self.ctx, self.instance, &head.next_validators)
            {
                tracing::warn!(peer = %peer.address, height, error = %e, "synced block has a bad certificate");
                return;
            }
            if self.ctx.value_id(&d.value) != d.certificate.value_id {
                tracing::warn!(peer = %peer.address, height, "synced block does not match its certificate");
                return;
            }
            if self.driver.core().height() < height {
                self.start_height(height);
            }
            self.feed(Input::Commit {
                value: d.value,
                certificate: d.certificate,
            });
            last = height;
        }
        // A full batch means there is more: ask again without waiting for the next status.
        if full && last > 0 {
            self.sync.last_request = None;
            let best = self.sync.best_peer_height;
            self.request_sync(peer, best);
        }
    }
}
