//! Scenario files: TOML with documented parameters, plus `--sweep` overrides by dotted path.

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokenomics::GenesisParams;

/// One simulated economy: horizon, genesis rules and actor behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in output file names.
    pub name: String,
    /// What the scenario explores.
    #[serde(default)]
    pub description: String,
    /// Simulated days.
    pub days: u32,
    /// Days per step (each step settles that many days of activity at once).
    #[serde(default = "one")]
    pub step_days: u32,
    /// Base seed; run `r` uses `seed + r`.
    #[serde(default)]
    pub seed: u64,
    /// Monte Carlo runs per parameter combination.
    #[serde(default = "one")]
    pub runs: u32,
    /// Compute the Gini coefficient every this many days (it sorts every holding).
    #[serde(default = "seven")]
    pub gini_every: u32,
    /// Genesis parameters, exactly as the chain would use them.
    pub genesis: GenesisParams,
    /// Cars (data producers).
    pub cars: Cars,
    /// Agent nodes (storage and compute providers).
    pub agents: Agents,
    /// Service providers (data buyers).
    pub providers: Providers,
}

fn one() -> u32 {
    1
}
fn seven() -> u32 {
    7
}

/// Car population and driving behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cars {
    /// Cars registered on day 0.
    pub initial: u32,
    /// Cars registered once adoption saturates.
    pub target: u32,
    /// Day at which adoption is half-way between `initial` and `target` (logistic curve).
    pub adoption_midpoint_day: f64,
    /// Steepness of the logistic adoption curve, per day.
    pub adoption_rate: f64,
    /// Median of the cars' mean distance per driving day, km.
    pub median_km_per_day: f64,
    /// Log-normal dispersion (sigma) of the cars' mean distance.
    pub km_dispersion: f64,
    /// Probability that a car drives on a given day.
    pub drive_probability: f64,
    /// Encrypted telemetry bytes produced per km driven.
    pub bytes_per_km: u64,
    /// Bytes produced on every day, driving or not (status reports).
    pub bytes_per_day_idle: u64,
}

/// Agent nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agents {
    /// Number of agent nodes (cars are assigned to one each, uniformly).
    pub count: u32,
    /// Fraction of agents in shared mode (their cars pay no storage fee).
    pub shared_fraction: f64,
    /// Probability an agent passes its storage audit in an epoch.
    pub audit_pass_rate: f64,
    /// Fraction of its token holdings an agent offers for sale each day (to cover costs).
    pub sell_fraction_per_day: f64,
}

/// Service providers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Providers {
    /// Number of service providers.
    pub count: u32,
    /// Total data budget per day at full adoption in year 0, EUR.
    pub budget_eur_per_day: f64,
    /// Yearly growth of the budget.
    pub budget_growth_per_year: f64,
    /// Asking price of data, EUR per MB.
    pub data_price_eur_per_mb: f64,
    /// Median willingness to pay across providers, EUR per MB.
    pub wtp_median_eur_per_mb: f64,
    /// Log-normal dispersion of willingness to pay.
    pub wtp_dispersion: f64,
    /// Service revenue earned per EUR of data bought (profit = revenue − data − fees).
    pub value_multiple: f64,
    /// Partition addresses traversed per MB read.
    pub addresses_per_mb: u64,
}

impl Scenario {
    /// Reads a scenario file, applying `overrides` (`dotted.path=value`).
    pub fn load(path: &Path, overrides: &[(String, String)]) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        Scenario::parse(&text, overrides).with_context(|| format!("in {}", path.display()))
    }

    /// Parses scenario text, applying overrides.
    pub fn parse(text: &str, overrides: &[(String, String)]) -> anyhow::Result<Scenario> {
        let mut value: toml::Value = toml::from_str(text)?;
        for (k, v) in overrides {
            set_path(&mut value, k, v)?;
        }
        let sc: Scenario = value.try_into()?;
        sc.validate()?;
        Ok(sc)
    }

    /// Checks ranges the model relies on.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.genesis.validate()?;
        if self.step_days == 0 || self.days == 0 {
            bail!("days and step_days must be positive");
        }
        if self.cars.target < self.cars.initial {
            bail!("cars.target must be at least cars.initial");
        }
        if self.agents.count == 0 || self.agents.count > 65_535 {
            bail!("agents.count must be in 1..=65535");
        }
        if self.gini_every == 0 {
            bail!("gini_every must be positive");
        }
        for (n, p) in [
            ("cars.drive_probability", self.cars.drive_probability),
            ("agents.shared_fraction", self.agents.shared_fraction),
            ("agents.audit_pass_rate", self.agents.audit_pass_rate),
            (
                "agents.sell_fraction_per_day",
                self.agents.sell_fraction_per_day,
            ),
        ] {
            if !(0.0..=1.0).contains(&p) {
                bail!("{n} must be in [0, 1]");
            }
        }
        Ok(())
    }
}

/// Sets `a.b.c = raw` in a TOML tree; the raw text is parsed as a TOML value (falling back to a
/// string), so numbers stay numbers.
fn set_path(root: &mut toml::Value, path: &str, raw: &str) -> anyhow::Result<()> {
    let parsed: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    };
    let mut cur = root;
    let parts: Vec<&str> = path.split('.').collect();
    let Some((last, init)) = parts.split_last() else {
        bail!("empty parameter path");
    };
    for p in init {
        cur = cur
            .get_mut(*p)
            .with_context(|| format!("no table {p:?} in parameter path {path:?}"))?;
    }
    let table = cur
        .as_table_mut()
        .with_context(|| format!("{path:?} does not name a field"))?;
    if !table.contains_key(*last) {
        bail!("unknown parameter {path:?}");
    }
    table.insert((*last).to_owned(), parsed);
    Ok(())
}

/// Parses `--sweep param=a,b,c` into the parameter and its values.
pub fn parse_sweep(s: &str) -> anyhow::Result<(String, Vec<String>)> {
    let Some((k, vs)) = s.split_once('=') else {
        bail!("sweep must look like param=a,b,c");
    };
    let values: Vec<String> = vs.split(',').map(|v| v.trim().to_owned()).collect();
    if k.is_empty() || values.iter().any(String::is_empty) {
        bail!("sweep must look like param=a,b,c");
    }
    Ok((k.trim().to_owned(), values))
}

/// Every combination of sweep values (cartesian product), as override lists.
pub fn combinations(sweeps: &[(String, Vec<String>)]) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (k, vs) in sweeps {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                vs.iter().map(move |v| {
                    let mut p = prefix.clone();
                    p.push((k.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    out
}
