//! QUIC transport: a node serves one request per bidirectional stream; a client opens a stream,
//! sends one frame, finishes, and reads one frame back, under a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{debug, warn};

use crate::audit::{AuditProof, Challenge};
use crate::coding::StoredShard;
use crate::error::{KvsError, Result};
use crate::merkle::Hash;
use crate::model::Manifest;
use crate::net::frame::{Decoder, FrameError, DEFAULT_MAX_FRAME};
use crate::net::proto::{self, Request, Response};
use crate::net::tls::{self, Identity};
use crate::node::{LocalNode, NodeApi};

/// How long a node that failed a request is skipped.
pub const BACKOFF: Duration = Duration::from_millis(500);

fn net_err(e: impl std::fmt::Display) -> KvsError {
    KvsError::Net(e.to_string())
}

fn decode_one(bytes: &[u8], limit: usize) -> Result<crate::net::frame::Frame> {
    let mut d = Decoder::new(limit);
    d.feed(bytes);
    let f = d.next_frame()?.ok_or(FrameError::TooShort)?;
    if d.needed()? != 4 {
        return Err(KvsError::malformed(
            "frame",
            "trailing bytes after the frame",
        ));
    }
    Ok(f)
}

/// A running storage-node server.
#[derive(Debug)]
pub struct Server {
    endpoint: quinn::Endpoint,
}

impl Server {
    /// Binds `addr` and serves `node` on the current tokio runtime.
    pub fn start(
        node: Arc<LocalNode>,
        identity: &Identity,
        addr: SocketAddr,
        max_frame: usize,
    ) -> Result<Self> {
        let endpoint = quinn::Endpoint::server(identity.server_config(crate::net::ALPN)?, addr)?;
        let ep = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let node = node.clone();
                tokio::spawn(async move {
                    let conn = match incoming.await {
                        Ok(c) => c,
                        Err(e) => {
                            debug!(error = %e, "handshake failed");
                            return;
                        }
                    };
                    while let Ok((send, recv)) = conn.accept_bi().await {
                        tokio::spawn(serve_stream(node.clone(), send, recv, max_frame));
                    }
                });
            }
        });
        Ok(Self { endpoint })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    /// Stops accepting and closes every connection.
    pub fn stop(&self) {
        self.endpoint.close(0u32.into(), b"stopping");
    }
}

async fn serve_stream(
    node: Arc<LocalNode>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    max_frame: usize,
) {
    let resp = match recv.read_to_end(max_frame.saturating_add(4)).await {
        Ok(bytes) => match decode_one(&bytes, max_frame).and_then(|f| Request::from_frame(&f)) {
            Ok(req) => tokio::task::spawn_blocking(move || proto::handle(&node, req))
                .await
                .unwrap_or_else(|e| Response::Error {
                    code: 99,
                    message: format!("handler failed: {e}"),
                }),
            Err(e) => Response::Error {
                code: proto::error_code(&e),
                message: format!("bad request: {e}"),
            },
        },
        Err(quinn::ReadToEndError::TooLong) => Response::Error {
            code: 4,
            message: format!("request exceeds the limit of {max_frame} bytes"),
        },
        Err(e) => {
            debug!(error = %e, "stream read failed");
            return;
        }
    };
    let bytes = match resp.to_frame().and_then(|f| Ok(f.encode(max_frame)?)) {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "response too large");
            match (Response::Error {
                code: 4,
                message: e.to_string(),
            })
            .to_frame()
            .and_then(|f| Ok(f.encode(max_frame)?))
            {
                Ok(b) => b,
                Err(_) => return,
            }
        }
    };
    if send.write_all(&bytes).await.is_ok() {
        let _ = send.finish();
        let _ = send.stopped().await;
    }
}

/// A storage node reached over QUIC; implements [`NodeApi`] by blocking on the client's
/// runtime (call it from plain threads, not from async tasks).
pub struct RemoteNode {
    id: String,
    addr: SocketAddr,
    rt: tokio::runtime::Handle,
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    conn: Mutex<Option<quinn::Connection>>,
    down_until: Mutex<Option<Instant>>,
    timeout: Duration,
    max_frame: usize,
}

impl std::fmt::Debug for RemoteNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteNode")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A client endpoint shared by the [`RemoteNode`]s of one client.
#[derive(Debug, Clone)]
pub struct ClientEndpoint {
    rt: tokio::runtime::Handle,
    endpoint: quinn::Endpoint,
}

impl ClientEndpoint {
    /// Binds an ephemeral UDP port on `rt`.
    pub fn new(rt: tokio::runtime::Handle) -> Result<Self> {
        let _guard = rt.enter();
        let endpoint = quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))?;
        Ok(Self { rt, endpoint })
    }

    /// A handle for node `id` at `addr`, pinning `cert_sha256` if given.
    pub fn node(
        &self,
        id: &str,
        addr: SocketAddr,
        cert_sha256: Option<&str>,
        timeout: Duration,
    ) -> Result<RemoteNode> {
        Ok(RemoteNode {
            id: id.to_string(),
            addr,
            rt: self.rt.clone(),
            endpoint: self.endpoint.clone(),
            config: tls::client_config(cert_sha256, crate::net::ALPN)?,
            conn: Mutex::new(None),
            down_until: Mutex::new(None),
            timeout,
            max_frame: DEFAULT_MAX_FRAME,
        })
    }
}

impl RemoteNode {
    async fn connection(&self) -> Result<quinn::Connection> {
        let existing = self.conn.lock().clone();
        if let Some(c) = existing {
            if c.close_reason().is_none() {
                return Ok(c);
            }
        }
        let c = self
            .endpoint
            .connect_with(self.config.clone(), self.addr, tls::SERVER_NAME)
            .map_err(net_err)?
            .await
            .map_err(net_err)?;
        *self.conn.lock() = Some(c.clone());
        Ok(c)
    }

    async fn call_inner(&self, bytes: Vec<u8>) -> Result<Response> {
        let conn = self.connection().await?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(net_err)?;
        // a node refusing an oversized request stops our stream early but still answers
        if send.write_all(&bytes).await.is_ok() {
            send.finish().map_err(net_err)?;
        }
        let reply = recv
            .read_to_end(self.max_frame.saturating_add(4))
            .await
            .map_err(net_err)?;
        Response::from_frame(&decode_one(&reply, self.max_frame)?)
    }

    /// Sends raw bytes as a request (for protocol tests) and returns the decoded response.
    ///
    /// A failure on a cached connection (the node restarted) is retried once on a fresh one;
    /// a node that fails is skipped for [`BACKOFF`] so a dead node costs one timeout, not one
    /// per request.
    pub fn call_raw(&self, bytes: Vec<u8>) -> Result<Response> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(KvsError::Net(
                "blocking call from inside an async runtime".into(),
            ));
        }
        if self.down_until.lock().is_some_and(|t| Instant::now() < t) {
            return Err(KvsError::Unavailable(self.id.clone()));
        }
        let had_conn = self.conn.lock().is_some();
        let attempt = |bytes: Vec<u8>| {
            self.rt.block_on(async {
                tokio::time::timeout(self.timeout, self.call_inner(bytes)).await
            })
        };
        let first = match attempt(bytes.clone()) {
            Ok(r) => r,
            Err(_) => Err(KvsError::Net("timeout".into())),
        };
        let result = match first {
            Ok(r) => Ok(r),
            // a cached connection may belong to a node process that has since restarted
            Err(e) if had_conn => {
                debug!(node = %self.id, error = %e, "cached connection failed, reconnecting");
                *self.conn.lock() = None;
                match attempt(bytes) {
                    Ok(r) => r,
                    Err(_) => Err(KvsError::Net("timeout".into())),
                }
            }
            Err(e) => Err(e),
        };
        result.map_err(|e| {
            debug!(node = %self.id, error = %e, "request failed");
            *self.conn.lock() = None;
            *self.down_until.lock() = Instant::now().checked_add(BACKOFF);
            KvsError::Unavailable(self.id.clone())
        })
    }

    fn call(&self, req: &Request) -> Result<Response> {
        let bytes = req.to_frame()?.encode(self.max_frame)?;
        match self.call_raw(bytes)? {
            Response::Error { code, message } => Err(proto::remote_error(&self.id, code, message)),
            r => Ok(r),
        }
    }

    fn unexpected(&self) -> KvsError {
        KvsError::Remote {
            node: self.id.clone(),
            message: "unexpected response kind".into(),
        }
    }
}

impl NodeApi for RemoteNode {
    fn id(&self) -> &str {
        &self.id
    }

    fn put_shard(&self, root: &Hash, index: u8, shard: &[u8], manifest: &Manifest) -> Result<()> {
        match self.call(&Request::PutShard {
            root: *root,
            index,
            shard: shard.to_vec(),
            manifest: manifest.clone(),
        })? {
            Response::Ok => Ok(()),
            _ => Err(self.unexpected()),
        }
    }

    fn get_shard(&self, root: &Hash, index: u8) -> Result<Option<StoredShard>> {
        match self.call(&Request::GetShard { root: *root, index })? {
            // the client re-verifies what the node says it verified
            Response::Bytes(Some(b)) => Ok(Some(StoredShard::open(&b, root, index)?)),
            Response::Bytes(None) => Ok(None),
            _ => Err(self.unexpected()),
        }
    }

    fn get_shard_range(
        &self,
        root: &Hash,
        index: u8,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>> {
        match self.call(&Request::GetRange {
            root: *root,
            index,
            offset,
            len,
        })? {
            Response::Bytes(b) => Ok(b),
            _ => Err(self.unexpected()),
        }
    }

    fn manifests_of(
        &self,
        address: &str,
        lo: &[u8],
        hi: Option<&[u8]>,
        hi_inclusive: bool,
    ) -> Result<Vec<Manifest>> {
        let req = Request::Manifests {
            address: address.to_string(),
            lo: lo.to_vec(),
            hi: hi.map(<[u8]>::to_vec),
            hi_inclusive,
        };
        match self.call(&req)? {
            Response::Manifests(m) => Ok(m),
            _ => Err(self.unexpected()),
        }
    }

    fn manifest(&self, root: &Hash) -> Result<Option<Manifest>> {
        match self.call(&Request::GetManifest { root: *root })? {
            Response::Manifests(m) => Ok(m.into_iter().next()),
            _ => Err(self.unexpected()),
        }
    }

    fn inventory(&self) -> Result<Vec<(Hash, u8)>> {
        match self.call(&Request::Inventory)? {
            Response::Shards(v) => Ok(v),
            _ => Err(self.unexpected()),
        }
    }

    fn scrub(&self) -> Result<Vec<(Hash, u8)>> {
        match self.call(&Request::Scrub)? {
            Response::Shards(v) => Ok(v),
            _ => Err(self.unexpected()),
        }
    }

    fn delete_shard(&self, root: &Hash, index: u8) -> Result<()> {
        match self.call(&Request::DeleteShard { root: *root, index })? {
            Response::Ok => Ok(()),
            _ => Err(self.unexpected()),
        }
    }

    fn answer_audit(&self, ch: &Challenge) -> Result<AuditProof> {
        match self.call(&Request::Audit(*ch))? {
            Response::Audit(p) => Ok(p),
            _ => Err(self.unexpected()),
        }
    }
}
