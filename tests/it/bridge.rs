//! The host bridge: SDK-built guests report metrics and call native
//! functions; every misuse comes back to the guest as an error value.

use weir_tests::{Project, RunDocument, f32_bytes, f32_values, output_digest, reference_matmul, steps_with};

const M: usize = 5;
const N: usize = 3;
const K: usize = 7;

/// A project with matrices `a` (M × K) and `b` (K × N) as pipeline inputs.
fn with_matrices() -> (Project, Vec<f32>, Vec<f32>) {
    let project = Project::new();
    let a: Vec<f32> = (0..M * K).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..K * N).map(|i| (i as f32 * 0.11).cos() - 0.5).collect();
    project.write("data/a.f32", f32_bytes(&a));
    project.write("data/b.f32", f32_bytes(&b));
    (project, a, b)
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (x, y) in got.iter().zip(want) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
}

fn matrix_step(extra: &str) -> String {
    format!(
        "name = \"bridge\"\n[inputs]\na = \"data/a.f32\"\nb = \"data/b.f32\"\n\
         [steps.mul]\nmodule = \"sdk-tool.wasm\"\ninputs = {{ a = \"inputs.a\", b = \"inputs.b\" }}\n\
         params = {{ m = {M}, n = {N}, k = {K} }}\n{extra}\n"
    )
}

#[test]
fn an_sdk_guest_multiplies_matrices_through_gemm() {
    let (project, a, b) = with_matrices();
    project.manifest(&matrix_step(
        "args = [\"gemm\"]\nnatives = [\"gemm\"]\noutputs = { c = \"file\", result = \"file\" }",
    ));
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    let c = f32_values(&project.cat_bytes(output_digest(&summary, "mul", "c")));
    let want = reference_matmul(M, N, K, &a, &b);
    assert_close(&c, &want);
    let sum = summary.step("mul")["metrics"]["sum"].as_f64().unwrap();
    assert!((sum - want.iter().map(|v| f64::from(*v)).sum::<f64>()).abs() < 1e-3);
}

#[test]
fn gemm_reads_and_writes_files_without_passing_them_through_the_guest() {
    let (project, a, b) = with_matrices();
    project.manifest(&matrix_step("args = [\"gemm-files\"]\nnatives = [\"gemm\"]\noutputs = { c = \"file\" }"));
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    let c = f32_values(&project.cat_bytes(output_digest(&summary, "mul", "c")));
    assert_close(&c, &reference_matmul(M, N, K, &a, &b));
}

fn call_result(args: &str, natives: &str) -> String {
    let project = Project::new();
    project.manifest(&format!(
        "name = \"calls\"\n[steps.s]\nmodule = \"sdk-tool.wasm\"\nargs = {args}\nnatives = {natives}\noutputs = {{ result = \"file\" }}\n"
    ));
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    project.cat(output_digest(&summary, "s", "result"))
}

#[test]
fn an_unknown_function_is_an_error_value() {
    let result = call_result(r#"["call", "no-such-function", "{}"]"#, "[]");
    assert!(result.starts_with("error: native call failed: no native function named `no-such-function`"), "{result}");
}

#[test]
fn an_undeclared_function_is_an_error_value() {
    let result = call_result(r#"["call", "gemm", "{}"]"#, "[]");
    assert!(result.contains("does not declare native function `gemm`"), "{result}");
}

#[test]
fn a_malformed_payload_is_an_error_value() {
    let result = call_result(r#"["raw", "gemm", "not messagepack at all"]"#, r#"["gemm"]"#);
    assert!(result.starts_with("error: native call failed: malformed payload for `gemm`"), "{result}");
    let result =
        call_result(r#"["call", "gemm", "{\"m\": 2, \"n\": 2, \"k\": 2, \"a\": [1.0], \"b\": [1.0]}"]"#, r#"["gemm"]"#);
    assert!(result.contains("A has 1 values"), "{result}");
}

#[test]
fn a_file_reference_outside_the_step_is_refused() {
    for path in ["/etc/passwd", "/in/../../../../etc/passwd", "/out/../in/x", "relative/path"] {
        let result = call_result(&format!(r#"["file-operand", "{path}"]"#), r#"["gemm"]"#);
        assert!(result.contains("outside the step's directories"), "{path}: {result}");
    }
}

#[test]
fn metrics_appear_in_the_summary_and_survive_reuse() {
    let project = Project::new();
    project.manifest(
        "name = \"m\"\n[steps.train]\nmodule = \"sdk-tool.wasm\"\nargs = [\"metrics\"]\noutputs = { result = \"file\" }\n",
    );
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary.step("train")["metrics"], serde_json::json!({"loss": 0.25, "accuracy": 0.875}));
    let (_, again) = project.run_json(&[]);
    assert_eq!(steps_with(&again, "cached"), ["train"]);
    assert_eq!(again.step("train")["metrics"], summary.step("train")["metrics"]);

    let text = project.weir(&["run", "pipeline.toml"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("accuracy=0.875") && stdout.contains("loss=0.25"), "{stdout}");
}

#[test]
fn the_builtin_matmul_native_step_runs_from_a_manifest() {
    let (project, a, b) = with_matrices();
    project.manifest(&format!(
        "name = \"native\"\n[inputs]\na = \"data/a.f32\"\nb = \"data/b.f32\"\n\
         [steps.mul]\nnative = \"matmul\"\ninputs = {{ a = \"inputs.a\", b = \"inputs.b\" }}\n\
         params = {{ m = {M}, n = {N}, k = {K} }}\noutputs = {{ c = \"file\" }}\n"
    ));
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    let c = f32_values(&project.cat_bytes(output_digest(&summary, "mul", "c")));
    assert_close(&c, &reference_matmul(M, N, K, &a, &b));
    let (_, again) = project.run_json(&[]);
    assert_eq!(steps_with(&again, "cached"), ["mul"]);
}

#[test]
fn unknown_natives_in_a_manifest_are_validation_errors() {
    let project = Project::new();
    project.manifest("name = \"n\"\n[steps.s]\nnative = \"nope\"\n");
    let output = project.weir(&["run", "pipeline.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("step `s`, field `native`: no native step named `nope`"), "{stderr}");

    project.manifest("name = \"n\"\n[steps.s]\nmodule = \"sdk-tool.wasm\"\nnatives = [\"gemm\", \"nope\"]\n");
    let output = project.weir(&["run", "pipeline.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("field `natives`: no native function named `nope`"), "{stderr}");

    project.manifest("name = \"n\"\n[steps.s]\nmodule = \"sdk-tool.wasm\"\nnative = \"matmul\"\n");
    let output = project.weir(&["run", "pipeline.toml"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("exactly one of `module`"));
}

#[test]
fn a_gpu_request_without_gpus_runs_on_the_cpu_and_says_so() {
    let (project, a, b) = with_matrices();
    project.manifest(&matrix_step(
        "args = [\"gemm\"]\nnatives = [\"gemm\"]\nresources = { gpu = 1 }\noutputs = { c = \"file\", result = \"file\" }",
    ));
    let (code, summary) = project.run_json(&["--gpus", "0"]);
    assert_eq!(code, 0, "{summary}");
    let warnings = summary.step("mul")["warnings"].to_string();
    assert!(warnings.contains("no GPU slots; ran on the CPU"), "{warnings}");
    let c = f32_values(&project.cat_bytes(output_digest(&summary, "mul", "c")));
    assert_close(&c, &reference_matmul(M, N, K, &a, &b));

    let output = project.weir(&["run", "pipeline.toml", "--gpus", "1", "--json", "--no-cache"]);
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let warnings = summary.step("mul")["warnings"].to_string();
    assert!(warnings.contains("no GPU was detected"), "{warnings}");
}
