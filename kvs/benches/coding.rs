//! Erasure-coding throughput at RS(4,2):
//! - `kvs::rs_encode/size=…`: parity computation only (reed-solomon-erasure, simd-accel);
//! - `kvs::rs_decode/size=…`: rebuilding two lost data shards;
//! - `kvs::stripe_encode/size=…`: parity plus shard hashes and the Merkle commitment.
#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kvs::coding::{decode, encode, CodingParams};
use reed_solomon_erasure::galois_8::ReedSolomon;

fn bench(c: &mut Criterion) {
    let p = CodingParams::default();
    let rs = ReedSolomon::new(4, 2).unwrap();
    for size in [1usize << 10, 64 << 10, 1 << 20, 16 << 20] {
        let payload: Vec<u8> = (0..size)
            .map(|i| (i.wrapping_mul(31) % 251) as u8)
            .collect();
        let shard_len = size / 4;
        let mut shards: Vec<Vec<u8>> = payload.chunks(shard_len).map(<[u8]>::to_vec).collect();
        shards.push(vec![0; shard_len]);
        shards.push(vec![0; shard_len]);

        let mut g = c.benchmark_group("kvs::rs_encode");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("size", size), &size, |b, _| {
            b.iter(|| rs.encode(&mut shards).unwrap())
        });
        g.finish();

        let mut g = c.benchmark_group("kvs::rs_decode");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("size", size), &size, |b, _| {
            b.iter(|| {
                let mut s: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
                s[0] = None;
                s[1] = None;
                rs.reconstruct_data(&mut s).unwrap();
                s
            })
        });
        g.finish();

        let mut g = c.benchmark_group("kvs::stripe_encode");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("size", size), &payload, |b, pl| {
            b.iter(|| encode(p, pl).unwrap())
        });
        g.finish();

        let stripe = encode(p, &payload).unwrap();
        let mut g = c.benchmark_group("kvs::stripe_decode");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("size", size), &stripe, |b, s| {
            b.iter(|| {
                let mut shards: Vec<Option<Vec<u8>>> = s.shards.iter().cloned().map(Some).collect();
                shards[0] = None;
                shards[1] = None;
                decode(p, s.payload_len, shards).unwrap()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
