//! `weir:step/tensors`: the typed GEMM on values, engine-kept tensors and
//! files, and the lifetime of tensor handles. Every misuse is an error
//! value the guest sees, never a trap.

use weir_tests::{Project, RunDocument, f32_bytes, f32_values, output_digest, reference_matmul};

const M: usize = 6;
const N: usize = 4;
const K: usize = 9;

fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols).flat_map(|col| (0..rows).map(move |row| values[row * cols + col])).collect()
}

#[test]
fn products_of_values_tensors_and_files_match_the_definition_for_every_transpose() {
    let a: Vec<f32> = (0..M * K).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..K * N).map(|i| (i as f32 * 0.11).cos() - 0.5).collect();
    let want = reference_matmul(M, N, K, &a, &b);
    for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
        let project = Project::new();
        // A transposed operand is stored transposed: op(A) is still A.
        let stored_a = if trans_a { transpose(&a, M, K) } else { a.clone() };
        let stored_b = if trans_b { transpose(&b, K, N) } else { b.clone() };
        project.write("data/a.f32", f32_bytes(&stored_a));
        project.write("data/b.f32", f32_bytes(&stored_b));
        project.manifest(&format!(
            "name = \"t\"\n[inputs]\na = \"data/a.f32\"\nb = \"data/b.f32\"\n\
             [steps.mul]\nmodule = \"sdk-tool.wasm\"\nargs = [\"tensors\"]\nnatives = [\"gemm\"]\n\
             inputs = {{ a = \"inputs.a\", b = \"inputs.b\" }}\n\
             params = {{ m = {M}, n = {N}, k = {K}, trans_a = {trans_a}, trans_b = {trans_b} }}\n\
             outputs = {{ c_values = \"file\", c_tensors = \"file\", c_mixed = \"file\", c_file = \"file\", result = \"file\" }}\n"
        ));
        let (code, summary) = project.run_json(&[]);
        assert_eq!(code, 0, "{summary}");
        assert_eq!(project.cat(output_digest(&summary, "mul", "result")), "ok: four products");
        for output in ["c_values", "c_tensors", "c_mixed", "c_file"] {
            let got = f32_values(&project.cat_bytes(output_digest(&summary, "mul", output)));
            assert_eq!(got.len(), want.len(), "{output}");
            for (x, y) in got.iter().zip(&want) {
                assert!((x - y).abs() < 1e-4, "{output} (trans_a {trans_a}, trans_b {trans_b}): {x} vs {y}");
            }
        }
        assert_eq!(summary.step("mul")["native_failures"], 0, "{summary}");
    }
}

#[test]
fn handles_are_valid_only_in_their_own_step_and_misuse_is_an_error_value() {
    let project = Project::new();
    project.manifest(
        "name = \"h\"\n\
         [steps.first]\nmodule = \"sdk-tool.wasm\"\nargs = [\"tensor-handle\"]\noutputs = { result = \"file\" }\n\
         [steps.second]\nmodule = \"sdk-tool.wasm\"\nargs = [\"tensor-misuse\"]\nnatives = [\"gemm\"]\n\
         inputs = { handle = \"first.result\" }\noutputs = { result = \"file\" }\nlimits = { memory = \"64MiB\" }\n",
    );
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    let handle = project.cat(output_digest(&summary, "first", "result"));
    let handle = handle.strip_prefix("ok: ").expect("the first step made a tensor");
    let result = project.cat(output_digest(&summary, "second", "result"));
    let lines: Vec<&str> = result.strip_prefix("ok: ").expect("no trap").lines().collect();
    let unknown = format!("no tensor {handle} in this step");
    let expected = [
        ("foreign download: ", unknown.as_str()),
        ("foreign operand: ", unknown.as_str()),
        ("released download: ", "in this step: a tensor belongs to the step execution that made it"),
        ("bad shape: ", "A has 3 values; m × k = 2 × 2 needs 4"),
        ("bad tensor shape: ", "A has 4 values; m × k = 3 × 3 needs 9"),
        ("outside file: ", "outside the step's directories"),
        ("too big: ", "does not fit: the step's memory limit leaves"),
    ];
    assert_eq!(lines.len(), expected.len(), "{result}");
    for (line, (what, message)) in lines.iter().zip(expected) {
        assert!(line.starts_with(what) && line.contains(message), "expected {what}…{message}…, got {line}");
    }
    // The failures are the step's too: it is not cached, and says why.
    assert_eq!(summary.step("second")["native_failures"], 7, "{summary}");
}

#[test]
fn the_typed_gemm_needs_the_step_to_declare_gemm() {
    let project = Project::new();
    project.write("data/a.f32", f32_bytes(&[1.0; M * K]));
    project.write("data/b.f32", f32_bytes(&[1.0; K * N]));
    project.manifest(&format!(
        "name = \"u\"\n[inputs]\na = \"data/a.f32\"\nb = \"data/b.f32\"\n\
         [steps.mul]\nmodule = \"sdk-tool.wasm\"\nargs = [\"tensors\"]\n\
         inputs = {{ a = \"inputs.a\", b = \"inputs.b\" }}\n\
         params = {{ m = {M}, n = {N}, k = {K}, trans_a = false, trans_b = false }}\n\
         outputs = {{ result = \"file\" }}\n"
    ));
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    let result = project.cat(output_digest(&summary, "mul", "result"));
    assert!(result.contains("step `mul` does not declare native function `gemm`"), "{result}");
}
