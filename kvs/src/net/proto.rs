//! The storage-node protocol: one request frame on a fresh stream, one response frame back.
//! [`handle`] serves a request from a [`LocalNode`] without any I/O of its own.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use crate::audit::{AuditProof, Challenge, ChunkProof};
use crate::error::{KvsError, Result};
use crate::merkle::Hash;
use crate::model::Manifest;
use crate::net::frame::Frame;
use crate::node::{LocalNode, NodeApi};
use crate::wire::{Reader, Writer};

/// A request to a storage node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Store a shard with its stripe manifest.
    PutShard {
        /// Stripe root.
        root: Hash,
        /// Shard index.
        index: u8,
        /// Stored-shard bytes.
        shard: Vec<u8>,
        /// The stripe's manifest.
        manifest: Manifest,
    },
    /// A whole verified shard (stored form).
    GetShard {
        /// Stripe root.
        root: Hash,
        /// Shard index.
        index: u8,
    },
    /// A byte range of a verified shard's data.
    GetRange {
        /// Stripe root.
        root: Hash,
        /// Shard index.
        index: u8,
        /// Offset in the shard data.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// Manifests of an address whose key range meets `[lo, hi]` (or `[lo, hi)`).
    Manifests {
        /// Partition key.
        address: String,
        /// Lower bound.
        lo: Vec<u8>,
        /// Upper bound (none: open).
        hi: Option<Vec<u8>>,
        /// Whether `hi` is inclusive.
        hi_inclusive: bool,
    },
    /// One stripe's manifest.
    GetManifest {
        /// Stripe root.
        root: Hash,
    },
    /// Every `(root, index)` held.
    Inventory,
    /// Held shards failing verification.
    Scrub,
    /// Delete a shard.
    DeleteShard {
        /// Stripe root.
        root: Hash,
        /// Shard index.
        index: u8,
    },
    /// Answer a storage audit.
    Audit(Challenge),
}

/// A storage node's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Done, nothing to return.
    Ok,
    /// Bytes, or none if not held.
    Bytes(Option<Vec<u8>>),
    /// Manifests (maybe empty).
    Manifests(Vec<Manifest>),
    /// Shard list.
    Shards(Vec<(Hash, u8)>),
    /// Audit answer.
    Audit(AuditProof),
    /// The request failed.
    Error {
        /// Stable error code (see [`error_code`]).
        code: u16,
        /// Human-readable reason.
        message: String,
    },
}

/// The stable code of an error, so clients can react to the kind.
pub fn error_code(e: &KvsError) -> u16 {
    match e {
        KvsError::Duplicate => 1,
        KvsError::NotAdmitted(_) => 2,
        KvsError::CorruptShard { .. } => 3,
        KvsError::TooLarge { .. } => 4,
        KvsError::Malformed { .. } => 5,
        KvsError::Unavailable(_) => 6,
        _ => 99,
    }
}

/// Turns a remote error back into a local one.
pub fn remote_error(node: &str, code: u16, message: String) -> KvsError {
    match code {
        1 => KvsError::Duplicate,
        2 => KvsError::NotAdmitted(message),
        3 => KvsError::CorruptShard {
            stripe: message,
            index: u8::MAX,
        },
        6 => KvsError::Unavailable(node.to_string()),
        _ => KvsError::Remote {
            node: node.to_string(),
            message,
        },
    }
}

fn put_opt(w: &mut Writer, v: Option<&[u8]>) -> Result<()> {
    match v {
        Some(b) => {
            w.u8(1).bytes(b)?;
        }
        None => {
            w.u8(0);
        }
    }
    Ok(())
}

fn get_opt(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.bytes()?.to_vec())),
        _ => Err(KvsError::malformed("option", "bad tag")),
    }
}

impl Request {
    /// As a frame.
    pub fn to_frame(&self) -> Result<Frame> {
        let mut w = Writer::new();
        let kind = match self {
            Request::PutShard {
                root,
                index,
                shard,
                manifest,
            } => {
                w.raw(root)
                    .u8(*index)
                    .bytes(shard)?
                    .bytes(&manifest.encode()?)?;
                1
            }
            Request::GetShard { root, index } => {
                w.raw(root).u8(*index);
                2
            }
            Request::GetRange {
                root,
                index,
                offset,
                len,
            } => {
                w.raw(root).u8(*index).u64(*offset).u64(*len);
                3
            }
            Request::Manifests {
                address,
                lo,
                hi,
                hi_inclusive,
            } => {
                w.bytes(address.as_bytes())?.bytes(lo)?;
                put_opt(&mut w, hi.as_deref())?;
                w.u8(u8::from(*hi_inclusive));
                4
            }
            Request::GetManifest { root } => {
                w.raw(root);
                5
            }
            Request::Inventory => 6,
            Request::Scrub => 7,
            Request::DeleteShard { root, index } => {
                w.raw(root).u8(*index);
                8
            }
            Request::Audit(c) => {
                w.raw(&c.root).u8(c.index).raw(&c.seed).u8(c.samples);
                9
            }
        };
        Ok(Frame {
            kind,
            body: w.finish(),
        })
    }

    /// From a frame.
    pub fn from_frame(f: &Frame) -> Result<Self> {
        let mut r = Reader::new(&f.body, "request");
        let req = match f.kind {
            1 => {
                let root = r.array()?;
                let index = r.u8()?;
                let shard = r.bytes()?.to_vec();
                let manifest = Manifest::decode(r.bytes()?)?;
                Request::PutShard {
                    root,
                    index,
                    shard,
                    manifest,
                }
            }
            2 => Request::GetShard {
                root: r.array()?,
                index: r.u8()?,
            },
            3 => Request::GetRange {
                root: r.array()?,
                index: r.u8()?,
                offset: r.u64()?,
                len: r.u64()?,
            },
            4 => {
                let address = String::from_utf8(r.bytes()?.to_vec())
                    .map_err(|_| KvsError::malformed("request", "address not utf-8"))?;
                let lo = r.bytes()?.to_vec();
                let hi = get_opt(&mut r)?;
                let hi_inclusive = r.u8()? != 0;
                Request::Manifests {
                    address,
                    lo,
                    hi,
                    hi_inclusive,
                }
            }
            5 => Request::GetManifest { root: r.array()? },
            6 => Request::Inventory,
            7 => Request::Scrub,
            8 => Request::DeleteShard {
                root: r.array()?,
                index: r.u8()?,
            },
            9 => Request::Audit(Challenge {
                root: r.array()?,
                index: r.u8()?,
                seed: r.array()?,
                samples: r.u8()?,
            }),
            _ => return Err(KvsError::malformed("request", "unknown kind")),
        };
        r.finish()?;
        Ok(req)
    }
}

fn put_shards(w: &mut Writer, v: &[(Hash, u8)]) -> Result<()> {
    w.u32(u32::try_from(v.len()).map_err(|_| KvsError::Overflow("list"))?);
    for (root, i) in v {
        w.raw(root).u8(*i);
    }
    Ok(())
}

impl Response {
    /// As a frame.
    pub fn to_frame(&self) -> Result<Frame> {
        let mut w = Writer::new();
        let kind = match self {
            Response::Ok => 0x80,
            Response::Bytes(b) => {
                put_opt(&mut w, b.as_deref())?;
                0x81
            }
            Response::Manifests(ms) => {
                w.u32(u32::try_from(ms.len()).map_err(|_| KvsError::Overflow("list"))?);
                for m in ms {
                    w.bytes(&m.encode()?)?;
                }
                0x82
            }
            Response::Shards(v) => {
                put_shards(&mut w, v)?;
                0x83
            }
            Response::Audit(p) => {
                w.raw(&p.chunk_root);
                w.u8(u8::try_from(p.shard_path.len()).map_err(|_| KvsError::Overflow("path"))?);
                for h in &p.shard_path {
                    w.raw(h);
                }
                w.u32(u32::try_from(p.chunks.len()).map_err(|_| KvsError::Overflow("list"))?);
                for c in &p.chunks {
                    w.u64(c.chunk as u64).bytes(&c.data)?;
                    w.u8(u8::try_from(c.path.len()).map_err(|_| KvsError::Overflow("path"))?);
                    for h in &c.path {
                        w.raw(h);
                    }
                }
                0x84
            }
            Response::Error { code, message } => {
                w.u16(*code).bytes(message.as_bytes())?;
                0xFF
            }
        };
        Ok(Frame {
            kind,
            body: w.finish(),
        })
    }

    /// From a frame.
    pub fn from_frame(f: &Frame) -> Result<Self> {
        let mut r = Reader::new(&f.body, "response");
        let resp = match f.kind {
            0x80 => Response::Ok,
            0x81 => Response::Bytes(get_opt(&mut r)?),
            0x82 => {
                let n = r.u32()?;
                let mut ms = Vec::new();
                for _ in 0..n {
                    ms.push(Manifest::decode(r.bytes()?)?);
                }
                Response::Manifests(ms)
            }
            0x83 => {
                let n = r.u32()?;
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push((r.array()?, r.u8()?));
                }
                Response::Shards(v)
            }
            0x84 => {
                let chunk_root = r.array()?;
                let np = r.u8()?;
                let mut shard_path = Vec::new();
                for _ in 0..np {
                    shard_path.push(r.array()?);
                }
                let n = r.u32()?;
                let mut chunks = Vec::new();
                for _ in 0..n {
                    let chunk =
                        usize::try_from(r.u64()?).map_err(|_| KvsError::Overflow("chunk index"))?;
                    let data = r.bytes()?.to_vec();
                    let np = r.u8()?;
                    let mut path = Vec::new();
                    for _ in 0..np {
                        path.push(r.array()?);
                    }
                    chunks.push(ChunkProof { chunk, data, path });
                }
                Response::Audit(AuditProof {
                    chunk_root,
                    shard_path,
                    chunks,
                })
            }
            0xFF => {
                let code = r.u16()?;
                let message = String::from_utf8_lossy(r.bytes()?).into_owned();
                Response::Error { code, message }
            }
            _ => return Err(KvsError::malformed("response", "unknown kind")),
        };
        r.finish()?;
        Ok(resp)
    }
}

/// Serves one request from `node`; every failure becomes an error response.
pub fn handle(node: &LocalNode, req: Request) -> Response {
    let res = match req {
        Request::PutShard {
            root,
            index,
            shard,
            manifest,
        } => node
            .put_shard(&root, index, &shard, &manifest)
            .map(|()| Response::Ok),
        Request::GetShard { root, index } => node
            .get_shard(&root, index)
            .map(|s| Response::Bytes(s.map(|s| s.encode()))),
        Request::GetRange {
            root,
            index,
            offset,
            len,
        } => node
            .get_shard_range(&root, index, offset, len)
            .map(Response::Bytes),
        Request::Manifests {
            address,
            lo,
            hi,
            hi_inclusive,
        } => node
            .manifests(&address, &lo, hi.as_deref(), hi_inclusive)
            .map(|v| Response::Manifests(v.into_iter().map(|(_, m)| m).collect())),
        Request::GetManifest { root } => node
            .manifest(&root)
            .map(|m| Response::Manifests(m.into_iter().collect())),
        Request::Inventory => node.inventory().map(Response::Shards),
        Request::Scrub => node.scrub().map(Response::Shards),
        Request::DeleteShard { root, index } => {
            node.delete_shard(&root, index).map(|()| Response::Ok)
        }
        Request::Audit(ch) => node.answer_audit(&ch).map(Response::Audit),
    };
    res.unwrap_or_else(|e| Response::Error {
        code: error_code(&e),
        message: e.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::coding::CodingParams;
    use proptest::prelude::*;

    fn manifest() -> Manifest {
        Manifest {
            address: "bc1q".into(),
            root: [1; 32],
            params: CodingParams::default(),
            payload_len: 5,
            epoch: 2,
            rows: vec![(b"k".to_vec(), vec![("c".into(), 5)])],
        }
    }

    #[test]
    fn every_message_round_trips() {
        let reqs = vec![
            Request::PutShard {
                root: [1; 32],
                index: 2,
                shard: vec![1, 2, 3],
                manifest: manifest(),
            },
            Request::GetShard {
                root: [2; 32],
                index: 5,
            },
            Request::GetRange {
                root: [3; 32],
                index: 1,
                offset: 10,
                len: 20,
            },
            Request::Manifests {
                address: "a".into(),
                lo: b"x".to_vec(),
                hi: None,
                hi_inclusive: false,
            },
            Request::Manifests {
                address: "a".into(),
                lo: vec![],
                hi: Some(b"z".to_vec()),
                hi_inclusive: true,
            },
            Request::GetManifest { root: [4; 32] },
            Request::Inventory,
            Request::Scrub,
            Request::DeleteShard {
                root: [5; 32],
                index: 0,
            },
            Request::Audit(Challenge {
                root: [6; 32],
                index: 3,
                seed: [7; 32],
                samples: 4,
            }),
        ];
        for r in reqs {
            assert_eq!(Request::from_frame(&r.to_frame().unwrap()).unwrap(), r);
        }
        let resps = vec![
            Response::Ok,
            Response::Bytes(None),
            Response::Bytes(Some(vec![9; 10])),
            Response::Manifests(vec![manifest(), manifest()]),
            Response::Shards(vec![([1; 32], 0), ([2; 32], 5)]),
            Response::Audit(AuditProof {
                chunk_root: [1; 32],
                shard_path: vec![[2; 32]],
                chunks: vec![ChunkProof {
                    chunk: 3,
                    data: vec![1, 2],
                    path: vec![[3; 32], [4; 32]],
                }],
            }),
            Response::Error {
                code: 4,
                message: "too large".into(),
            },
        ];
        for r in resps {
            assert_eq!(Response::from_frame(&r.to_frame().unwrap()).unwrap(), r);
        }
    }

    proptest! {
        #[test]
        fn decoders_never_panic(kind in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let f = Frame { kind, body };
            let _ = Request::from_frame(&f);
            let _ = Response::from_frame(&f);
        }
    }
}
