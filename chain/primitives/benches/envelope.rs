//! Seal/open of the brief's example records, key re-wrap, and `dHash` throughput.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use carchain_primitives::record::{Record, RecordKey};
use carchain_primitives::seal;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rsa::RsaPrivateKey;
use serde_json::Value;
use std::collections::BTreeMap;

const ADDR: &str = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu";

fn seed_records() -> Vec<(String, Record)> {
    let text = include_str!("../../../tests/data/seed-records.json");
    Record::list_from_json_str(text)
        .unwrap()
        .into_iter()
        .filter_map(Result::ok)
        .map(|r| (r.format().to_owned(), r))
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let owner = RsaPrivateKey::new(&mut rng, 3072).unwrap();
    let buyer = RsaPrivateKey::new(&mut rng, 3072).unwrap();
    let owner_pk = owner.to_public_key();
    for (name, record) in seed_records() {
        let mut g = c.benchmark_group("primitives");
        g.bench_function(format!("seal/record={name},rsa=3072"), |b| {
            b.iter(|| seal(&record, ADDR, &[&owner_pk], &mut rng).unwrap())
        });
        let sealed = seal(&record, ADDR, &[&owner_pk], &mut rng).unwrap();
        g.bench_function(format!("open/record={name},rsa=3072"), |b| {
            b.iter(|| sealed.open(&owner).unwrap())
        });
        g.bench_function(format!("rewrap/record={name},rsa=3072"), |b| {
            b.iter_batched(
                || sealed.clone(),
                |mut s| {
                    s.add_reader(&owner, &buyer.to_public_key(), &mut rng)
                        .unwrap()
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("dhash/record={name}"), |b| {
            b.iter(|| record.dhash())
        });
        g.finish();
    }
    let mut g = c.benchmark_group("primitives");
    for kib in [1usize, 64] {
        let blob: String = "x".repeat(kib * 1024 - 5);
        let record = Record::new(
            "blob",
            RecordKey::from_json_str(r#"{"ID":1}"#).unwrap(),
            BTreeMap::from([("DATA".to_owned(), Value::String(blob))]),
        )
        .unwrap();
        g.throughput(Throughput::Bytes((kib * 1024) as u64));
        g.bench_function(format!("dhash/size={kib}KiB"), |b| {
            b.iter(|| record.dhash())
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
