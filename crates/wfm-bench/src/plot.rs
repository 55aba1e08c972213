//! The scale-curve PNG: closed-loop throughput and p99 at the scale rate against the number
//! of sessions, for the pipeline and both raw ceilings, each point the median of its runs
//! with a bar from the smallest to the largest run.
//!
//! Drawn with `plotters`' bitmap backend; text goes through `ab_glyph` with a DejaVu Sans
//! subset embedded in the binary, so no system font library is needed.

use std::path::Path;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::element::ErrorBar;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::stats::Spread;
use crate::suite::{Percentile, Point, Results, Runs};

/// DejaVu Sans, printable ASCII and a few symbols; see `assets/FONT-LICENSE.txt`.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");

/// The family name the embedded font is registered under.
const FAMILY: &str = "sans-serif";

type Series<'a> = (&'static str, RGBColor, fn(&'a Point) -> &'a Runs);

fn series<'a>() -> [Series<'a>; 3] {
    [
        ("pipeline", RGBColor(0xd6, 0x27, 0x28), |p| &p.pipeline),
        ("raw WebSocket", RGBColor(0x1f, 0x77, 0xb4), |p| &p.raw_ws),
        ("raw tonic", RGBColor(0x2c, 0xa0, 0x2c), |p| &p.raw_tonic),
    ]
}

fn err(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plot: {error}")
}

/// Draws the scale curve of `results` to `path`.
pub fn scale(results: &Results, path: &Path) -> anyhow::Result<()> {
    // Registering twice is harmless; a font that cannot be read is a build defect.
    plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the embedded font is invalid"))?;
    let root = BitMapBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (title, body) = root.split_vertically(50);
    title
        .titled(
            &format!(
                "wfm-bench scale curve: {} run(s) per point, median with min–max",
                results.plan.reps
            ),
            (FAMILY, 22),
        )
        .map_err(err)?;
    let (left, right) = body.split_horizontally(700);
    throughput(results, &left)?;
    p99(results, &right)?;
    root.present().map_err(err)?;
    Ok(())
}

fn bounds(values: impl Iterator<Item = Spread>) -> (f64, f64) {
    values.fold((f64::MAX, 0.0f64), |(lo, hi), s| {
        (lo.min(s.min.max(1e-3)), hi.max(s.max))
    })
}

fn x_range(results: &Results) -> std::ops::Range<f64> {
    let largest = results.points.iter().map(|p| p.sessions).max().unwrap_or(1) as f64;
    0.0..largest * 1.05
}

fn throughput(
    results: &Results,
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
) -> anyhow::Result<()> {
    let all = results
        .points
        .iter()
        .flat_map(|p| series().map(|(_, _, runs)| runs(p).throughput(0)));
    let (lo, hi) = bounds(all);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "closed-loop throughput (updates/s, log scale)",
            (FAMILY, 18),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(
            x_range(results),
            ((lo * 0.7).max(1.0)..hi * 1.4).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("sessions (one WebSocket client each)")
        .y_desc("updates/s")
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_label_formatter(&|v| format!("{v:.0}"))
        // A log axis draws a light line per minor tick, a grey band at each decade.
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(err)?;
    for (name, color, runs) in series() {
        let points: Vec<(f64, Spread)> = results
            .points
            .iter()
            .map(|p| (p.sessions as f64, runs(p).throughput(0)))
            .filter(|(_, s)| s.runs > 0)
            .collect();
        draw_series(&mut chart, name, color, &points)?;
    }
    legend(&mut chart, SeriesLabelPosition::MiddleRight)
}

fn p99(results: &Results, area: &DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()> {
    let rate = results.plan.scale_rate;
    let all = results
        .points
        .iter()
        .flat_map(|p| series().map(|(_, _, runs)| runs(p).latency_ms(rate, Percentile::P99)));
    let (_, hi) = bounds(all);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("p99 latency at {rate} updates/s (ms)"),
            (FAMILY, 18),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range(results), 0.0..(hi * 1.15).max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("sessions (one WebSocket client each)")
        .y_desc("ms")
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(err)?;
    for (name, color, runs) in series() {
        let points: Vec<(f64, Spread)> = results
            .points
            .iter()
            .map(|p| (p.sessions as f64, runs(p).latency_ms(rate, Percentile::P99)))
            .filter(|(_, s)| s.runs > 0)
            .collect();
        draw_series(&mut chart, name, color, &points)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn draw_series<'a, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    name: &'static str,
    color: RGBColor,
    points: &[(f64, Spread)],
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|(x, s)| (*x, s.median)),
            color.stroke_width(2),
        ))
        .map_err(err)?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    chart
        .draw_series(
            points
                .iter()
                .map(|(x, s)| Circle::new((*x, s.median), 4, color.filled())),
        )
        .map_err(err)?;
    chart
        .draw_series(points.iter().map(|(x, s)| {
            ErrorBar::new_vertical(*x, s.min, s.median, s.max, color.stroke_width(1), 8)
        }))
        .map_err(err)?;
    Ok(())
}

fn legend<'a, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FAMILY, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}
