//! The guest SDK's template step builds and runs as its documentation says.

use weir_tests::{Project, output_digest, template_step};

fn project_with_template(values: &str) -> Project {
    let project = Project::new();
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/template/step.toml"),
    )
    .unwrap();
    let module = template_step();
    project.manifest(&manifest.replace("target/wasm32-wasip2/release/standardize.wasm", module.to_str().unwrap()));
    project.write("values.txt", values);
    project
}

#[test]
fn the_template_step_standardizes_and_reports_metrics() {
    let project = project_with_template("1\n2\n3\n4\n");
    let (code, summary) = project.run_json(&["--param", "scale=2"]);
    assert_eq!(code, 0, "{summary}");
    let metrics = &summary["steps"]["standardize"]["metrics"];
    assert_eq!(metrics["mean"], 2.5);
    assert!((metrics["std"].as_f64().unwrap() - 1.25f64.sqrt()).abs() < 1e-12);
    let scaled: Vec<f64> = project
        .cat(output_digest(&summary, "standardize", "scaled"))
        .lines()
        .map(|line| line.parse().unwrap())
        .collect();
    let want: Vec<f64> = [1.0, 2.0, 3.0, 4.0].iter().map(|v| (v - 2.5) / 1.25f64.sqrt() * 2.0).collect();
    for (got, want) in scaled.iter().zip(&want) {
        assert!((got - want).abs() < 1e-9, "{scaled:?}");
    }
}

#[test]
fn the_template_step_names_the_bad_line() {
    let project = project_with_template("1\n2\nthree\n");
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 1);
    let error = summary["steps"]["standardize"]["error"].as_str().unwrap();
    assert!(error.contains("line 3: `three`"), "{error}");
}
