//! The plots: one per query, every run's lines on run-relative time (t = 0 at each run's start) so runs overlay,
//! drawn with plotters as SVG (inlined in the page) and PNG (for papers and slides).

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::ReportError;
use crate::{Plot, RunSummary, units};

/// The plots' size in pixels.
pub const SIZE: (u32, u32) = (960, 420);

/// The font every plot's text is set in: DejaVu Sans, built in, so a plot looks the same on every machine.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_err() {
            tracing::warn!("the built-in plot font did not load; plots may lack text");
        }
    });
}

/// Whether a plot has anything to draw.
pub fn has_lines(plot: &Plot) -> bool {
    plot.runs.iter().any(|lines| lines.iter().any(|l| !l.points.is_empty()))
}

/// The legend's name of a run: its experiment name and the end of its id, which tells runs of one name apart.
pub fn run_label(run: &RunSummary) -> String {
    let tail = run.id.rsplit('-').next().unwrap_or(&run.id);
    format!("{} ({tail})", run.name)
}

/// Draws `plot` as SVG text.
pub fn svg(plot: &Plot, runs: &[RunSummary]) -> Result<String, ReportError> {
    register_font();
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        draw(&root, plot, runs)
            .map_err(|reason| ReportError::Plot { path: format!("{}.svg", plot.key).into(), reason })?;
    }
    Ok(text)
}

/// Draws `plot` into the PNG file `path`.
pub fn png(plot: &Plot, runs: &[RunSummary], path: &Path) -> Result<(), ReportError> {
    register_font();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    draw(&root, plot, runs).map_err(|reason| ReportError::Plot { path: path.to_owned(), reason })
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, plot: &Plot, runs: &[RunSummary]) -> Result<(), String> {
    let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(fail)?;
    let points = plot.runs.iter().flatten().flat_map(|line| line.points.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, 0.0f64, 0.0f64);
    for (x, y) in points {
        x_max = x_max.max(*x);
        y_min = y_min.min(*y);
        y_max = y_max.max(*y);
    }
    let (factor, unit) = units::scale(&plot.unit, y_max.abs().max(y_min.abs()));
    let (y_min, mut y_max) = (y_min / factor, y_max / factor);
    if (y_max - y_min).abs() < f64::EPSILON {
        y_max = y_min + 1.0;
    }
    let y_max = y_max + (y_max - y_min) * 0.08;
    let mut chart = ChartBuilder::on(root)
        .caption(&plot.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, y_min..y_max)
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the run's start")
        .y_desc(if unit.is_empty() { "value".to_owned() } else { unit.clone() })
        .y_label_formatter(&|v| units::number(*v))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(fail)?;
    let mut color_index = 0;
    for (run, lines) in runs.iter().zip(&plot.runs) {
        for line in lines {
            let color = Palette99::pick(color_index).to_rgba();
            color_index += 1;
            let label =
                if line.series.is_empty() { run_label(run) } else { format!("{} {}", run_label(run), line.series) };
            chart
                .draw_series(LineSeries::new(line.points.iter().map(|(x, y)| (*x, y / factor)), color.stroke_width(2)))
                .map_err(fail)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(fail)?;
    root.present().map_err(fail)
}
