//! The pipeline graph as DOT, Mermaid or a self-contained SVG, with step
//! statuses of a run when given.

use std::collections::BTreeMap;
use std::fmt::Write;

use weir::{InputRef, LineageNode, Pipeline, RunDetail, StepStatus};

use super::escape;

/// A node: a pipeline input or a step.
struct Node {
    id: String,
    label: String,
    is_input: bool,
    status: Option<StepStatus>,
}

/// Nodes (inputs first, then steps in order) and edges (from, to, label).
pub struct Graph {
    nodes: Vec<Node>,
    edges: Vec<(usize, usize, String)>,
}

impl Graph {
    /// The graph of `pipeline`; `statuses` colours steps by a run's outcome.
    pub fn new(pipeline: &Pipeline, statuses: &BTreeMap<String, StepStatus>) -> Self {
        let mut nodes = Vec::new();
        let mut index = BTreeMap::new();
        for name in pipeline.inputs().keys() {
            index.insert(format!("inputs.{name}"), nodes.len());
            nodes.push(Node { id: format!("in_{}", ident(name)), label: name.clone(), is_input: true, status: None });
        }
        for step in pipeline.steps() {
            index.insert(step.name().to_owned(), nodes.len());
            let status = statuses.get(step.name()).copied();
            nodes.push(Node {
                id: format!("s_{}", ident(step.name())),
                label: step.name().to_owned(),
                is_input: false,
                status,
            });
        }
        let mut edges = Vec::new();
        for step in pipeline.steps() {
            let to = index[step.name()];
            for (input, source) in step.inputs() {
                let from = match source {
                    InputRef::Pipeline(name) => index[&format!("inputs.{name}")],
                    InputRef::Step { step, .. } => index[step.as_str()],
                };
                let label = match source {
                    InputRef::Step { output, .. } if output != input => format!("{output} → {input}"),
                    _ => input.clone(),
                };
                edges.push((from, to, label));
            }
        }
        Graph { nodes, edges }
    }

    /// The graph of a recorded run: an edge wherever a step read a digest
    /// that another step wrote; digests no step wrote are pipeline inputs.
    pub fn from_run(run: &RunDetail) -> Self {
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        let mut producers = BTreeMap::new();
        let mut external = BTreeMap::new();
        // Steps are in pipeline order, so a step's inputs resolve to steps
        // before it; a step that writes back the bytes it read is no loop.
        for step in &run.steps {
            let to = nodes.len();
            let id = format!("s_{}", ident(&step.step));
            nodes.push(Node { id, label: step.step.clone(), is_input: false, status: Some(step.status) });
            for (input, digest) in &step.inputs {
                let from = match producers.get(digest) {
                    Some(&from) => from,
                    None => *external.entry(*digest).or_insert_with(|| {
                        nodes.push(Node {
                            id: format!("in_{}", ident(input)),
                            label: input.clone(),
                            is_input: true,
                            status: None,
                        });
                        nodes.len() - 1
                    }),
                };
                edges.push((from, to, input.clone()));
            }
            for digest in step.outputs.values() {
                producers.entry(*digest).or_insert(to);
            }
        }
        Graph { nodes, edges }
    }

    /// The graph of an artifact's lineage: a node per step output (or
    /// pipeline input) in the chain, an edge wherever one was read by the next.
    pub fn from_lineage(chain: &[LineageNode]) -> Self {
        // The chain runs from the artifact back to its sources: reversed,
        // each link comes after what it read. A step that passes its input
        // through writes the same digest, so an input is drawn from the
        // nearest link before the reader that holds it.
        let links: Vec<&LineageNode> = chain.iter().rev().collect();
        let nodes = links
            .iter()
            .enumerate()
            .map(|(i, link)| Node {
                id: format!("n{i}"),
                label: match &link.step {
                    Some(step) => format!("{step}.{}", link.output),
                    None => link.output.clone(),
                },
                is_input: link.step.is_none(),
                status: None,
            })
            .collect();
        let mut edges = Vec::new();
        for (to, link) in links.iter().enumerate() {
            for (input, digest) in &link.inputs {
                if let Some(from) = (0..to).rev().find(|&from| links[from].digest == *digest) {
                    edges.push((from, to, input.clone()));
                }
            }
        }
        Graph { nodes, edges }
    }

    fn label(&self, node: &Node) -> String {
        match &node.status {
            Some(status) => format!("{} ({status})", node.label),
            None => node.label.clone(),
        }
    }

    /// Graphviz DOT.
    pub fn dot(&self) -> String {
        let mut out = String::from("digraph pipeline {\n  rankdir=LR;\n  node [fontname=\"sans-serif\"];\n");
        for node in &self.nodes {
            let shape = if node.is_input { "note" } else { "box" };
            let color = node.status.map_or("white", status_color);
            let _ = writeln!(
                out,
                "  {} [label=\"{}\", shape={shape}, style=filled, fillcolor=\"{color}\"];",
                node.id,
                escape(&self.label(node))
            );
        }
        for (from, to, label) in &self.edges {
            let _ =
                writeln!(out, "  {} -> {} [label=\"{}\"];", self.nodes[*from].id, self.nodes[*to].id, escape(label));
        }
        out.push_str("}\n");
        out
    }

    /// Mermaid flowchart.
    pub fn mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for node in &self.nodes {
            let text = self.label(node).replace('"', "'");
            if node.is_input {
                let _ = writeln!(out, "  {}[/\"{text}\"/]", node.id);
            } else {
                let _ = writeln!(out, "  {}[\"{text}\"]", node.id);
            }
        }
        for (from, to, label) in &self.edges {
            let _ = writeln!(out, "  {} -->|{}| {}", self.nodes[*from].id, label.replace('|', "/"), self.nodes[*to].id);
        }
        out
    }

    /// A self-contained SVG: nodes in columns by dependency depth.
    pub fn svg(&self) -> String {
        self.draw(None)
    }

    /// The SVG of [`Graph::svg`] for a page: each step a link to
    /// `href(step)` (so keyboard users reach it with Tab) with its status
    /// as a class (`s-ran`) and as text, marked `data-step` for live updates.
    pub fn linked_svg(&self, href: &dyn Fn(&str) -> String) -> String {
        self.draw(Some(href))
    }

    fn draw(&self, href: Option<&dyn Fn(&str) -> String>) -> String {
        let mut depth = vec![0usize; self.nodes.len()];
        // Longest path from a source; the graph is acyclic, so this settles
        // within as many passes as there are nodes.
        for _ in 0..self.nodes.len() {
            let mut changed = false;
            for (from, to, _) in &self.edges {
                if depth[*to] < depth[*from] + 1 {
                    depth[*to] = depth[*from] + 1;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut rows = BTreeMap::<usize, usize>::new();
        let mut position = Vec::new();
        for &d in &depth {
            let row = rows.entry(d).or_default();
            position.push((d, *row));
            *row += 1;
        }
        let (w, h, gap_x, gap_y) = (170.0, 40.0, 70.0, 24.0);
        let x = |col: usize| 10.0 + col as f64 * (w + gap_x);
        // A top margin leaves room for edges that jump over a column.
        let y = |row: usize| 26.0 + row as f64 * (h + gap_y);
        let width = x(depth.iter().max().copied().unwrap_or(0) + 1) - gap_x + 10.0;
        let height = y(rows.values().max().copied().unwrap_or(1)) - gap_y + 10.0;
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
             viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n"
        );
        for (from, to, label) in &self.edges {
            let (a, b) = (position[*from], position[*to]);
            let (x1, y1, x2, y2) = (x(a.0) + w, y(a.1) + h / 2.0, x(b.0), y(b.1) + h / 2.0);
            let mid = (x1 + x2) / 2.0;
            // An edge over more than one column arcs above the boxes between.
            let (path, label_y) = if b.0 > a.0 + 1 {
                let over = y(a.1.min(b.1)) - gap_y / 2.0 - 4.0;
                (
                    format!(
                        "M{x1:.1},{y1:.1} C{:.1},{over:.1} {:.1},{over:.1} {x2:.1},{y2:.1}",
                        x1 + gap_x,
                        x2 - gap_x
                    ),
                    over + 8.0,
                )
            } else {
                (format!("M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}"), (y1 + y2) / 2.0 - 3.0)
            };
            let _ = writeln!(
                out,
                "  <path d=\"{path}\" fill=\"none\" stroke=\"#888\"/>\
                 <text x=\"{mid:.1}\" y=\"{label_y:.1}\" font-size=\"10\" fill=\"#555\" text-anchor=\"middle\">{}</text>",
                escape(label)
            );
        }
        for (node, (col, row)) in self.nodes.iter().zip(&position) {
            let fill = node.status.map_or(if node.is_input { "#eef" } else { "#fff" }, status_color);
            let (x0, y0) = (x(*col), y(*row));
            let shape = format!(
                "<rect x=\"{x0:.1}\" y=\"{y0:.1}\" width=\"{w}\" height=\"{h}\" rx=\"6\" fill=\"{fill}\" stroke=\"#333\"/>"
            );
            let (text_x, text_y) = (x0 + w / 2.0, y0 + h / 2.0 + 4.0);
            match href {
                Some(href) if !node.is_input => {
                    let class = node.status.map_or("pending", StepStatus::as_str);
                    let status = node.status.map_or("pending", super::status_word);
                    let _ = writeln!(
                        out,
                        "  <a href=\"{link}\" class=\"node s-{class}\" data-step=\"{name}\" aria-label=\"step {name}: {status}\">{shape}\
                         <text x=\"{text_x:.1}\" y=\"{text_y:.1}\" text-anchor=\"middle\">{name} <tspan class=\"st\">({status})</tspan></text></a>",
                        link = escape(&href(&node.label)),
                        name = escape(&node.label),
                    );
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "  {shape}<text x=\"{text_x:.1}\" y=\"{text_y:.1}\" text-anchor=\"middle\">{}</text>",
                        escape(&self.label(node))
                    );
                }
            }
        }
        out.push_str("</svg>\n");
        out
    }
}

fn status_color(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Ran => "#c8f0c8",
        StepStatus::Cached => "#d8e8ff",
        StepStatus::Failed => "#ffc8c8",
        StepStatus::Skipped => "#eeeeee",
        StepStatus::Cancelled => "#ffe8b0",
        StepStatus::Running => "#fff6c8",
        StepStatus::Killed => "#ffc8c8",
        _ => "#ffffff",
    }
}

/// An identifier for DOT and Mermaid: letters, digits and `_`.
fn ident(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir::Digest;

    fn link(step: Option<&str>, output: &str, digest: &[u8], inputs: &[(&str, &[u8])]) -> LineageNode {
        LineageNode {
            digest: Digest::of(digest),
            run_id: "r".into(),
            step: step.map(str::to_owned),
            output: output.into(),
            inputs: inputs.iter().map(|(name, bytes)| ((*name).to_owned(), Digest::of(bytes))).collect(),
            path: None,
        }
    }

    #[test]
    fn a_lineage_reads_from_the_nearest_link_that_holds_the_digest() {
        // `check` passes the raw bytes through; `split` reads what `check` wrote.
        let chain = [
            link(Some("split"), "train", b"train", &[("checked", b"raw")]),
            link(Some("check"), "checked", b"raw", &[("raw", b"raw")]),
            link(None, "digits", b"raw", &[]),
        ];
        let dot = Graph::from_lineage(&chain).dot();
        assert!(dot.contains("n0 -> n1 [label=\"raw\"]"), "{dot}");
        assert!(dot.contains("n1 -> n2 [label=\"checked\"]"), "{dot}");
        assert_eq!(dot.matches("->").count(), 2, "{dot}");
    }
}
