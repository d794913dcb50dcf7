//! Independent steps run at the same time on the worker pool, up to `--jobs`.

use weir_tests::{Project, output_digest};

/// Two independent steps that each sleep; returns their (start, end) wall times.
fn nap_intervals(jobs: &str) -> [(u64, u64); 2] {
    let project = Project::new();
    project.manifest(
        r#"
name = "naps"
[steps.left]
module = "tool-p1.wasm"
args = ["nap", "400"]
outputs = { result = "file" }
[steps.right]
module = "tool-p2.wasm"
args = ["nap", "400"]
outputs = { result = "file" }
"#,
    );
    let (code, summary) = project.run_json(&["--jobs", jobs]);
    assert_eq!(code, 0, "{summary}");
    ["left", "right"].map(|step| {
        let text = project.cat(output_digest(&summary, step, "result"));
        let (start, end) = text.split_once(' ').expect("start end");
        (start.parse().unwrap(), end.parse().unwrap())
    })
}

fn overlap([a, b]: [(u64, u64); 2]) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[test]
fn independent_steps_overlap_with_two_jobs() {
    assert!(overlap(nap_intervals("2")), "the two steps did not run at the same time");
}

#[test]
fn one_job_runs_steps_one_at_a_time() {
    assert!(!overlap(nap_intervals("1")), "--jobs 1 ran two steps at once");
}
