//! The agent-based economy: cars, agent nodes and service providers stepping through days,
//! settling every payment with the `tokenomics` rules.
//!
//! Layout is struct-of-arrays over cars (balance, stored bytes, mean distance, agent), so a
//! million cars take about 40 MB. Per-car randomness is a counter-based hash of
//! (seed, car, day), and every aggregate is an integer sum over fixed-size chunks, so results
//! are identical for any number of threads.

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tokenomics::{
    AccountBalance, Amount, Contribution, DataOp, Issuance, Phase, SettlementTotals, StorageMode,
};

use super::scenario::Scenario;

/// Cars per parallel work item; fixed so chunking never depends on the thread count.
const CHUNK: usize = 16_384;
/// Quote units (micro-euros) per euro.
const QUOTE_PER_EUR: f64 = 1e6;
/// Base units per token, as a float for reporting.
const UNITS: f64 = 1e8;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn mix(a: u64, b: u64, c: u64) -> u64 {
    splitmix(a ^ splitmix(b.wrapping_add(splitmix(c))))
}

fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn std_normal(h: u64) -> f64 {
    let u1 = unit(h).max(f64::MIN_POSITIVE);
    let u2 = unit(splitmix(h));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn tokens(a: Amount) -> f64 {
    a.to_base_units() as f64 / UNITS
}

fn amt(units: u64) -> anyhow::Result<Amount> {
    Amount::from_base_units(units).context("amount above the supply cap")
}

/// One step's observations (one tidy row).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Last day covered by the step (1-based: day `d` means `d` days have passed).
    pub day: u32,
    /// Issuance phase at the end of the step.
    pub phase: Phase,
    /// Registered cars.
    pub active_cars: u64,
    /// Minted from the automatic pool.
    pub auto_minted: Amount,
    /// Fee credits granted and unspent.
    pub credits_outstanding: Amount,
    /// Allocated from the prefetch pool.
    pub prefetch_minted: Amount,
    /// Sold from the circulation pool.
    pub circulation_sold: Amount,
    /// Tokens in existence.
    pub supply: Amount,
    /// Tokens held by cars.
    pub cars_tokens: Amount,
    /// Tokens held by agent nodes.
    pub agents_tokens: Amount,
    /// Tokens held by service providers and the sale escrow.
    pub providers_tokens: Amount,
    /// Fees paid by producers to providers in the step (the phase-1 flow).
    pub fees_paid: Amount,
    /// Tokens paid by service providers to cars for data in the step.
    pub sales_to_cars: Amount,
    /// Read fees paid by service providers to agents in the step.
    pub read_fees: Amount,
    /// Phase-2 tokens allocated to agents in the step.
    pub prefetch_step: Amount,
    /// Token price, EUR.
    pub price_eur: f64,
    /// Gini coefficient of token holdings (recomputed every `gini_every` days).
    pub gini: f64,
    /// Annualised velocity: tokens transferred per year over supply.
    pub velocity: f64,
    /// Phase-3 proceeds in the community fund, EUR.
    pub community_fund_eur: f64,
    /// Cumulative service-provider profit, EUR.
    pub provider_profit_eur: f64,
    /// Car-steps whose fees could not be paid (their data was not put).
    pub blocked_puts: u64,
    /// Data produced in the step, MB.
    pub data_mb: f64,
}

#[derive(Clone, Copy)]
struct Behaviour {
    seed: u64,
    /// Drive when the low 32 bits of the day's hash are below this.
    drive_below: u64,
    idle: u64,
    bytes_per_km: u64,
}

impl Behaviour {
    /// Bytes and metres of car `i` (mean `mean_m` metres per driving day) on `day`: one hash,
    /// integer arithmetic only. The distance is uniform in [0.25, 1.75] × the car's mean.
    #[inline]
    fn car_day(&self, i: usize, mean_m: u32, day: u32) -> (u64, u64) {
        let h = splitmix(
            self.seed
                ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)
                ^ u64::from(day).wrapping_mul(0xA076_1D64_78BD_642F),
        );
        if (h & 0xFFFF_FFFF) >= self.drive_below {
            return (self.idle, 0);
        }
        let f = (h >> 32) & 0xFFFF;
        let metres = (u64::from(mean_m) * (16_384 + ((f * 3) >> 1))) >> 16;
        (
            self.idle
                .saturating_add(metres.saturating_mul(self.bytes_per_km) / 1000),
            metres,
        )
    }
}

#[derive(Default)]
struct ChunkOut {
    totals: SettlementTotals,
    agent_income: Vec<u64>,
    agent_stored: Vec<u64>,
    sales_paid: u64,
    bytes_put: u128,
    blocked: u64,
    tokens: u64,
    credits: u64,
}

/// A car's fee and bytes for the step, from its index, stored bytes and agent.
fn car_step(
    iss: &Issuance,
    beh: &Behaviour,
    modes: &[StorageMode],
    (i, mean_m, stored, agent): (usize, u32, u64, u16),
    d0: u32,
    k: u32,
) -> anyhow::Result<(u64, u64)> {
    let (mut by, mut m) = (0u64, 0u64);
    for d in d0..d0 + k {
        let (x, y) = beh.car_day(i, mean_m, d);
        by = by.saturating_add(x);
        m = m.saturating_add(y);
    }
    let mode = modes
        .get(usize::from(agent))
        .copied()
        .unwrap_or(StorageMode::Private);
    let put = iss.fee(&DataOp::Put {
        bytes: by,
        metres: m,
    })?;
    let store = iss.fee(&DataOp::Store {
        bytes: stored,
        epochs: u64::from(k),
        mode,
    })?;
    let fee = put.checked_add(store).context("fee above cap")?;
    Ok((fee.to_base_units(), by))
}

/// Settles one chunk of cars in index order, minting at most `allowance` in total. Each car
/// first receives its share of the data sale for the bytes it put in the previous step
/// (`last_bytes`), then pays the step's fee from `activity` and, if it could pay, stores the
/// new bytes.
#[allow(clippy::too_many_arguments)]
fn settle_chunk<F>(
    base: usize,
    bal: &mut [AccountBalance],
    stored: &mut [u64],
    last_bytes: &mut [u64],
    agent: &[u16],
    activity: F,
    mut allowance: Amount,
    rate_fp: u128,
    n_agents: usize,
) -> anyhow::Result<ChunkOut>
where
    F: Fn(usize, u64, u16) -> anyhow::Result<(u64, u64)>,
{
    let mut out = ChunkOut {
        agent_income: vec![0; n_agents],
        agent_stored: vec![0; n_agents],
        ..ChunkOut::default()
    };
    for (j, (((b, s), lb), a)) in bal
        .iter_mut()
        .zip(stored.iter_mut())
        .zip(last_bytes.iter_mut())
        .zip(agent)
        .enumerate()
    {
        let share = u64::try_from((u128::from(*lb) * rate_fp) >> 32).context("sale share")?;
        b.deposit(amt(share)?)?;
        out.sales_paid = out.sales_paid.checked_add(share).context("overflow")?;
        let (f, by) = activity(base + j, *s, *a)?;
        match Issuance::settle_payment(b, amt(f)?, true, allowance) {
            Ok(st) => {
                allowance = allowance.saturating_sub(st.minted_to_payer);
                out.totals.add(&st)?;
                let ai = usize::from(*a);
                if let Some(x) = out.agent_income.get_mut(ai) {
                    *x = x
                        .checked_add(st.to_providers.to_base_units())
                        .context("overflow")?;
                }
                if let Some(x) = out.agent_stored.get_mut(ai) {
                    *x = x.saturating_add(by);
                }
                *s = s.saturating_add(by);
                *lb = by;
                out.bytes_put += u128::from(by);
            }
            Err(tokenomics::Error::InsufficientFunds { .. }) => {
                *lb = 0;
                out.blocked += 1;
            }
            Err(e) => return Err(e.into()),
        }
        out.tokens = out
            .tokens
            .checked_add(b.tokens().to_base_units())
            .context("overflow")?;
        out.credits = out
            .credits
            .checked_add(b.credits().amount().to_base_units())
            .context("overflow")?;
    }
    Ok(out)
}

/// Gini coefficient of non-negative holdings (sorted in place).
pub fn gini(xs: &mut [u64]) -> f64 {
    xs.par_sort_unstable();
    let n = xs.len() as f64;
    let total: f64 = xs.iter().map(|&x| x as f64).sum();
    if xs.is_empty() || total == 0.0 {
        return 0.0;
    }
    let weighted: f64 = xs
        .iter()
        .enumerate()
        .map(|(i, &x)| (i as f64 + 1.0) * x as f64)
        .sum();
    (2.0 * weighted) / (n * total) - (n + 1.0) / n
}

/// One run of one scenario.
pub struct World {
    sc: Scenario,
    beh: Behaviour,
    iss: Issuance,
    day: u32,
    price_eur: f64,
    gini: f64,
    provider_profit_eur: f64,
    // cars, struct of arrays
    car_bal: Vec<AccountBalance>,
    car_stored: Vec<u64>,
    car_mean_m: Vec<u32>,
    car_agent: Vec<u16>,
    last_bytes_total: u128,
    sum_stored: u128,
    sum_mean_m: u128,
    /// Bytes each car put in the previous step (what the data market sells next).
    bytes_buf: Vec<u64>,
    // agents
    agent_bal: Vec<AccountBalance>,
    agent_shared: Vec<bool>,
    agent_stored: Vec<u64>,
    // service providers
    sp_bal: Vec<AccountBalance>,
    sp_wtp: Vec<f64>,
    sp_share: Vec<f64>,
    escrow: AccountBalance,
}

impl World {
    /// A world at genesis for run `run` of the scenario.
    pub fn new(sc: &Scenario, run: u32) -> anyhow::Result<World> {
        let seed = sc.seed.wrapping_add(u64::from(run));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let iss = Issuance::new(sc.genesis.clone())?;
        let n_agents = sc.agents.count as usize;
        let agent_shared = (0..n_agents)
            .map(|_| rng.gen_bool(sc.agents.shared_fraction))
            .collect();
        let n_sp = sc.providers.count as usize;
        let sp_wtp: Vec<f64> = (0..n_sp)
            .map(|j| {
                let z = std_normal(mix(seed, j as u64, u64::MAX - 1));
                sc.providers.wtp_median_eur_per_mb * (sc.providers.wtp_dispersion * z).exp()
            })
            .collect();
        let raw: Vec<f64> = (0..n_sp).map(|_| rng.gen_range(0.5..1.5)).collect();
        let sum: f64 = raw.iter().sum();
        let sp_share = raw.iter().map(|r| r / sum).collect();
        let price_eur = iss.marginal_price()? as f64 / QUOTE_PER_EUR;
        let cap = sc.cars.target as usize;
        let mut w = World {
            beh: Behaviour {
                seed,
                drive_below: (sc.cars.drive_probability * 4_294_967_296.0) as u64,
                idle: sc.cars.bytes_per_day_idle,
                bytes_per_km: sc.cars.bytes_per_km,
            },
            sc: sc.clone(),
            iss,
            day: 0,
            price_eur,
            gini: 0.0,
            provider_profit_eur: 0.0,
            car_bal: Vec::with_capacity(cap),
            car_stored: Vec::with_capacity(cap),
            car_mean_m: Vec::with_capacity(cap),
            car_agent: Vec::with_capacity(cap),
            last_bytes_total: 0,
            sum_stored: 0,
            sum_mean_m: 0,
            bytes_buf: Vec::with_capacity(cap),
            agent_bal: vec![AccountBalance::default(); n_agents],
            agent_shared,
            agent_stored: vec![0; n_agents],
            sp_bal: vec![AccountBalance::default(); n_sp],
            sp_wtp,
            sp_share,
            escrow: AccountBalance::default(),
        };
        w.register_up_to(sc.cars.initial as usize)?;
        Ok(w)
    }

    /// The issuance state.
    pub fn issuance(&self) -> &Issuance {
        &self.iss
    }

    /// Days simulated so far.
    pub fn day(&self) -> u32 {
        self.day
    }

    /// True when the horizon is reached.
    pub fn done(&self) -> bool {
        self.day >= self.sc.days
    }

    fn target_cars(&self, day: u32) -> usize {
        let c = &self.sc.cars;
        let l = |d: f64| 1.0 / (1.0 + (-c.adoption_rate * (d - c.adoption_midpoint_day)).exp());
        let l0 = l(0.0);
        let frac = ((l(f64::from(day)) - l0) / (1.0 - l0)).clamp(0.0, 1.0);
        let extra = f64::from(c.target - c.initial) * frac;
        (c.initial as usize + extra as usize).min(c.target as usize)
    }

    fn register_up_to(&mut self, n: usize) -> anyhow::Result<()> {
        let c = &self.sc.cars;
        let n_agents = self.agent_bal.len() as u64;
        while self.car_bal.len() < n {
            let i = self.car_bal.len();
            let h = mix(self.beh.seed, i as u64, u64::MAX);
            let km = c.median_km_per_day * (c.km_dispersion * std_normal(h)).exp();
            let mut b = AccountBalance::default();
            b.receive_grant(self.iss.register_device()?)?;
            self.car_bal.push(b);
            self.car_stored.push(0);
            let mean_m = (km * 1000.0).min(f64::from(u32::MAX)) as u32;
            self.car_mean_m.push(mean_m);
            self.sum_mean_m += u128::from(mean_m);
            self.car_agent
                .push(u16::try_from(splitmix(h) % n_agents).context("agent index")?);
            self.bytes_buf.push(0);
        }
        Ok(())
    }

    /// An upper bound on the total fees of the next step's `n` cars, from aggregates: each car
    /// drives at most 1.75 × its mean distance a day, and rounding up adds under one base unit
    /// per car and fee. `u128::MAX` if the bound itself overflows.
    fn fee_bound(&self, n: usize, k: u32) -> anyhow::Result<u128> {
        let n = n as u128;
        let k = u128::from(k);
        let metres = k * ((self.sum_mean_m * 114_686) >> 16);
        let bytes =
            k * n * u128::from(self.beh.idle) + metres * u128::from(self.beh.bytes_per_km) / 1000;
        let (Ok(bytes), Ok(metres), Ok(stored)) = (
            u64::try_from(bytes),
            u64::try_from(metres),
            u64::try_from(self.sum_stored),
        ) else {
            return Ok(u128::MAX);
        };
        let put = self.iss.fee(&DataOp::Put { bytes, metres });
        let store = self.iss.fee(&DataOp::Store {
            bytes: stored,
            epochs: u64::try_from(k)?,
            mode: StorageMode::Private,
        });
        match (put, store) {
            (Ok(p), Ok(s)) => {
                Ok(u128::from(p.to_base_units()) + u128::from(s.to_base_units()) + 2 * n)
            }
            _ => Ok(u128::MAX),
        }
    }

    /// Advances one step (`step_days` days, clipped to the horizon) and reports it.
    pub fn step(&mut self) -> anyhow::Result<Row> {
        let d0 = self.day;
        let k = self.sc.step_days.min(self.sc.days - d0);
        self.register_up_to(self.target_cars(d0))?;
        let n = self.car_bal.len();
        let n_agents = self.agent_bal.len();

        // The data market on the data put in the previous step, and token purchases.
        let market = self.market(d0, k, self.last_bytes_total)?;
        let escrow_tokens = u128::from(self.escrow.tokens().to_base_units());
        let rate_fp = (escrow_tokens << 32)
            .checked_div(self.last_bytes_total)
            .unwrap_or(0);

        let beh = self.beh;
        let modes: Vec<StorageMode> = self
            .agent_shared
            .iter()
            .map(|&s| {
                if s {
                    StorageMode::Shared
                } else {
                    StorageMode::Private
                }
            })
            .collect();
        let remaining = self.iss.automatic_remaining();
        let iss = &self.iss;
        let mean = &self.car_mean_m[..n];
        let agent = &self.car_agent[..n];
        let outs: Vec<ChunkOut> = if self.fee_bound(n, k)? <= u128::from(remaining.to_base_units())
        {
            // Far from exhaustion: every car gets its full mirror mint, so one fused parallel
            // pass computes activity, fees and settlement.
            self.car_bal[..n]
                .par_chunks_mut(CHUNK)
                .zip(self.car_stored[..n].par_chunks_mut(CHUNK))
                .zip(self.bytes_buf[..n].par_chunks_mut(CHUNK))
                .enumerate()
                .map(|(c, ((bal, st), lb))| {
                    let base = c * CHUNK;
                    let ag = &agent[base..base + bal.len()];
                    settle_chunk(
                        base,
                        bal,
                        st,
                        lb,
                        ag,
                        |i, stored, a| car_step(iss, &beh, &modes, (i, mean[i], stored, a), d0, k),
                        Amount::MAX_SUPPLY,
                        rate_fp,
                        n_agents,
                    )
                })
                .collect::<anyhow::Result<_>>()?
        } else {
            // Near exhaustion: compute every fee first; if they all fit, settle in parallel,
            // otherwise strictly in car order so exactly the first cars get the last tokens.
            let pass1: Vec<(u128, Vec<(u64, u64)>)> = (0..n)
                .into_par_iter()
                .chunks(CHUNK)
                .map(|idx| -> anyhow::Result<(u128, Vec<(u64, u64)>)> {
                    let mut sum = 0u128;
                    let mut v = Vec::with_capacity(idx.len());
                    for i in idx {
                        let fb = car_step(
                            iss,
                            &beh,
                            &modes,
                            (i, mean[i], self.car_stored[i], agent[i]),
                            d0,
                            k,
                        )?;
                        sum += u128::from(fb.0);
                        v.push(fb);
                    }
                    Ok((sum, v))
                })
                .collect::<anyhow::Result<_>>()?;
            let total: u128 = pass1.iter().map(|p| p.0).sum();
            let fb: Vec<(u64, u64)> = pass1.into_iter().flat_map(|p| p.1).collect();
            let fb = &fb;
            let act = |i: usize, _: u64, _: u16| -> anyhow::Result<(u64, u64)> {
                fb.get(i).copied().context("fee index")
            };
            if total <= u128::from(remaining.to_base_units()) {
                self.car_bal[..n]
                    .par_chunks_mut(CHUNK)
                    .zip(self.car_stored[..n].par_chunks_mut(CHUNK))
                    .zip(self.bytes_buf[..n].par_chunks_mut(CHUNK))
                    .enumerate()
                    .map(|(c, ((bal, st), lb))| {
                        let base = c * CHUNK;
                        let ag = &agent[base..base + bal.len()];
                        settle_chunk(
                            base,
                            bal,
                            st,
                            lb,
                            ag,
                            act,
                            Amount::MAX_SUPPLY,
                            rate_fp,
                            n_agents,
                        )
                    })
                    .collect::<anyhow::Result<_>>()?
            } else {
                vec![settle_chunk(
                    0,
                    &mut self.car_bal[..n],
                    &mut self.car_stored[..n],
                    &mut self.bytes_buf[..n],
                    agent,
                    act,
                    remaining,
                    rate_fp,
                    n_agents,
                )?]
            }
        };

        let mut totals = SettlementTotals::default();
        let (mut sales_paid, mut blocked, mut car_tokens, mut car_credits) =
            (0u64, 0u64, 0u64, 0u64);
        let mut income = vec![0u64; n_agents];
        let mut bytes_put = 0u128;
        for o in &outs {
            totals.merge(&o.totals)?;
            bytes_put += o.bytes_put;
            sales_paid += o.sales_paid;
            blocked += o.blocked;
            car_tokens += o.tokens;
            car_credits += o.credits;
            for (a, (x, s)) in o.agent_income.iter().zip(&o.agent_stored).enumerate() {
                income[a] += x;
                self.agent_stored[a] += s;
            }
        }
        self.iss.commit(&totals)?;
        self.last_bytes_total = bytes_put;
        self.sum_stored += bytes_put;
        for (a, x) in self.agent_bal.iter_mut().zip(&income) {
            a.deposit(amt(*x)?)?;
        }
        self.escrow.withdraw(amt(sales_paid)?)?;
        let fees_paid = totals
            .from_credits
            .checked_add(totals.from_tokens)
            .context("overflow")?;
        if income.iter().sum::<u64>() != fees_paid.to_base_units() {
            bail!("fee income differs from fees paid");
        }

        // Phase 2: one allocation per epoch (day) in the step.
        let mut prefetch_step = Amount::ZERO;
        for e in d0..d0 + k {
            let contributions: Vec<Contribution> = (0..n_agents)
                .map(|a| {
                    let pass = unit(mix(self.beh.seed ^ 0xA0D1, a as u64, u64::from(e)))
                        < self.sc.agents.audit_pass_rate;
                    Contribution {
                        audited_bytes: if pass { self.agent_stored[a] } else { 0 },
                        compute_units: market.compute_units.get(a).copied().unwrap_or(0)
                            / u64::from(k),
                    }
                })
                .collect();
            let al = self.iss.allocate_prefetch(u64::from(e), &contributions)?;
            for (b, s) in self.agent_bal.iter_mut().zip(&al.shares) {
                b.deposit(*s)?;
            }
            prefetch_step = prefetch_step.checked_add(al.minted).context("overflow")?;
        }

        // Invariants, every step.
        let sum = |v: &[AccountBalance]| -> anyhow::Result<Amount> {
            Amount::checked_sum(v.iter().map(AccountBalance::tokens)).context("overflow")
        };
        let agents_tokens = sum(&self.agent_bal)?;
        let providers_tokens = sum(&self.sp_bal)?
            .checked_add(self.escrow.tokens())
            .context("overflow")?;
        let cars_tokens = amt(car_tokens)?;
        let held = Amount::checked_sum([cars_tokens, agents_tokens, providers_tokens])
            .context("overflow")?;
        let supply = self.iss.total_issued()?;
        if held != supply {
            bail!("day {d0}: balances {held} differ from issued supply {supply}");
        }
        if amt(car_credits)? != self.iss.credits_outstanding() {
            bail!("day {d0}: credit balances differ from the reservation");
        }
        let (ca, cp, cc) = self.iss.pool_caps();
        if self.iss.automatic_minted() > ca
            || self.iss.prefetch_minted() > cp
            || self.iss.circulation_sold() > cc
        {
            bail!("day {d0}: a pool issued above its cap");
        }

        self.day = d0 + k;
        let g = self.sc.gini_every;
        if d0 == 0 || d0 / g != self.day / g {
            let mut h: Vec<u64> = self.car_bal[..n]
                .iter()
                .chain(&self.agent_bal)
                .chain(&self.sp_bal)
                .map(|b| b.tokens().to_base_units())
                .collect();
            self.gini = gini(&mut h);
        }
        let moved = tokens(fees_paid)
            + sales_paid as f64 / UNITS
            + tokens(market.read_fees)
            + market.tokens_traded;
        let velocity = if supply.is_zero() {
            0.0
        } else {
            moved / tokens(supply) * 365.0 / f64::from(k)
        };
        Ok(Row {
            day: self.day,
            phase: self.iss.phase(),
            active_cars: n as u64,
            auto_minted: self.iss.automatic_minted(),
            credits_outstanding: self.iss.credits_outstanding(),
            prefetch_minted: self.iss.prefetch_minted(),
            circulation_sold: self.iss.circulation_sold(),
            supply,
            cars_tokens,
            agents_tokens,
            providers_tokens,
            fees_paid,
            sales_to_cars: amt(sales_paid)?,
            read_fees: market.read_fees,
            prefetch_step,
            price_eur: self.price_eur,
            gini: self.gini,
            velocity,
            community_fund_eur: self.iss.community_fund_quote() as f64 / QUOTE_PER_EUR,
            provider_profit_eur: self.provider_profit_eur,
            blocked_puts: blocked,
            data_mb: bytes_put as f64 / 1e6,
        })
    }

    /// Service providers buy tokens (from agents, then the pool) and data (into the escrow),
    /// and pay read fees to agents.
    fn market(&mut self, d0: u32, k: u32, bytes_total: u128) -> anyhow::Result<Market> {
        let p = self.sc.providers.clone();
        let n = self.car_bal.len() as f64;
        let adoption = n / f64::from(self.sc.cars.target.max(1));
        let budget = p.budget_eur_per_day
            * f64::from(k)
            * adoption
            * (1.0 + p.budget_growth_per_year).powf(f64::from(d0) / 365.0);
        let supply_mb = bytes_total as f64 / 1e6;
        let max_spend = supply_mb * p.data_price_eur_per_mb;
        let spend: Vec<f64> = self
            .sp_share
            .iter()
            .zip(&self.sp_wtp)
            .map(|(s, w)| {
                if *w >= p.data_price_eur_per_mb {
                    (budget * s).min(max_spend)
                } else {
                    0.0
                }
            })
            .collect();
        let read_addr: Vec<u64> = spend
            .iter()
            .map(|s| (s / p.data_price_eur_per_mb * p.addresses_per_mb as f64) as u64)
            .collect();
        let read_fee: Vec<Amount> = read_addr
            .iter()
            .map(|&a| self.iss.fee(&DataOp::Read { addresses: a }))
            .collect::<Result<_, _>>()?;

        // Price: the pool's marginal price while it sells, else a clearing price.
        let offers: Vec<u64> = self
            .agent_bal
            .iter()
            .map(|b| {
                (b.tokens().to_base_units() as f64
                    * self.sc.agents.sell_fraction_per_day.min(1.0)
                    * f64::from(k))
                .min(b.tokens().to_base_units() as f64) as u64
            })
            .collect();
        let offered: u64 = offers.iter().sum();
        let pool_open = !self.iss.circulation_remaining().is_zero()
            && u64::from(d0) >= self.sc.genesis.phase3.sale_start_epoch;
        let need_tokens = |price: f64, j: usize| -> f64 {
            spend[j] / price * UNITS + read_fee[j].to_base_units() as f64
        };
        if pool_open {
            self.price_eur = self.iss.marginal_price()? as f64 / QUOTE_PER_EUR;
        } else if offered > 0 {
            let demand_eur: f64 = (0..spend.len())
                .map(|j| {
                    (need_tokens(self.price_eur, j)
                        - self.sp_bal[j].tokens().to_base_units() as f64)
                        .max(0.0)
                        * self.price_eur
                        / UNITS
                })
                .sum();
            if demand_eur > 0.0 {
                self.price_eur = demand_eur / (offered as f64 / UNITS);
            }
        }
        let price = self.price_eur.max(1e-12);

        let mut offers_left = offers;
        let mut traded = 0u64;
        let mut read_fees = Amount::ZERO;
        let mut read_income = Amount::ZERO;
        for j in 0..spend.len() {
            let have = self.sp_bal[j].tokens().to_base_units() as f64;
            let mut short = (need_tokens(price, j) - have).max(0.0) as u64;
            for (a, off) in offers_left.iter_mut().enumerate() {
                if short == 0 {
                    break;
                }
                let take = short.min(*off);
                if take > 0 {
                    let t = amt(take)?;
                    self.agent_bal[a].transfer_tokens(&mut self.sp_bal[j], t)?;
                    *off -= take;
                    short -= take;
                    traded += take;
                }
            }
            if short > 0 && pool_open {
                let sale = self.iss.buy_tokens(u64::from(d0), amt(short)?)?;
                self.sp_bal[j].deposit(sale.tokens)?;
            }
            // Reads first (they bring the data), then the data payment into the escrow.
            let mut paid_eur = 0.0;
            if let Ok(s) = self.iss.settle(
                &mut self.sp_bal[j],
                &DataOp::Read {
                    addresses: read_addr[j],
                },
            ) {
                read_fees = read_fees.checked_add(s.fee).context("overflow")?;
                read_income = read_income
                    .checked_add(s.to_providers)
                    .context("overflow")?;
                let want = (spend[j] / price * UNITS) as u64;
                let pay = amt(want)?.min(self.sp_bal[j].tokens());
                self.sp_bal[j].transfer_tokens(&mut self.escrow, pay)?;
                paid_eur = tokens(pay) * price;
                self.provider_profit_eur +=
                    paid_eur * (p.value_multiple - 1.0) - tokens(s.fee) * price;
            }
            let _ = paid_eur;
        }

        // Read fees go to agents in proportion to what they store (dust to the largest).
        let stored_total: u128 = self.agent_stored.iter().map(|&s| u128::from(s)).sum();
        let mut compute_units = vec![0u64; self.agent_bal.len()];
        let total_reads: u64 = read_addr.iter().sum();
        if !read_income.is_zero() || total_reads > 0 {
            let (weights, total): (Vec<u128>, u128) = if stored_total == 0 {
                (vec![1; self.agent_bal.len()], self.agent_bal.len() as u128)
            } else {
                (
                    self.agent_stored.iter().map(|&s| u128::from(s)).collect(),
                    stored_total,
                )
            };
            let mut given = 0u64;
            let mut largest = 0usize;
            for (a, w) in weights.iter().enumerate() {
                let share = u64::try_from(u128::from(read_income.to_base_units()) * w / total)?;
                self.agent_bal[a].deposit(amt(share)?)?;
                given += share;
                compute_units[a] = u64::try_from(u128::from(total_reads) * w / total)?;
                if *w > weights[largest] {
                    largest = a;
                }
            }
            let dust = read_income.to_base_units() - given;
            self.agent_bal[largest].deposit(amt(dust)?)?;
        }
        Ok(Market {
            read_fees,
            compute_units,
            tokens_traded: traded as f64 / UNITS,
        })
    }
}

struct Market {
    read_fees: Amount,
    compute_units: Vec<u64>,
    tokens_traded: f64,
}

/// Runs a world to its horizon, calling `tick` after each step.
pub fn run_world(sc: &Scenario, run: u32, mut tick: impl FnMut(&Row)) -> anyhow::Result<Vec<Row>> {
    let mut w = World::new(sc, run)?;
    let mut rows = Vec::new();
    while !w.done() {
        let r = w.step()?;
        tick(&r);
        rows.push(r);
    }
    Ok(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gini_of_equal_and_concentrated_holdings() {
        assert_eq!(gini(&mut [5, 5, 5, 5]), 0.0);
        let g = gini(&mut [0, 0, 0, 100]);
        assert!((g - 0.75).abs() < 1e-12, "{g}");
        assert_eq!(gini(&mut []), 0.0);
    }
}
