//! Property tests of the issuance invariants: caps, conservation, non-transferable credits,
//! forward-only phases, and the promised step-size invariances.

#![allow(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use tokenomics::{
    sale_cost, Amount, Contribution, DataOp, GenesisParams, Issuance, Ledger, PriceSchedule, Rate,
    StorageMode,
};

fn small_params(cap: u64, credits: u64, per_epoch: u64, linear: bool) -> GenesisParams {
    let mut p = GenesisParams::example();
    p.cap = Amount::from_base_units(cap).unwrap();
    p.fees.put_per_byte = Rate {
        per_giga: 1_500_000_000,
    };
    p.fees.read_per_address = Rate::per_unit(2).unwrap();
    p.fees.storage_per_byte_epoch = Rate {
        per_giga: 300_000_000,
    };
    p.fees.compute_per_unit = Rate::per_unit(3).unwrap();
    p.phase1.initial_credits = Amount::from_base_units(credits).unwrap();
    p.phase2.per_epoch = Amount::from_base_units(per_epoch).unwrap();
    p.phase2.halving_epochs = 4;
    p.phase3.price = if linear {
        PriceSchedule::Linear {
            start: 1_000,
            slope_per_million: 7,
        }
    } else {
        PriceSchedule::Fixed {
            quote_per_token: 5_000,
        }
    };
    p
}

#[derive(Debug, Clone)]
enum Action {
    Register(u8),
    Op {
        payer: u8,
        provider: u8,
        op: DataOp,
    },
    Transfer {
        from: u8,
        to: u8,
        amount: u64,
    },
    Allocate {
        skip: u8,
        weights: Vec<(u8, u32, u32)>,
    },
    Buy {
        buyer: u8,
        budget: u64,
    },
}

fn op() -> impl Strategy<Value = DataOp> {
    prop_oneof![
        (0u64..5_000, 0u64..5_000).prop_map(|(bytes, metres)| DataOp::Put { bytes, metres }),
        (0u64..5_000, 0u64..5, any::<bool>()).prop_map(|(bytes, epochs, shared)| DataOp::Store {
            bytes,
            epochs,
            mode: if shared {
                StorageMode::Shared
            } else {
                StorageMode::Private
            },
        }),
        (0u64..500).prop_map(|units| DataOp::Compute { units }),
        (0u64..500).prop_map(|addresses| DataOp::Read { addresses }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (0u8..8).prop_map(Action::Register),
        (0u8..8, 0u8..8, op()).prop_map(|(payer, provider, op)| Action::Op {
            payer,
            provider,
            op
        }),
        (0u8..8, 0u8..8, 0u64..3_000).prop_map(|(from, to, amount)| Action::Transfer {
            from,
            to,
            amount
        }),
        (
            0u8..3,
            proptest::collection::vec((0u8..8, 0u32..100, 0u32..100), 0..4)
        )
            .prop_map(|(skip, weights)| Action::Allocate { skip, weights }),
        (0u8..8, 0u64..50_000_000).prop_map(|(buyer, budget)| Action::Buy { buyer, budget }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever happens, supply stays within every pool and the cap, balances equal issuance,
    /// credits only ever move by a grant or their owner's own fee, and phases only advance.
    #[test]
    fn ledger_invariants_hold_for_any_history(
        cap in 1_000u64..2_000_000,
        credits in 0u64..500,
        per_epoch in 0u64..50_000,
        linear in any::<bool>(),
        actions in proptest::collection::vec(action(), 1..120),
    ) {
        let params = small_params(cap, credits.min(cap / 2), per_epoch, linear);
        let mut ledger: Ledger<u8> = Ledger::new(params).unwrap();
        let mut epoch = 0u64;
        let mut phase = ledger.issuance().phase();
        for a in actions {
            let before: Vec<Amount> = (0..8).map(|k| ledger.balance(&k).credits().amount()).collect();
            let outcome = match &a {
                Action::Register(k) => ledger.register_device(*k).map(|_| ()),
                Action::Op { payer, provider, op } => ledger.data_op(payer, provider, op).map(|s| {
                    assert!(s.minted_to_payer <= s.fee);
                    assert_eq!(s.payment.from_credits.checked_add(s.payment.from_tokens), Some(s.fee));
                }),
                Action::Transfer { from, to, amount } =>
                    ledger.transfer(from, to, Amount::from_base_units(*amount).unwrap()),
                Action::Allocate { skip, weights } => {
                    epoch += u64::from(*skip) + 1;
                    let c: Vec<(u8, Contribution)> = weights.iter().map(|(k, s, u)| (*k, Contribution {
                        audited_bytes: u64::from(*s), compute_units: u64::from(*u) })).collect();
                    ledger.allocate_prefetch(epoch, &c).map(|al| {
                        assert!(al.minted <= al.available);
                    })
                }
                Action::Buy { buyer, budget } => ledger.buy(buyer, epoch, u128::from(*budget)).map(|_| ()),
            };
            ledger.check_invariants().unwrap();
            let after: Vec<Amount> = (0..8).map(|k| ledger.balance(&k).credits().amount()).collect();
            for k in 0..8u8 {
                let (b, f) = (before[k as usize], after[k as usize]);
                match (&a, outcome.is_ok()) {
                    (Action::Register(r), true) if *r == k => prop_assert!(f >= b),
                    (Action::Op { payer, .. }, true) if *payer == k => prop_assert!(f <= b),
                    _ => prop_assert_eq!(f, b, "credits of {} moved by {:?}", k, a),
                }
            }
            let now = ledger.issuance().phase();
            prop_assert!(now >= phase);
            phase = now;
        }
    }

    /// The mirror mint depends only on the total of producer fees, not on how they are batched.
    #[test]
    fn mirror_mint_is_grouping_invariant(
        cap in 1_000u64..200_000,
        fees in proptest::collection::vec(1u64..5_000, 1..60),
        cut in 0usize..60,
    ) {
        let mut p = small_params(cap, 0, 0, false);
        p.fees.compute_per_unit = Rate::per_unit(1).unwrap();
        let rich = || tokenomics::AccountBalance::with_tokens(Amount::from_base_units(10_000_000).unwrap());
        let mut one_by_one = Issuance::new(p.clone()).unwrap();
        let mut acc = rich();
        for f in &fees {
            one_by_one.settle(&mut acc, &DataOp::Compute { units: *f }).unwrap();
        }
        let cut = cut.min(fees.len());
        let (x, y): (u64, u64) = (fees[..cut].iter().sum(), fees[cut..].iter().sum());
        let mut batched = Issuance::new(p).unwrap();
        let mut acc2 = rich();
        batched.settle(&mut acc2, &DataOp::Compute { units: x }).unwrap();
        batched.settle(&mut acc2, &DataOp::Compute { units: y }).unwrap();
        prop_assert_eq!(one_by_one.automatic_minted(), batched.automatic_minted());
        prop_assert_eq!(acc, acc2);
        let total: u64 = fees.iter().sum();
        let auto_cap = one_by_one.pool_caps().0.to_base_units();
        prop_assert_eq!(one_by_one.automatic_minted().to_base_units(), total.min(auto_cap));
    }

    /// Buying in two pieces costs the single purchase's price, or one quote unit more.
    #[test]
    fn sale_cost_is_additive_up_to_rounding(
        start in 0u64..1_000_000,
        slope in 0u64..10_000,
        sold in 0u64..10_000_000_000_000_000,
        a in 0u64..10_000_000_000_000_000,
        b in 0u64..10_000_000_000_000_000,
    ) {
        for price in [PriceSchedule::Fixed { quote_per_token: start },
                      PriceSchedule::Linear { start, slope_per_million: slope }] {
            let amt = |x| Amount::from_base_units(x).unwrap();
            let whole = sale_cost(&price, amt(sold), amt(a + b)).unwrap();
            let parts = sale_cost(&price, amt(sold), amt(a)).unwrap()
                + sale_cost(&price, amt(sold + a), amt(b)).unwrap();
            prop_assert!(parts >= whole && parts <= whole + 1, "{} vs {}", parts, whole);
        }
    }

    /// Prefetch shares never exceed the epoch's batch and use all of it when both kinds of
    /// contribution are present.
    #[test]
    fn prefetch_shares_sum_exactly(
        per_epoch in 0u64..1_000_000,
        weights in proptest::collection::vec((0u64..u64::MAX / 8, 0u64..u64::MAX / 8), 0..20),
    ) {
        let mut iss = Issuance::new(small_params(u64::MAX / 1_000, 0, per_epoch, false)).unwrap();
        let c: Vec<Contribution> = weights.iter()
            .map(|(s, u)| Contribution { audited_bytes: *s, compute_units: *u }).collect();
        let al = iss.allocate_prefetch(0, &c).unwrap();
        prop_assert_eq!(Amount::checked_sum(al.shares.iter().copied()), Some(al.minted));
        prop_assert!(al.minted <= al.available);
        let any_s = c.iter().any(|x| x.audited_bytes > 0);
        let any_u = c.iter().any(|x| x.compute_units > 0);
        if any_s && any_u {
            prop_assert_eq!(al.minted, al.available);
        }
    }

    /// Amount arithmetic never leaves [0, MAX_SUPPLY] and text round-trips.
    #[test]
    fn amount_arithmetic_stays_in_range(x in 0u64..=Amount::MAX_SUPPLY.to_base_units(),
                                        y in 0u64..=Amount::MAX_SUPPLY.to_base_units(),
                                        k in any::<u64>()) {
        let (a, b) = (Amount::from_base_units(x).unwrap(), Amount::from_base_units(y).unwrap());
        match a.checked_add(b) {
            Some(s) => prop_assert!(s <= Amount::MAX_SUPPLY && s.to_base_units() == x + y),
            None => prop_assert!(u128::from(x) + u128::from(y) > u128::from(Amount::MAX_SUPPLY.to_base_units())),
        }
        prop_assert_eq!(a.checked_sub(b).is_some(), x >= y);
        if let Some(m) = a.checked_mul(k) { prop_assert!(m <= Amount::MAX_SUPPLY) }
        prop_assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
    }
}
