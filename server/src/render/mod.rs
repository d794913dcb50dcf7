//! Pipelines and runs drawn for people: graphs (SVG, DOT, Mermaid) and
//! metric charts (SVG), shared by `weir report`, `weir graph` and the web UI.

mod chart;
mod graph;
mod timeline;

pub use chart::{chart, compact};
pub use graph::Graph;
pub use timeline::timeline;

/// A step status as the UI says it: `reused` for a cached step, else the
/// status's own name.
pub fn status_word(status: weir::StepStatus) -> &'static str {
    match status {
        weir::StepStatus::Cached => "reused",
        other => other.as_str(),
    }
}

/// Escapes text for DOT labels, SVG and HTML (text and quoted attributes).
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}
