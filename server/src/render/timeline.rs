//! A run's steps on a time axis (a Gantt chart) as inline SVG.

use std::fmt::Write;

use super::{escape, status_word};
use weir::RunDetail;

/// One bar per settled step of `run`, from when it started to when it
/// settled, on an axis from the run's start; steps still running or never
/// started have no bar. Each bar's text says the step, status and time.
pub fn timeline(run: &RunDetail) -> String {
    let origin = run.summary.started;
    let bars: Vec<(&str, &str, f64, f64)> = run
        .steps
        .iter()
        .filter_map(|step| {
            let finished = step.finished?;
            let end = (finished - origin).max(0.0);
            let start = (end - step.duration_ms / 1000.0).max(0.0);
            Some((step.step.as_str(), status_word(step.status), start, end))
        })
        .collect();
    let span = bars.iter().map(|bar| bar.3).fold(0.0f64, f64::max).max(0.001);
    let (label_width, plot_width, row) = (180.0, 620.0, 18.0);
    let height = row * bars.len() as f64 + 24.0;
    let x = |seconds: f64| label_width + plot_width * seconds / span;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"{:.0}\" height=\"{height:.0}\" \
         font-family=\"sans-serif\" font-size=\"11\" role=\"img\" aria-label=\"Timeline of the run's steps\">",
        label_width + plot_width + 10.0
    );
    for (i, (step, status, start, end)) in bars.iter().enumerate() {
        let y = i as f64 * row;
        let width = (x(*end) - x(*start)).max(1.5);
        let _ = write!(
            svg,
            "<g class=\"bar s-{status}\"><title>{name}: {status}, {:.3} s from {:.3} s</title>\
             <text x=\"0\" y=\"{:.1}\">{name}</text>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\" rx=\"2\"/></g>",
            end - start,
            start,
            y + row - 5.0,
            x(*start),
            y + 3.0,
            row - 6.0,
            name = escape(step),
        );
    }
    let axis_y = row * bars.len() as f64 + 4.0;
    let _ = write!(
        svg,
        "<line x1=\"{label_width}\" y1=\"{axis_y:.1}\" x2=\"{:.1}\" y2=\"{axis_y:.1}\" stroke=\"#999\"/>\
         <text x=\"{label_width}\" y=\"{:.1}\">0 s</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text></svg>",
        label_width + plot_width,
        axis_y + 14.0,
        label_width + plot_width,
        axis_y + 14.0,
        escape(&format!("{span:.2} s")),
    );
    svg
}
