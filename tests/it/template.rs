//! The guest SDK's template step builds and runs as its documentation says.

use weir_tests::{Project, RunDocument, output_digest, template_step};

fn project_with_template(values: &str) -> Project {
    let project = Project::new();
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/template/pipeline.toml"),
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
    let metrics = &summary.step("standardize")["metrics"];
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
    let error = summary.step("standardize")["error"].as_str().unwrap();
    assert!(error.contains("line 3: `three`"), "{error}");
}

/// The template built for the host and run with `WEIR_IN` and `WEIR_OUT`,
/// as the SDK's README says a step is debugged natively.
#[test]
fn the_template_runs_natively_with_its_directories_from_the_environment() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let target = root.join("target/native-template");
    let build = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--quiet", "--release", "--manifest-path"])
        .arg(root.join("guest-sdk/template/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let temp = tempfile::tempdir().unwrap();
    let (in_dir, out_dir) = (temp.path().join("in"), temp.path().join("out"));
    std::fs::create_dir_all(&in_dir).unwrap();
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(in_dir.join(".params.json"), r#"{"scale": 1.0}"#).unwrap();
    let run = || {
        std::process::Command::new(target.join("release/standardize"))
            .env("WEIR_IN", &in_dir)
            .env("WEIR_OUT", &out_dir)
            .output()
            .unwrap()
    };
    let missing = run();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains(&format!("Error: {}: ", in_dir.join("values").display())), "{stderr}");
    assert!(!stderr.contains("File {") && !stderr.contains("Os {"), "a sentence, not a debug structure: {stderr}");

    std::fs::copy(root.join("guest-sdk/template/values.txt"), in_dir.join("values")).unwrap();
    let ran = run();
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    assert_eq!(std::fs::read_to_string(out_dir.join("scaled")).unwrap().lines().count(), 6);
    assert!(String::from_utf8_lossy(&ran.stderr).contains("metric mean = 18"));
}

#[test]
fn the_template_runs_as_shipped() {
    let project = Project::new();
    let template = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/template");
    let manifest = std::fs::read_to_string(template.join("pipeline.toml")).unwrap();
    project.manifest(
        &manifest.replace("target/wasm32-wasip2/release/standardize.wasm", template_step().to_str().unwrap()),
    );
    std::fs::copy(template.join("values.txt"), project.path().join("values.txt")).unwrap();
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary.step("standardize")["metrics"]["mean"], 18.0);
}
