//! Line charts of metric series as inline SVG.

use std::fmt::Write;

use super::escape;

/// Colours of the lines of a chart, one per run, in order.
const PALETTE: [&str; 6] = ["#36c", "#d62", "#393", "#93c", "#c93", "#099"];

/// A line chart of one or more series (one point per report, in order;
/// overlaid, with a legend, when there are several), as inline SVG.
pub fn chart(lines: &[(&str, &[f64])]) -> String {
    let (width, height, pad) = (480.0, 160.0, 40.0);
    let finite: Vec<f64> =
        lines.iter().flat_map(|(_, values)| values.iter().copied()).filter(|v| v.is_finite()).collect();
    let (min, max) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let (min, max) = if finite.is_empty() {
        (0.0, 1.0)
    } else if min == max {
        (min - 0.5, max + 0.5)
    } else {
        (min, max)
    };
    let longest = lines.iter().map(|(_, values)| values.len()).max().unwrap_or(0);
    let x = |i: usize| pad + (width - 2.0 * pad) * if longest > 1 { i as f64 / (longest - 1) as f64 } else { 0.5 };
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
    for (n, (label, values)) in lines.iter().enumerate() {
        let colour = PALETTE[n % PALETTE.len()];
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
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
    let _ =
        write!(svg, "<text x=\"{:.1}\" y=\"{height}\" text-anchor=\"end\">{longest} values</text></svg>", width - pad,);
    svg
}

/// A number in at most four decimals, without trailing zeros.
pub fn compact(value: f64) -> String {
    format!("{value:.4}").trim_end_matches('0').trim_end_matches('.').to_owned()
}
