//! Line charts of metric series as inline SVG.

use std::fmt::Write;

use weir::MetricSeries;

use super::escape;

/// Colours of the lines of a chart, one per run, in order.
const PALETTE: [&str; 6] = ["#36c", "#d62", "#393", "#93c", "#c93", "#099"];

/// A line chart of one or more metric series (overlaid, with a legend, when
/// there are several), each value plotted at its position (`at`), as inline SVG.
pub fn chart(lines: &[(&str, &MetricSeries)]) -> String {
    let (width, height, pad) = (480.0, 160.0, 40.0);
    let finite: Vec<f64> =
        lines.iter().flat_map(|(_, series)| series.values.iter().copied()).filter(|v| v.is_finite()).collect();
    let (min, max) = span(finite.iter().copied()).unwrap_or((0.0, 1.0));
    let (first, last) =
        span(lines.iter().flat_map(|(_, series)| series.at.iter().map(|&at| at as f64))).unwrap_or((0.0, 1.0));
    let x = |at: u64| pad + (width - 2.0 * pad) * (at as f64 - first) / (last - first);
    let y = |v: f64| height - pad / 2.0 - (height - pad) * (v - min) / (max - min);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-size=\"10\" font-family=\"sans-serif\">\
         <line x1=\"{pad}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\
         <line x1=\"{pad}\" y1=\"{:.1}\" x2=\"{pad}\" y2=\"{:.1}\" stroke=\"#999\"/>\
         <text x=\"2\" y=\"{:.1}\">{}</text><text x=\"2\" y=\"{:.1}\">{}</text>",
        height - pad / 2.0,
        width - pad,
        height - pad / 2.0,
        pad / 2.0,
        height - pad / 2.0,
        y(max) + 4.0,
        compact(max),
        y(min),
        compact(min),
    );
    for (n, (label, series)) in lines.iter().enumerate() {
        let colour = PALETTE[n % PALETTE.len()];
        let points: Vec<String> = series
            .at
            .iter()
            .zip(&series.values)
            .filter(|(_, v)| v.is_finite())
            .map(|(&at, &v)| format!("{:.1},{:.1}", x(at), y(v)))
            .collect();
        if points.len() == 1 {
            let (px, py) = points[0].split_once(',').unwrap_or(("0", "0"));
            let _ = write!(svg, "<circle cx=\"{px}\" cy=\"{py}\" r=\"3\" fill=\"{colour}\"/>");
        } else {
            let _ = write!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
                points.join(" ")
            );
        }
        if lines.len() > 1 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{}</text>",
                pad + 4.0,
                10.0 + 11.0 * n as f64,
                escape(label)
            );
        }
    }
    let count: usize = lines.iter().map(|(_, series)| series.len()).max().unwrap_or(0);
    let _ = write!(
        svg,
        "<text x=\"{pad}\" y=\"{height}\">{}</text><text x=\"{:.1}\" y=\"{height}\" text-anchor=\"end\">{} · {count} values</text></svg>",
        compact(first),
        width - pad,
        compact(last),
    );
    svg
}

/// The least and greatest of `values`, widened around a single value so
/// that a scale over them never divides by zero; `None` when there are none.
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    match lo.partial_cmp(&hi)? {
        std::cmp::Ordering::Greater => None,
        std::cmp::Ordering::Equal => Some((lo - 0.5, hi + 0.5)),
        std::cmp::Ordering::Less => Some((lo, hi)),
    }
}

/// A number in at most four decimals, without trailing zeros.
pub fn compact(value: f64) -> String {
    format!("{value:.4}").trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The x coordinates of a chart's first line.
    fn xs(svg: &str) -> Vec<f64> {
        let points = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        points.split(' ').map(|point| point.split(',').next().unwrap().parse().unwrap()).collect()
    }

    #[test]
    fn values_are_plotted_at_their_positions() {
        let even = MetricSeries { at: vec![0, 1, 2], values: vec![1.0, 2.0, 3.0] };
        assert_eq!(xs(&chart(&[("loss", &even)])), [40.0, 240.0, 440.0]);
        // Epochs 0, 1 and 9: the last point sits far to the right of the second.
        let uneven = MetricSeries { at: vec![0, 1, 9], values: vec![1.0, 2.0, 3.0] };
        let svg = chart(&[("loss", &uneven)]);
        assert_eq!(xs(&svg), [40.0, 84.4, 440.0]);
        assert!(svg.contains(">9 · 3 values<"), "{svg}");
    }

    #[test]
    fn a_single_value_or_none_draws_without_dividing_by_zero() {
        let one = MetricSeries { at: vec![5], values: vec![0.25] };
        let svg = chart(&[("acc", &one)]);
        assert!(svg.contains("<circle cx=\"240.0\""), "{svg}");
        assert!(!chart(&[("acc", &MetricSeries::default())]).contains("NaN"));
    }
}
