//! # kvs — the erasure-coded key-value storage cluster
//!
//! Job: store sealed records partitioned by address, Reed–Solomon coded across storage nodes,
//! with placement, repair and storage audits; RocksDB on disk by default, HDFS optional.
//!
//! Layers, bottom up:
//! - [`store`]: the backend trait (RocksDB, in-memory, HDFS behind feature `hdfs`);
//! - [`merkle`], [`coding`]: shard commitments and RS(k, m) striping;
//! - [`model`]: records, packing into stripes, row entries, index entries, modes and fees;
//! - [`placement`], [`repair`], [`audit`]: sans-IO decisions (HRW placement, repair plans,
//!   audit challenges and verification);
//! - [`node`]: one storage node's request handling; [`cluster`]: the client, its repair
//!   rounds and the background [`RepairLoop`]; [`packer`]: automatic packing of small records.
//!
//! May depend on: `primitives`, `zk`, and `chain` for the index types it must agree with.

pub mod audit;
pub mod cluster;
pub mod coding;
pub mod error;
pub mod keys;
pub mod merkle;
pub mod model;
pub mod net;
pub mod node;
pub mod packer;
pub mod placement;
pub mod repair;
pub mod store;
pub mod wire;

pub use cluster::{
    ClusterConfig, IndexView, LocalCluster, PutReceipt, RepairLoop, RepairLoopHandle, RepairReport,
};
pub use coding::CodingParams;
pub use error::{KvsError, Result};
pub use model::{IndexEntry, ReadStats, Record, StorageMode};
pub use node::LocalNode;
