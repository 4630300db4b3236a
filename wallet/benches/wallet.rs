//! Wallet benchmarks: address deduction, pool derivation, RSA key wrap/unwrap, keystore unlock.
//!
//! Run: `cargo bench -p wallet --bench wallet`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use wallet::keys::MnemonicPhrase;
use wallet::pool::{deduct_address, pool_account, user_seed, AddressPool, RecordDate, Vid};
use wallet::reader_key::{wrap_key, ReaderKey};
use wallet::{HdKeys, KdfParams, Keystore, WalletNetwork, WalletSecrets};

const PHRASE: &str = "hamster diagram private dutch cause delay private meat slide toddler razor book happy fancy gospel tennis maple dilemma loan word shrug inflict delay length";

fn keys() -> HdKeys {
    HdKeys::from_mnemonic(
        &MnemonicPhrase::parse(PHRASE).unwrap(),
        "",
        WalletNetwork::Regtest,
    )
    .unwrap()
}

fn deduction(c: &mut Criterion) {
    let k = keys();
    let vid = Vid::new("LBVNU79049SB81546").unwrap();
    let seed = user_seed(&k, &vid).unwrap();
    let date = RecordDate::parse("20160511").unwrap();
    let mut g = c.benchmark_group("wallet::deduct_address");
    for n in [16u32, 1000] {
        let account = pool_account(&k, &vid, 0).unwrap();
        let pool = AddressPool::derive(&k, &vid, account, n).unwrap();
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("pool={n}")),
            &pool,
            |b, pool| {
                b.iter(|| {
                    deduct_address(black_box(&pool.addresses), black_box(date), &vid, &seed)
                        .unwrap()
                })
            },
        );
    }
    g.finish();

    let mut g = c.benchmark_group("wallet::pool_derive");
    g.sample_size(10);
    let account = pool_account(&k, &vid, 0).unwrap();
    g.bench_function(BenchmarkId::from_parameter("size=100"), |b| {
        b.iter(|| AddressPool::derive(&k, &vid, account, black_box(100)).unwrap())
    });
    g.finish();
}

fn rsa(c: &mut Criterion) {
    let reader = ReaderKey::generate().unwrap();
    let public = reader.public_key();
    let key = [0x42u8; 32];
    let wrapped = wrap_key(&public, &key).unwrap();
    let mut g = c.benchmark_group("wallet::rsa_wrap");
    g.bench_function(BenchmarkId::from_parameter("bits=3072"), |b| {
        b.iter(|| wrap_key(&public, black_box(&key)).unwrap())
    });
    g.finish();
    let mut g = c.benchmark_group("wallet::rsa_unwrap");
    g.sample_size(20);
    g.bench_function(BenchmarkId::from_parameter("bits=3072"), |b| {
        b.iter(|| reader.unwrap_key(black_box(&wrapped)).unwrap())
    });
    g.finish();

    let secrets = WalletSecrets::new(
        MnemonicPhrase::parse(PHRASE).unwrap(),
        "",
        reader,
        WalletNetwork::Regtest,
    );
    let ks = Keystore::seal(&secrets, b"pw", KdfParams::DEFAULT).unwrap();
    let mut g = c.benchmark_group("wallet::keystore_open");
    g.sample_size(10);
    g.bench_function(BenchmarkId::from_parameter("log_n=15"), |b| {
        b.iter(|| ks.open(black_box(b"pw")).unwrap())
    });
    g.finish();
}

criterion_group!(benches, deduction, rsa);
criterion_main!(benches);
