//! The scenario dashboard: six panels (pools, actor classes, flows, price, Gini, velocity) as
//! PNG and SVG.

use std::path::Path;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::model::Row;
use super::output::Exhaustion;

/// One run to draw: its legend label, rows and pool exhaustion days.
pub struct Series<'a> {
    /// Legend label (swept parameters and seed).
    pub label: String,
    /// The run's rows.
    pub rows: &'a [Row],
    /// When its pools ran out.
    pub exhaustion: Exhaustion,
}

const MAX_RUN_LINES: usize = 12;

/// Writes `stem.png` and `stem.svg`.
pub fn dashboard(stem: &Path, title: &str, runs: &[Series<'_>]) -> anyhow::Result<()> {
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    {
        let root = BitMapBackend::new(&png, (1200, 720)).into_drawing_area();
        draw(root, title, runs)?;
    }
    {
        let root = SVGBackend::new(&svg, (1200, 720)).into_drawing_area();
        draw(root, title, runs)?;
    }
    Ok(())
}

fn e<E: std::fmt::Display>(err: E) -> anyhow::Error {
    anyhow!("plotting: {err}")
}

fn mtok(a: tokenomics::Amount) -> f64 {
    a.to_base_units() as f64 / 1e8 / 1e6
}

/// Weekly samples of a variable (keeps the SVG small).
fn weekly(rows: &[Row], f: impl Fn(&Row) -> f64) -> Vec<(f64, f64)> {
    let stride = rows
        .first()
        .map_or(7, |r| (7 / r.day.max(1)).max(1) as usize);
    let mut v: Vec<(f64, f64)> = rows
        .iter()
        .step_by(stride)
        .map(|r| (f64::from(r.day), f(r)))
        .collect();
    if let Some(last) = rows.last() {
        if v.last().map(|p| p.0) != Some(f64::from(last.day)) {
            v.push((f64::from(last.day), f(last)));
        }
    }
    v
}

struct Line {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    days: f64,
    lines: &[Line],
    vlines: &[(f64, RGBColor)],
) -> anyhow::Result<()> {
    let ymax = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.08;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 17))
        .margin(10)
        .x_label_area_size(28)
        .y_label_area_size(58)
        .build_cartesian_2d(0f64..days, 0f64..ymax)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("day")
        .x_labels(7)
        .y_labels(6)
        .light_line_style(WHITE)
        .draw()
        .map_err(e)?;
    for (x, c) in vlines {
        chart
            .draw_series(LineSeries::new(
                vec![(*x, 0.0), (*x, ymax)],
                c.mix(0.6).stroke_width(1),
            ))
            .map_err(e)?;
    }
    let labelled = lines.len() > 1 && lines.len() <= MAX_RUN_LINES;
    for l in lines {
        let c = l.color;
        let s = chart
            .draw_series(LineSeries::new(l.points.clone(), c.stroke_width(2)))
            .map_err(e)?;
        if labelled {
            s.label(l.label.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
            });
        }
    }
    if labelled {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    C[i % C.len()]
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    runs: &[Series<'_>],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(e)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(e)?;
    let p = root.split_evenly((2, 3));
    let Some(first) = runs.first() else {
        return Ok(());
    };
    let days = first.rows.last().map_or(1.0, |r| f64::from(r.day)).max(1.0);
    let rows = first.rows;
    let named = |i: usize, label: &str, f: &dyn Fn(&Row) -> f64| Line {
        label: label.to_owned(),
        color: color(i),
        points: weekly(rows, f),
    };
    let ex = &first.exhaustion;
    let vlines: Vec<(f64, RGBColor)> = [(ex.automatic, 0), (ex.prefetch, 1), (ex.circulation, 2)]
        .iter()
        .filter_map(|(d, i)| d.map(|d| (f64::from(d), color(*i))))
        .collect();
    let step_days = |r: &Row| -> f64 {
        let prev = rows
            .iter()
            .take_while(|x| x.day < r.day)
            .last()
            .map_or(0, |x| x.day);
        f64::from(r.day.saturating_sub(prev).max(1))
    };
    let fig = |i: usize| p.get(i).ok_or_else(|| anyhow!("panel {i}"));
    panel(
        fig(0)?,
        "supply by pool, M tokens (| = pool exhausted)",
        days,
        &[
            named(0, "automatic (phase 1)", &|r| mtok(r.auto_minted)),
            named(1, "prefetch (phase 2)", &|r| mtok(r.prefetch_minted)),
            named(2, "circulation (phase 3)", &|r| mtok(r.circulation_sold)),
            named(7, "credits reserved", &|r| mtok(r.credits_outstanding)),
        ],
        &vlines,
    )?;
    panel(
        fig(1)?,
        "holdings by actor class, M tokens",
        days,
        &[
            named(0, "cars", &|r| mtok(r.cars_tokens)),
            named(1, "agent nodes", &|r| mtok(r.agents_tokens)),
            named(2, "service providers", &|r| mtok(r.providers_tokens)),
        ],
        &[],
    )?;
    panel(
        fig(2)?,
        "token flow per day, k tokens",
        days,
        &[
            named(3, "cars -> providers (fees)", &|r| {
                mtok(r.fees_paid) * 1e3 / step_days(r)
            }),
            named(4, "service providers -> cars (data)", &|r| {
                mtok(r.sales_to_cars) * 1e3 / step_days(r)
            }),
            named(5, "prefetch -> agents", &|r| {
                mtok(r.prefetch_step) * 1e3 / step_days(r)
            }),
        ],
        &[],
    )?;
    let per_run = |f: &dyn Fn(&Row) -> f64| -> Vec<Line> {
        runs.iter()
            .enumerate()
            .map(|(i, s)| Line {
                label: s.label.clone(),
                color: color(i),
                points: weekly(s.rows, f),
            })
            .collect()
    };
    panel(
        fig(3)?,
        "token price, EUR",
        days,
        &per_run(&|r| r.price_eur),
        &[],
    )?;
    panel(
        fig(4)?,
        "Gini of token holdings",
        days,
        &per_run(&|r| r.gini),
        &[],
    )?;
    panel(
        fig(5)?,
        "velocity (transfers per year / supply)",
        days,
        &per_run(&|r| r.velocity),
        &[],
    )?;
    root.present().map_err(e)?;
    Ok(())
}
