//! Consensus figures as JSON lines (`cargo bench -p chain --bench consensus`): messages per
//! decision and simulated time per height for growing validator counts, the seed-sweep rate of
//! the simulation harness, and the single-core secp256k1 verification rate beside them.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use chain::consensus::secp;
use chain::sim::{run, run_seeds, SimConfig};
use secp256k1::{PublicKey, SecretKey, SECP256K1};

fn line(bench: &str, value: f64, unit: &str) {
    println!("{{\"bench\":\"{bench}\",\"value\":{value:.3},\"unit\":\"{unit}\"}}");
}

fn main() {
    for n in [4usize, 7, 10, 16] {
        let mut c = SimConfig::fault_free(n);
        c.liveness_heights = 20;
        c.liveness_bound_ms = 120_000;
        let r = run(&c, 1).expect("fault-free run");
        let heights = r.honest_height.max(1) as f64;
        line(
            &format!("chain::sim/consensus_messages_per_height/n={n}"),
            r.consensus_messages as f64 / heights,
            "messages",
        );
        line(
            &format!("chain::sim/all_messages_per_height/n={n}"),
            r.messages as f64 / heights,
            "messages",
        );
        line(
            &format!("chain::sim/sim_ms_per_height/n={n}"),
            r.sim_time_ms as f64 / heights,
            "ms",
        );
    }

    let seeds = 200u64;
    let t = Instant::now();
    let s = run_seeds(0..seeds).unwrap_or_else(|f| panic!("{f}"));
    let secs = t.elapsed().as_secs_f64();
    line(
        "chain::sim/seeds_per_s/seeds=200",
        seeds as f64 / secs,
        "seeds/s",
    );
    line(
        "chain::sim/max_liveness_after_gst/seeds=200",
        s.max_liveness_ms as f64,
        "ms",
    );

    let sk = SecretKey::from_slice(&[7u8; 32]).unwrap();
    let pk = PublicKey::from_secret_key(SECP256K1, &sk);
    let msg = b"carchain/consensus/vote/v1 benchmark payload of a vote".to_vec();
    let sig = secp::sign(&sk, &msg);
    let iters = 20_000u32;
    let t = Instant::now();
    let mut ok = 0u32;
    for _ in 0..iters {
        ok += u32::from(secp::verify(&pk, std::hint::black_box(&msg), &sig));
    }
    assert_eq!(ok, iters);
    line(
        "chain::consensus/secp256k1_verify_per_s",
        f64::from(iters) / t.elapsed().as_secs_f64(),
        "verifications/s",
    );
}
