//! Peers over QUIC (quinn, TLS 1.3) with validator-key identities.
//!
//! TLS certificates are throwaway: a peer's identity is its secp256k1 key. Right after the
//! handshake each side sends a [`Hello`] signing (chain id ‖ its public key ‖ keying material
//! exported from this TLS session) with that key, so the identity is bound to the session and a
//! hello cannot be replayed on another connection. Messages travel one per unidirectional
//! stream, as versioned frames ([`net::frame`]) of canonically encoded [`WireMsg`]s, bounded by
//! a size limit. Every configured peer address is dialled and redialled with exponential
//! backoff; inbound connections are accepted from anyone (non-validators may sync and submit
//! transactions; the node refuses their consensus traffic).
//!
//! One connection per pair of nodes: when both dial each other, both keep the connection
//! dialled by the lower address and close the other with [`CLOSE_DUPLICATE`]; a dialler whose
//! connection was the duplicate waits until the pair is disconnected before dialling again.
//! Each process signs a random session number into its hello, so a connection from a restarted
//! peer (a new session) replaces the old ones at once instead of being taken for a duplicate
//! of a connection that is dead but not yet timed out.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use net::frame::{Decoder, Frame};
use net::tls::{self, Identity};
use primitives::codec;
use primitives::hash::{hash, Domain};
use secp256k1::ecdsa::Signature;
use secp256k1::{Message, PublicKey, SecretKey, SECP256K1};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::block::ChainContext;
use crate::consensus::secp::ValidatorAddress;
use crate::consensus::{ConsensusMessage, Decision, InstanceId, Round};

/// ALPN id of the chain's peer protocol.
pub const ALPN: &[u8] = b"carchain-chain/1";
/// Default largest frame: a block of a few MiB plus its certificate, with room.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;
/// Frame kind of a [`WireMsg`].
const KIND_MSG: u8 = 1;
/// Frame kind of a [`Hello`].
const KIND_HELLO: u8 = 2;
/// Hash domain of hello signatures.
pub const HELLO_DOMAIN: Domain = Domain::Custom("p2p-hello");
const EXPORTER_LABEL: &[u8] = b"EXPORTER-carchain-p2p-hello";
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why the network failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// TLS/QUIC configuration or framing.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// Socket failure.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The peer's hello is missing, malformed or not signed by the key it names.
    #[error("handshake: {0}")]
    Handshake(String),
    /// A message did not encode or decode.
    #[error("codec: {0}")]
    Codec(#[from] codec::CodecError),
    /// We already hold the connection this pair keeps; this one was closed.
    #[error("duplicate connection to {0}")]
    Duplicate(ValidatorAddress),
}

/// QUIC application close code of a connection dropped because the pair keeps another one.
pub const CLOSE_DUPLICATE: u32 = 1;
/// QUIC application close code of a connection from a peer's earlier session.
pub const CLOSE_STALE: u32 = 2;

/// Everything nodes say to each other.
// Messages live briefly between decoding and handling; boxing the common consensus variant
// would only add an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireMsg {
    /// A signed proposal or vote.
    Consensus {
        /// The instance it belongs to.
        instance: InstanceId,
        /// The message.
        message: ConsensusMessage<ChainContext>,
    },
    /// "I work on this height and round" (sent periodically): a peer ahead helps us catch up.
    Status {
        /// Instance.
        instance: InstanceId,
        /// The sender's current height.
        height: u64,
        /// The sender's current round.
        round: Round,
    },
    /// Asks for committed blocks from `from` on.
    SyncRequest {
        /// Instance.
        instance: InstanceId,
        /// First height wanted.
        from: u64,
        /// Most blocks wanted.
        max: u32,
    },
    /// Committed blocks with their certificates, in height order.
    SyncBlocks {
        /// Instance.
        instance: InstanceId,
        /// The blocks.
        decisions: Vec<Decision<ChainContext>>,
    },
    /// A transaction for the mempool.
    Tx(#[serde(with = "primitives::bytes::base64")] Vec<u8>),
    /// Transactions for the mempool, gossiped together (see the node's gossip batching).
    TxBatch(#[serde(with = "primitives::bytes::base64_seq")] Vec<Vec<u8>>),
}

impl WireMsg {
    /// Relayed transactions (best-effort traffic), as opposed to consensus and sync messages.
    pub fn is_tx(&self) -> bool {
        matches!(self, WireMsg::Tx(_) | WireMsg::TxBatch(_))
    }
}

/// The first frame on a connection: who the sender is, bound to this TLS session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The network.
    pub chain_id: String,
    /// Compressed secp256k1 public key.
    pub public_key: Vec<u8>,
    /// Random per process start: tells a restarted peer from a second connection.
    pub session: u64,
    /// Compact ECDSA signature over [`hello_digest`].
    pub signature: Vec<u8>,
}

/// What a hello signs: chain id, key, process session and the TLS session's exported keying
/// material.
///
/// # Errors
/// Encoding failure (a chain id too long for the codec).
pub fn hello_digest(
    chain_id: &str,
    public_key: &[u8],
    session: u64,
    exporter: &[u8; 32],
) -> Result<[u8; 32], NetError> {
    let bytes = codec::to_vec(&(chain_id, public_key, session, exporter))?;
    Ok(hash(HELLO_DOMAIN, &bytes))
}

/// Checks a peer's hello against this session's keying material; returns the peer's identity.
///
/// # Errors
/// [`NetError::Handshake`] for another chain, a malformed key or signature, or a signature
/// that does not verify.
pub fn verify_hello(
    hello: &Hello,
    chain_id: &str,
    exporter: &[u8; 32],
) -> Result<PeerId, NetError> {
    if hello.chain_id != chain_id {
        return Err(NetError::Handshake(format!(
            "peer is on chain {:?}",
            hello.chain_id
        )));
    }
    let key = PublicKey::from_slice(&hello.public_key)
        .map_err(|_| NetError::Handshake("malformed public key".into()))?;
    let sig = Signature::from_compact(&hello.signature)
        .map_err(|_| NetError::Handshake("malformed signature".into()))?;
    let digest = hello_digest(chain_id, &hello.public_key, hello.session, exporter)?;
    SECP256K1
        .verify_ecdsa(&Message::from_digest(digest), &sig, &key)
        .map_err(|_| NetError::Handshake("hello signature does not verify".into()))?;
    Ok(PeerId::new(key))
}

/// Signs a hello for this session.
///
/// # Errors
/// Encoding failure.
pub fn make_hello(
    secret: &SecretKey,
    chain_id: &str,
    session: u64,
    exporter: &[u8; 32],
) -> Result<Hello, NetError> {
    let public_key = secret.public_key(SECP256K1).serialize().to_vec();
    let digest = hello_digest(chain_id, &public_key, session, exporter)?;
    let signature = SECP256K1
        .sign_ecdsa(&Message::from_digest(digest), secret)
        .serialize_compact()
        .to_vec();
    Ok(Hello {
        chain_id: chain_id.to_string(),
        public_key,
        session,
        signature,
    })
}

/// An authenticated peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId {
    /// Its validator address (derived from the key).
    pub address: ValidatorAddress,
    /// Its key.
    pub key: PublicKey,
}

impl PeerId {
    /// The identity of `key`.
    pub fn new(key: PublicKey) -> Self {
        PeerId {
            address: ValidatorAddress::from_public_key(&key),
            key,
        }
    }
}

/// Network settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The network's chain id.
    pub chain_id: String,
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Peers to dial (and redial).
    pub peers: Vec<SocketAddr>,
    /// Largest accepted frame.
    pub max_frame: usize,
}

fn encode_frame(kind: u8, body: Vec<u8>, limit: usize) -> Result<Vec<u8>, NetError> {
    Ok(Frame { kind, body }
        .encode(limit)
        .map_err(net::NetError::from)?)
}

fn decode_frame(bytes: &[u8], limit: usize) -> Result<Frame, NetError> {
    let mut d = Decoder::new(limit);
    d.feed(bytes);
    let f = d
        .next_frame()
        .map_err(net::NetError::from)?
        .ok_or(net::NetError::Frame(net::frame::FrameError::TooShort))?;
    if d.needed().map_err(net::NetError::from)? != 4 {
        return Err(NetError::Handshake("trailing bytes after a frame".into()));
    }
    Ok(f)
}

/// Encodes a message as one frame.
///
/// # Errors
/// Encoding failure or a message above `limit`.
pub fn encode_msg(msg: &WireMsg, limit: usize) -> Result<Vec<u8>, NetError> {
    encode_frame(KIND_MSG, codec::encode_versioned(msg)?, limit)
}

/// Decodes one frame carrying a message.
///
/// # Errors
/// Malformed, oversized or foreign frames and bodies.
pub fn decode_msg(bytes: &[u8], limit: usize) -> Result<WireMsg, NetError> {
    let f = decode_frame(bytes, limit)?;
    if f.kind != KIND_MSG {
        return Err(NetError::Handshake(format!(
            "unexpected frame kind {}",
            f.kind
        )));
    }
    Ok(codec::decode_versioned(&f.body)?)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One authenticated connection to a peer.
struct Link {
    conn: quinn::Connection,
    /// Dialled by the lower of the two addresses: the connection the pair keeps.
    kept: bool,
    /// The peer's process session (from its hello).
    session: u64,
}

struct Inner {
    endpoint: quinn::Endpoint,
    secret: SecretKey,
    me: PeerId,
    session: u64,
    chain_id: String,
    max_frame: usize,
    conns: Mutex<HashMap<ValidatorAddress, Vec<Link>>>,
    /// Signalled whenever a connection goes away.
    disconnected: tokio::sync::Notify,
    closed: std::sync::atomic::AtomicBool,
    events: mpsc::Sender<(PeerId, WireMsg)>,
    tx_streams: Arc<tokio::sync::Semaphore>,
    tx_dropped: std::sync::atomic::AtomicU64,
}

/// Most transaction-gossip streams in flight (opened and not yet acknowledged by the peer), over
/// all peers.
///
/// Every message travels on its own unidirectional stream and QUIC grants a peer a limited
/// number of concurrent streams (quinn's default: 100 per connection). Without this budget a
/// flood of transactions took all of that credit, and a proposal or vote waited in
/// `open_uni` behind hundreds of transaction streams (measured: up to 11.6 s under four
/// concurrent submitters), past every consensus timeout, so no block was decided. Transaction
/// gossip is best effort: beyond the budget it is dropped (the node that admitted the
/// transaction still proposes it), while consensus and sync messages are never held back.
pub const TX_GOSSIP_STREAMS: usize = 48;

/// The running peer network; cheap to clone.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("me", &self.inner.me.address)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Binds the endpoint, starts accepting and dialling; received messages go to `events`.
    /// Must run inside a tokio runtime.
    ///
    /// # Errors
    /// The socket cannot be bound or TLS cannot be configured.
    pub fn start(
        cfg: &NetConfig,
        secret: SecretKey,
        events: mpsc::Sender<(PeerId, WireMsg)>,
    ) -> Result<Network, NetError> {
        let identity = Identity::generate()?;
        let mut endpoint = quinn::Endpoint::server(identity.server_config(ALPN)?, cfg.listen)?;
        endpoint.set_default_client_config(tls::client_config(None, ALPN)?);
        let me = PeerId::new(secret.public_key(SECP256K1));
        let inner = Arc::new(Inner {
            endpoint,
            secret,
            me,
            session: rand::random(),
            chain_id: cfg.chain_id.clone(),
            max_frame: cfg.max_frame,
            conns: Mutex::new(HashMap::new()),
            disconnected: tokio::sync::Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
            events,
            tx_streams: Arc::new(tokio::sync::Semaphore::new(TX_GOSSIP_STREAMS)),
            tx_dropped: std::sync::atomic::AtomicU64::new(0),
        });
        let net = Network { inner };
        let acceptor = net.clone();
        tokio::spawn(async move { acceptor.accept_loop().await });
        for addr in cfg.peers.iter().copied() {
            let dialer = net.clone();
            tokio::spawn(async move { dialer.dial_loop(addr).await });
        }
        Ok(net)
    }

    /// Our identity.
    pub fn me(&self) -> PeerId {
        self.inner.me
    }

    /// The bound UDP address.
    ///
    /// # Errors
    /// The socket's address cannot be read.
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        Ok(self.inner.endpoint.local_addr()?)
    }

    /// Closes every connection and stops dialling (the endpoint cannot be used again).
    pub fn close(&self) {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.endpoint.close(0u32.into(), b"shutdown");
    }

    /// For each connected peer, whether each connection held to it is the one the pair keeps
    /// (`[true]` once a pair has settled).
    pub fn connections(&self) -> HashMap<ValidatorAddress, Vec<bool>> {
        lock(&self.inner.conns)
            .iter()
            .map(|(a, links)| (*a, links.iter().map(|l| l.kept).collect()))
            .collect()
    }

    /// Addresses of currently connected peers.
    pub fn peers(&self) -> Vec<ValidatorAddress> {
        lock(&self.inner.conns)
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(a, _)| *a)
            .collect()
    }

    /// Sends `msg` to every connected peer (best effort).
    pub fn broadcast(&self, msg: &WireMsg) {
        self.send_where(msg, |_| true);
    }

    /// Sends `msg` to one peer, if connected (best effort).
    pub fn send(&self, to: &ValidatorAddress, msg: &WireMsg) {
        self.send_where(msg, |a| a == to);
    }

    /// Transactions not gossiped because [`TX_GOSSIP_STREAMS`] streams were in flight.
    pub fn tx_gossip_dropped(&self) -> u64 {
        self.inner
            .tx_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn send_where(&self, msg: &WireMsg, pick: impl Fn(&ValidatorAddress) -> bool) {
        let is_tx = msg.is_tx();
        let bytes: Arc<[u8]> = match encode_msg(msg, self.inner.max_frame) {
            Ok(b) => b.into(),
            Err(e) => {
                tracing::warn!(error = %e, "message not sent");
                return;
            }
        };
        let targets: Vec<quinn::Connection> = lock(&self.inner.conns)
            .iter()
            .filter(|(a, _)| pick(a))
            .filter_map(|(_, links)| {
                links
                    .iter()
                    .rev()
                    .find(|l| l.kept)
                    .or(links.last())
                    .map(|l| l.conn.clone())
            })
            .collect();
        for conn in targets {
            let permit = if is_tx {
                match self.inner.tx_streams.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        self.inner
                            .tx_dropped
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                }
            } else {
                None
            };
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let t0 = std::time::Instant::now();
                if let Ok(mut s) = conn.open_uni().await {
                    let opened = t0.elapsed().as_millis();
                    if s.write_all(&bytes).await.is_ok() && s.finish().is_ok() && permit.is_some() {
                        // The stream's credit returns once the peer has read it all.
                        let _ = s.stopped().await;
                    }
                    if !is_tx {
                        tracing::trace!(len = bytes.len(), opened_ms = opened, "message sent");
                    }
                }
                drop(permit);
            });
        }
    }

    async fn accept_loop(self) {
        while let Some(incoming) = self.inner.endpoint.accept().await {
            let me = self.clone();
            tokio::spawn(async move {
                match incoming.await {
                    Ok(conn) => {
                        if let Err(e) = me.serve(conn, false).await {
                            tracing::debug!(error = %e, "inbound peer dropped");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "inbound handshake failed"),
                }
            });
        }
    }

    async fn dial_loop(self, addr: SocketAddr) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = async {
                let conn = self
                    .inner
                    .endpoint
                    .connect(addr, tls::SERVER_NAME)
                    .map_err(|e| NetError::Handshake(e.to_string()))?
                    .await
                    .map_err(|e| NetError::Handshake(e.to_string()))?;
                self.serve(conn, true).await
            };
            if self.is_closed() {
                return;
            }
            match attempt.await {
                Err(NetError::Handshake(why)) if why == "self" => return,
                Ok(()) => backoff = Duration::from_millis(100),
                Err(NetError::Duplicate(peer)) => {
                    // The pair keeps the peer's connection: dial again only once it is gone.
                    self.wait_disconnected(&peer).await;
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Err(e) => tracing::debug!(%addr, error = %e, "peer connection failed"),
            }
            if self.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
        }
    }

    fn is_closed(&self) -> bool {
        self.inner.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn wait_disconnected(&self, peer: &ValidatorAddress) {
        loop {
            let gone = self.inner.disconnected.notified();
            if !lock(&self.inner.conns).contains_key(peer) || self.is_closed() {
                return;
            }
            gone.await;
        }
    }

    /// Authenticates a connection, registers it (or closes it as a duplicate) and reads its
    /// messages until it closes.
    async fn serve(&self, conn: quinn::Connection, dialled: bool) -> Result<(), NetError> {
        let (peer, session) = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(&conn))
            .await
            .map_err(|_| NetError::Handshake("timed out".into()))??;
        if peer.address == self.inner.me.address {
            conn.close(0u32.into(), b"self");
            return Err(NetError::Handshake("self".into()));
        }
        let kept = dialled == (self.inner.me.address < peer.address);
        self.register(&conn, peer, kept, session)?;
        tracing::debug!(peer = %peer.address, remote = %conn.remote_address(), kept, "peer connected");
        let result = self.read_loop(&conn, peer).await;
        let id = conn.stable_id();
        {
            let mut conns = lock(&self.inner.conns);
            if let Some(list) = conns.get_mut(&peer.address) {
                list.retain(|l| l.conn.stable_id() != id);
                if list.is_empty() {
                    conns.remove(&peer.address);
                }
            }
        }
        self.inner.disconnected.notify_waiters();
        result
    }

    /// Adds a connection to `peer` under the one-connection-per-pair rule (module doc).
    fn register(
        &self,
        conn: &quinn::Connection,
        peer: PeerId,
        kept: bool,
        session: u64,
    ) -> Result<(), NetError> {
        let mut conns = lock(&self.inner.conns);
        let list = conns.entry(peer.address).or_default();
        list.retain(|l| {
            if l.session == session {
                return true;
            }
            l.conn.close(CLOSE_STALE.into(), b"peer restarted");
            false
        });
        if !kept && list.iter().any(|l| l.kept) {
            drop(conns);
            conn.close(CLOSE_DUPLICATE.into(), b"duplicate");
            return Err(NetError::Duplicate(peer.address));
        }
        if kept {
            for l in list.iter() {
                l.conn.close(CLOSE_DUPLICATE.into(), b"duplicate");
            }
            list.clear();
        }
        list.push(Link {
            conn: conn.clone(),
            kept,
            session,
        });
        Ok(())
    }

    async fn handshake(&self, conn: &quinn::Connection) -> Result<(PeerId, u64), NetError> {
        let mut exporter = [0u8; 32];
        conn.export_keying_material(
            &mut exporter,
            EXPORTER_LABEL,
            self.inner.chain_id.as_bytes(),
        )
        .map_err(|_| NetError::Handshake("keying material export failed".into()))?;
        let hello = make_hello(
            &self.inner.secret,
            &self.inner.chain_id,
            self.inner.session,
            &exporter,
        )?;
        let frame = encode_frame(KIND_HELLO, codec::to_vec(&hello)?, self.inner.max_frame)?;
        let send = async {
            let mut s = conn
                .open_uni()
                .await
                .map_err(|e| NetError::Handshake(e.to_string()))?;
            s.write_all(&frame)
                .await
                .map_err(|e| NetError::Handshake(e.to_string()))?;
            s.finish().map_err(|e| NetError::Handshake(e.to_string()))?;
            Ok::<(), NetError>(())
        };
        let recv = async {
            let mut r = conn
                .accept_uni()
                .await
                .map_err(|e| NetError::Handshake(e.to_string()))?;
            let bytes = r
                .read_to_end(4096)
                .await
                .map_err(|e| NetError::Handshake(e.to_string()))?;
            let f = decode_frame(&bytes, 4096)?;
            if f.kind != KIND_HELLO {
                return Err(NetError::Handshake("first frame is not a hello".into()));
            }
            let hello: Hello = codec::from_slice(&f.body)?;
            Ok((
                verify_hello(&hello, &self.inner.chain_id, &exporter)?,
                hello.session,
            ))
        };
        let ((), peer) = tokio::try_join!(send, recv)?;
        Ok(peer)
    }

    async fn read_loop(&self, conn: &quinn::Connection, peer: PeerId) -> Result<(), NetError> {
        loop {
            let mut r = match conn.accept_uni().await {
                Ok(r) => r,
                Err(quinn::ConnectionError::ApplicationClosed(c))
                    if c.error_code == CLOSE_DUPLICATE.into() =>
                {
                    return Err(NetError::Duplicate(peer.address));
                }
                Err(_) => return Ok(()),
            };
            let events = self.inner.events.clone();
            let limit = self.inner.max_frame;
            tokio::spawn(async move {
                let bytes = match r.read_to_end(limit).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::debug!(peer = %peer.address, error = %e, "stream refused");
                        return;
                    }
                };
                match decode_msg(&bytes, limit) {
                    Ok(msg) => {
                        let _ = events.send((peer, msg)).await;
                    }
                    Err(e) => tracing::debug!(peer = %peer.address, error = %e, "bad message"),
                }
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn hellos_bind_key_chain_and_session() {
        let sk = SecretKey::from_slice(&[3; 32]).unwrap();
        let exporter = [5u8; 32];
        let hello = make_hello(&sk, "c", 77, &exporter).unwrap();
        let peer = verify_hello(&hello, "c", &exporter).unwrap();
        assert_eq!(peer.key, sk.public_key(SECP256K1));
        // Replayed on another session, or to another chain: refused.
        assert!(verify_hello(&hello, "c", &[6u8; 32]).is_err());
        assert!(verify_hello(&hello, "d", &exporter).is_err());
        // The session is signed: a hello cannot pass for another process session.
        let mut other_session = hello.clone();
        other_session.session = 78;
        assert!(verify_hello(&other_session, "c", &exporter).is_err());
        // A key swapped in without its signature: refused.
        let other = SecretKey::from_slice(&[4; 32]).unwrap();
        let mut forged = hello.clone();
        forged.public_key = other.public_key(SECP256K1).serialize().to_vec();
        assert!(verify_hello(&forged, "c", &exporter).is_err());
        forged.public_key = vec![1, 2, 3];
        assert!(verify_hello(&forged, "c", &exporter).is_err());
    }

    #[test]
    fn messages_round_trip_and_oversized_frames_are_refused() {
        let msg = WireMsg::Tx(vec![7; 100]);
        let bytes = encode_msg(&msg, 1024).unwrap();
        assert_eq!(decode_msg(&bytes, 1024).unwrap(), msg);
        let batch = WireMsg::TxBatch(vec![vec![7; 100], vec![], vec![9; 3]]);
        let bytes = encode_msg(&batch, 1024).unwrap();
        assert_eq!(decode_msg(&bytes, 1024).unwrap(), batch);
        assert!(batch.is_tx() && msg.is_tx());
        assert!(encode_msg(&WireMsg::TxBatch(vec![vec![0; 600]; 2]), 1024).is_err());
        assert!(encode_msg(&WireMsg::Tx(vec![0; 2000]), 1024).is_err());
        assert!(decode_msg(&bytes, 50).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_msg(&trailing, 1024).is_err());
        assert!(decode_msg(&bytes[..bytes.len() - 1], 1024).is_err());
    }

    /// Two networks on loopback (b dials a), returned once each sees the other.
    #[allow(clippy::arithmetic_side_effects)]
    async fn connected_pair(
        tx_a: mpsc::Sender<(PeerId, WireMsg)>,
        tx_b: mpsc::Sender<(PeerId, WireMsg)>,
    ) -> (Network, Network) {
        let sk_a = SecretKey::from_slice(&[1; 32]).unwrap();
        let sk_b = SecretKey::from_slice(&[2; 32]).unwrap();
        let cfg = |peers| NetConfig {
            chain_id: "t".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            peers,
            max_frame: DEFAULT_MAX_FRAME,
        };
        let a = Network::start(&cfg(vec![]), sk_a, tx_a).unwrap();
        let b = Network::start(&cfg(vec![a.local_addr().unwrap()]), sk_b, tx_b).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while a.peers().is_empty() || b.peers().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "peers never connected"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (a, b)
    }

    #[tokio::test]
    async fn two_peers_authenticate_and_exchange_messages() {
        let (tx_a, mut rx_a) = mpsc::channel(16);
        let (tx_b, mut rx_b) = mpsc::channel(16);
        let (a, b) = connected_pair(tx_a, tx_b).await;
        assert_eq!(a.peers(), vec![b.me().address]);
        b.broadcast(&WireMsg::Tx(vec![1]));
        let (from, msg) = rx_a.recv().await.unwrap();
        assert_eq!(from, b.me());
        assert_eq!(msg, WireMsg::Tx(vec![1]));
        a.send(&b.me().address, &WireMsg::Tx(vec![2]));
        let (from, msg) = rx_b.recv().await.unwrap();
        assert_eq!(from, a.me());
        assert_eq!(msg, WireMsg::Tx(vec![2]));
    }

    /// Waits until each side holds exactly one connection, to the other; `kept`: and it is
    /// the one the lower address dialled (only when both sides can dial).
    #[allow(clippy::arithmetic_side_effects)]
    async fn settled(a: &Network, b: &Network, kept: bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let one = |n: &Network, peer: &Network| {
            let c = n.connections();
            c.len() == 1
                && c.get(&peer.me().address)
                    .is_some_and(|l| l.len() == 1 && (l == &[true] || !kept))
        };
        while !(one(a, b) && one(b, a)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "pair never settled: {:?} / {:?}",
                a.connections(),
                b.connections()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn exchange(
        a: &Network,
        rx_a: &mut mpsc::Receiver<(PeerId, WireMsg)>,
        b: &Network,
        rx_b: &mut mpsc::Receiver<(PeerId, WireMsg)>,
        tag: u8,
    ) {
        a.send(&b.me().address, &WireMsg::Tx(vec![tag]));
        assert_eq!(rx_b.recv().await.unwrap(), (a.me(), WireMsg::Tx(vec![tag])));
        b.send(&a.me().address, &WireMsg::Tx(vec![tag, 1]));
        assert_eq!(
            rx_a.recv().await.unwrap(),
            (b.me(), WireMsg::Tx(vec![tag, 1]))
        );
    }

    /// Both nodes dial each other: each keeps only the connection the lower address dialled.
    /// A peer restarted under the same key (a new session, elsewhere) is connected again and
    /// the pair again holds a single connection.
    #[tokio::test]
    async fn a_pair_dialling_both_ways_keeps_one_connection_also_after_a_restart() {
        let (sk_a, sk_b) = (
            SecretKey::from_slice(&[1; 32]).unwrap(),
            SecretKey::from_slice(&[2; 32]).unwrap(),
        );
        let free = || {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        };
        let (addr_a, addr_b) = (free(), free());
        let cfg = |listen, peers| NetConfig {
            chain_id: "t".into(),
            listen,
            peers,
            max_frame: DEFAULT_MAX_FRAME,
        };
        let (tx_a, mut rx_a) = mpsc::channel(16);
        let (tx_b, mut rx_b) = mpsc::channel(16);
        let a = Network::start(&cfg(addr_a, vec![addr_b]), sk_a, tx_a).unwrap();
        let b = Network::start(&cfg(addr_b, vec![addr_a]), sk_b, tx_b).unwrap();
        settled(&a, &b, true).await;
        exchange(&a, &mut rx_a, &b, &mut rx_b, 1).await;

        b.close();
        let (tx_b2, mut rx_b2) = mpsc::channel(16);
        let b2 = Network::start(&cfg(free(), vec![addr_a]), sk_b, tx_b2).unwrap();
        // Only b2 can dial now (a knows the old address), so the link is whichever b2 made.
        settled(&a, &b2, false).await;
        exchange(&a, &mut rx_a, &b2, &mut rx_b2, 2).await;
        assert!(
            b.connections().is_empty(),
            "the closed network holds nothing"
        );
    }

    /// A transaction flood takes at most [`TX_GOSSIP_STREAMS`] streams; the rest is dropped, so
    /// a consensus-path message sent after it still gets a stream (before, all 1,000 took one
    /// each and later messages waited for stream credit behind them).
    #[tokio::test]
    async fn a_transaction_flood_is_bounded_and_does_not_hold_back_other_messages() {
        let (tx_a, mut rx_a) = mpsc::channel(16);
        let (tx_b, _rx_b) = mpsc::channel(16);
        let (_a, b) = connected_pair(tx_a, tx_b).await;
        const FLOOD: usize = 1000;
        for i in 0..FLOOD {
            b.broadcast(&WireMsg::Tx(i.to_le_bytes().to_vec()));
        }
        let status = WireMsg::Status {
            instance: InstanceId(0),
            height: 9,
            round: Round(2),
        };
        b.broadcast(&status);
        assert_eq!(b.tx_gossip_dropped(), (FLOOD - TX_GOSSIP_STREAMS) as u64);
        let (mut txs, mut got_status) = (0, false);
        while txs < TX_GOSSIP_STREAMS || !got_status {
            let (_, msg) = rx_a.recv().await.unwrap();
            match msg {
                WireMsg::Tx(_) => txs += 1,
                m => {
                    assert_eq!(m, status);
                    got_status = true;
                }
            }
        }
        assert_eq!(txs, TX_GOSSIP_STREAMS);
    }
}
