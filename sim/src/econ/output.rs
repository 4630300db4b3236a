//! Tidy CSV: one row per (run, step), parameter columns first, then the variables.

use std::io::Write;

use super::model::Row;

/// Column names of the variables, in CSV order.
pub const VARIABLES: &[&str] = &[
    "day",
    "phase",
    "active_cars",
    "auto_minted",
    "credits_outstanding",
    "prefetch_minted",
    "circulation_sold",
    "supply",
    "cars_tokens",
    "agents_tokens",
    "providers_tokens",
    "fees_paid",
    "sales_to_cars",
    "read_fees",
    "prefetch_step",
    "price_eur",
    "gini",
    "velocity",
    "community_fund_eur",
    "provider_profit_eur",
    "blocked_puts",
    "data_mb",
];

/// One run's identity: its index, seed and swept parameter values.
#[derive(Debug, Clone)]
pub struct RunId {
    /// Run index across the whole invocation.
    pub run: u32,
    /// Seed the run used.
    pub seed: u64,
    /// Swept parameter values, `(path, value)`.
    pub params: Vec<(String, String)>,
}

/// Writes a header for runs with the given parameter names.
pub fn write_header<W: Write>(w: &mut csv::Writer<W>, params: &[String]) -> csv::Result<()> {
    let mut h: Vec<&str> = vec!["run", "seed"];
    h.extend(params.iter().map(String::as_str));
    h.extend_from_slice(VARIABLES);
    w.write_record(h)
}

/// Writes one run's rows.
pub fn write_rows<W: Write>(w: &mut csv::Writer<W>, id: &RunId, rows: &[Row]) -> csv::Result<()> {
    for r in rows {
        let mut rec: Vec<String> = vec![id.run.to_string(), id.seed.to_string()];
        rec.extend(id.params.iter().map(|(_, v)| v.clone()));
        rec.extend([
            r.day.to_string(),
            format!("{:?}", r.phase).to_lowercase(),
            r.active_cars.to_string(),
            r.auto_minted.to_string(),
            r.credits_outstanding.to_string(),
            r.prefetch_minted.to_string(),
            r.circulation_sold.to_string(),
            r.supply.to_string(),
            r.cars_tokens.to_string(),
            r.agents_tokens.to_string(),
            r.providers_tokens.to_string(),
            r.fees_paid.to_string(),
            r.sales_to_cars.to_string(),
            r.read_fees.to_string(),
            r.prefetch_step.to_string(),
            format!("{:.6}", r.price_eur),
            format!("{:.6}", r.gini),
            format!("{:.6}", r.velocity),
            format!("{:.2}", r.community_fund_eur),
            format!("{:.2}", r.provider_profit_eur),
            r.blocked_puts.to_string(),
            format!("{:.3}", r.data_mb),
        ]);
        w.write_record(rec)?;
    }
    Ok(())
}

/// First day each pool was exhausted in a run, if it was.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Exhaustion {
    /// Automatic pool (phase 1).
    pub automatic: Option<u32>,
    /// Prefetch pool (phase 2).
    pub prefetch: Option<u32>,
    /// Circulation pool (phase 3).
    pub circulation: Option<u32>,
}

/// Finds pool exhaustion days from the rows and the pool caps.
pub fn exhaustion(
    rows: &[Row],
    caps: (tokenomics::Amount, tokenomics::Amount, tokenomics::Amount),
) -> Exhaustion {
    let first = |f: &dyn Fn(&Row) -> bool| rows.iter().find(|r| f(r)).map(|r| r.day);
    Exhaustion {
        automatic: first(&|r| r.auto_minted.checked_add(r.credits_outstanding) == Some(caps.0)),
        prefetch: first(&|r| r.prefetch_minted == caps.1),
        circulation: first(&|r| r.circulation_sold == caps.2),
    }
}
