//! The admin endpoint: newline-delimited JSON over TCP, meant for loopback. One request per
//! line (`{"method":"status"}` or `{"method":"submit","tx":"<hex>"}`), one JSON answer per line.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use chain::node::{NodeHandle, NodeStatus};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Longest request line accepted.
pub const MAX_LINE: usize = 4 << 20;

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Request {
    /// The node's status.
    Status,
    /// Submit a hex-encoded transaction.
    Submit {
        /// The transaction, hex.
        tx: String,
    },
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// The status.
    Status(NodeStatus),
    /// The accepted transaction's hash (hex).
    Submitted(String),
    /// What went wrong.
    Error(String),
}

async fn answer(node: &NodeHandle, line: &str) -> Response {
    match serde_json::from_str::<Request>(line) {
        Err(e) => Response::Error(format!("bad request: {e}")),
        Ok(Request::Status) => match node.status().await {
            Some(s) => Response::Status(s),
            None => Response::Error("node stopped".into()),
        },
        Ok(Request::Submit { tx }) => match hex::decode(tx.trim()) {
            Err(_) => Response::Error("transaction is not hex".into()),
            Ok(bytes) => match node.submit(bytes).await {
                Ok(h) => Response::Submitted(hex::encode(h)),
                Err(e) => Response::Error(e.to_string()),
            },
        },
    }
}

async fn serve_conn(node: NodeHandle, stream: TcpStream) -> Result<()> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut lines)
            .take(u64::try_from(MAX_LINE).unwrap_or(u64::MAX))
            .read_line(&mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && n >= MAX_LINE {
            let resp = serde_json::to_string(&Response::Error("request too long".into()))?;
            w.write_all(resp.as_bytes()).await?;
            w.write_all(b"\n").await?;
            return Ok(());
        }
        let resp = answer(&node, line.trim()).await;
        let mut out = serde_json::to_vec(&resp)?;
        out.push(b'\n');
        w.write_all(&out).await?;
    }
}

/// Serves the admin endpoint on `listener` until the process ends.
pub async fn serve(node: NodeHandle, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let node = node.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_conn(node, stream).await {
                        tracing::debug!(error = %e, "admin connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A client of the admin endpoint.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    /// Connects to `addr`.
    ///
    /// # Errors
    /// Connection failure.
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (r, writer) = stream.into_split();
        Ok(Client {
            reader: BufReader::new(r),
            writer,
        })
    }

    /// Sends one request and reads its answer.
    ///
    /// # Errors
    /// I/O failure or a malformed answer.
    pub async fn call(&mut self, req: &Request) -> Result<Response> {
        let mut out = serde_json::to_vec(req)?;
        out.push(b'\n');
        self.writer.write_all(&out).await?;
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(anyhow!("admin endpoint closed the connection"));
        }
        Ok(serde_json::from_str(line.trim())?)
    }

    /// The node's status.
    ///
    /// # Errors
    /// As [`Client::call`], or an error answer.
    pub async fn status(&mut self) -> Result<NodeStatus> {
        match self.call(&Request::Status).await? {
            Response::Status(s) => Ok(s),
            Response::Error(e) => Err(anyhow!(e)),
            other => Err(anyhow!("unexpected answer {other:?}")),
        }
    }
}
