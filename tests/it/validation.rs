//! Invalid pipelines and options are rejected before anything runs, with an
//! error naming the file, the step and the field.

use weir_tests::Project;

const GOOD_STEP: &str = "[steps.a]\nmodule = \"tool-p1.wasm\"\nargs = [\"args\"]\noutputs = { result = \"file\" }\n";

/// Runs the manifest and returns stderr, asserting exit code 2 and that no run happened.
fn rejected(toml: &str, extra: &[&str]) -> String {
    let project = Project::new();
    project.write("not-wasm.wasm", "#!/bin/sh\necho hi\n");
    project.write("bad-body.wasm", b"\0asm\x01\0\0\0\xff\xff\xff");
    project.manifest(toml);
    let mut args = vec!["run", "pipeline.toml"];
    args.extend_from_slice(extra);
    let output = project.weir(&args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("pipeline.toml"), "the error names the file: {stderr}");
    let runs = project.workspace().join("runs");
    let ran = runs.exists() && std::fs::read_dir(&runs).unwrap().next().is_some();
    assert!(!ran, "nothing may run: {stderr}");
    stderr
}

fn assert_mentions(stderr: &str, parts: &[&str]) {
    for part in parts {
        assert!(stderr.contains(part), "expected {part:?} in: {stderr}");
    }
}

#[test]
fn a_cycle_lists_its_steps() {
    let stderr = rejected(
        "name = \"c\"\n\
         [steps.a]\nmodule = \"tool-p1.wasm\"\ninputs = { x = \"c.out\" }\noutputs = { out = \"file\" }\n\
         [steps.b]\nmodule = \"tool-p1.wasm\"\ninputs = { x = \"a.out\" }\noutputs = { out = \"file\" }\n\
         [steps.c]\nmodule = \"tool-p1.wasm\"\ninputs = { x = \"b.out\" }\noutputs = { out = \"file\" }\n\
         [steps.d]\nmodule = \"tool-p1.wasm\"\ninputs = { x = \"c.out\" }\noutputs = { out = \"file\" }\n",
        &[],
    );
    assert_mentions(&stderr, &["the steps form a cycle: ", "field `inputs`"]);
    let cycle = stderr.split("cycle: ").nth(1).unwrap().lines().next().unwrap();
    let mut steps: Vec<&str> = cycle.split(" -> ").collect();
    assert_eq!(steps.len(), 4, "{cycle}");
    assert_eq!(steps.first(), steps.last());
    steps.pop();
    steps.sort();
    assert_eq!(steps, ["a", "b", "c"], "d depends on the cycle but is not in it");
}

#[test]
fn references_to_missing_steps_outputs_and_inputs() {
    let stderr = rejected("name = \"r\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\ninputs = { x = \"ghost.out\" }\n", &[]);
    assert_mentions(&stderr, &["step `s`", "field `inputs.x`", "no step named `ghost`"]);

    let toml =
        format!("name = \"r\"\n{GOOD_STEP}[steps.s]\nmodule = \"tool-p1.wasm\"\ninputs = {{ x = \"a.nope\" }}\n");
    let stderr = rejected(&toml, &[]);
    assert_mentions(&stderr, &["step `s`", "field `inputs.x`", "step `a` has no output named `nope`"]);

    let stderr =
        rejected("name = \"r\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\ninputs = { x = \"inputs.nope\" }\n", &[]);
    assert_mentions(&stderr, &["step `s`", "field `inputs.x`", "no pipeline input named `nope`"]);

    let stderr = rejected("name = \"r\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\ninputs = { x = \"justaname\" }\n", &[]);
    assert_mentions(&stderr, &["step `s`", "field `inputs.x`", "bad reference `justaname`"]);
}

#[test]
fn duplicate_and_invalid_names() {
    let toml = format!("name = \"d\"\n{GOOD_STEP}{GOOD_STEP}");
    let stderr = rejected(&toml, &[]);
    assert_mentions(&stderr, &["duplicate key"]);

    let stderr = rejected("name = \"d\"\n[steps.\"has.dot\"]\nmodule = \"tool-p1.wasm\"\n", &[]);
    assert_mentions(&stderr, &["step `has.dot`", "invalid name `has.dot`"]);

    let stderr = rejected("name = \"d\"\n[steps.inputs]\nmodule = \"tool-p1.wasm\"\n", &[]);
    assert_mentions(&stderr, &["invalid name `inputs`", "reserved"]);
}

#[test]
fn missing_and_invalid_modules() {
    let stderr = rejected("name = \"m\"\n[steps.s]\nmodule = \"nowhere.wasm\"\n", &[]);
    assert_mentions(&stderr, &["step `s`", "field `module`", "nowhere.wasm not found"]);

    let stderr = rejected("name = \"m\"\n[steps.s]\nmodule = \"not-wasm.wasm\"\n", &[]);
    assert_mentions(&stderr, &["step `s`", "field `module`", "not a WebAssembly binary"]);

    let stderr = rejected("name = \"m\"\n[steps.s]\nmodule = \"bad-body.wasm\"\n", &[]);
    assert_mentions(&stderr, &["step `s`", "field `module`", "not valid WebAssembly"]);
}

/// A core module that exports `_start` and imports `env.missing`, which no
/// host provides: it compiles, and cannot link.
fn unlinkable_module() -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend([0x01, 0x04, 0x01, 0x60, 0x00, 0x00]); // type 0: () -> ()
    module.extend([0x02, 0x0f, 0x01, 0x03]); // one import, from module "env"
    module.extend(b"env");
    module.push(0x07);
    module.extend(b"missing");
    module.extend([0x00, 0x00]); // a function of type 0
    module.extend([0x03, 0x02, 0x01, 0x00]); // one function of type 0
    module.extend([0x07, 0x0a, 0x01, 0x06]);
    module.extend(b"_start");
    module.extend([0x00, 0x01]); // export function 1 as `_start`
    module.extend([0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b]); // its body: nothing
    module
}

#[test]
fn a_module_that_cannot_link_is_refused_on_every_run_and_leaves_no_compiled_code() {
    let project = Project::new();
    project.write("unlinkable.wasm", unlinkable_module());
    project.manifest("name = \"m\"\n[steps.s]\nmodule = \"unlinkable.wasm\"\n");
    // Compiled code on disk says its module is a valid step, so a run may
    // plan with it unloaded: code that failed to link must not be kept.
    for attempt in ["first", "second"] {
        let output = project.weir(&["run", "pipeline.toml"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{attempt} run: {stderr}");
        assert_mentions(&stderr, &["step `s`", "field `module`", "cannot link it", "missing"]);
        let compiled = weir_tests::compiled_code(&project.workspace());
        assert!(compiled.is_empty(), "{compiled:?}");
    }
}

#[test]
fn bad_sizes_and_durations() {
    let stderr = rejected("name = \"l\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nlimits = { memory = \"lots\" }\n", &[]);
    assert_mentions(&stderr, &["step `s`", "field `limits.memory`", "`lots` is not a size"]);

    let stderr =
        rejected("name = \"l\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nlimits = { timeout = \"5 fortnights\" }\n", &[]);
    assert_mentions(&stderr, &["step `s`", "field `limits.timeout`", "unknown unit `fortnights`"]);
}

#[test]
fn unknown_keys_are_errors() {
    let stderr = rejected("name = \"k\"\n[steps.s]\nmodul = \"tool-p1.wasm\"\n", &[]);
    assert_mentions(&stderr, &["step `s`", "unknown field `modul`"]);

    let stderr = rejected("name = \"k\"\nversion = 2\n", &[]);
    assert_mentions(&stderr, &["unknown field `version`"]);

    let stderr = rejected("name = \"k\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nlimits = { cpu = 2 }\n", &[]);
    assert_mentions(&stderr, &["step `s`", "unknown field `cpu`"]);
}

#[test]
fn parameters_must_exist_and_fit_their_type() {
    let toml = format!("name = \"p\"\n[params]\nepochs = 3\n{GOOD_STEP}");
    let stderr = rejected(&toml, &["--param", "epoch=4"]);
    assert_mentions(&stderr, &["field `--param epoch`", "no pipeline parameter named `epoch`", "known: epochs"]);

    let stderr = rejected(&toml, &["--param", "epochs=many"]);
    assert_mentions(&stderr, &["bad value for parameter `epochs`", "`many` is not an integer"]);

    let stderr = rejected("name = \"p\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"${params.ghost}\"]\n", &[]);
    assert_mentions(&stderr, &["step `s`", "field `args[0]`", "no pipeline parameter named `ghost`"]);

    let stderr =
        rejected("name = \"p\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nparams = { x = \"${params.ghost}\" }\n", &[]);
    assert_mentions(&stderr, &["step `s`", "field `params.x`", "no pipeline parameter named `ghost`"]);
}

#[test]
fn missing_inputs_and_unknown_rerun_steps() {
    let stderr = rejected("name = \"i\"\n[inputs]\ndata = \"data/absent.csv\"\n", &[]);
    assert_mentions(&stderr, &["field `inputs.data`", "absent.csv not found"]);

    let toml = format!("name = \"i\"\n{GOOD_STEP}");
    let stderr = rejected(&toml, &["--rerun", "nope"]);
    assert_mentions(&stderr, &["`--rerun nope`: no such step in the pipeline (steps: a)"]);
}

#[test]
fn a_missing_manifest_is_a_clear_error() {
    let project = Project::new();
    let output = project.weir(&["run", "absent.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("absent.toml: cannot read the manifest"), "{stderr}");
}

#[test]
fn a_sub_pipeline_that_is_not_a_regular_file_is_refused() {
    let stderr = rejected("name = \"dev\"\n[steps.inner]\npipeline = \"/dev/zero\"\n", &[]);
    assert_mentions(&stderr, &["/dev/zero", "not a regular file"]);
}

#[test]
fn errors_in_a_sub_pipeline_name_its_file_step_and_field() {
    let project = Project::new();
    let run = |inner: &str| {
        project.write("sub/inner.toml", inner);
        project.manifest("name = \"outer\"\n[steps.feat]\npipeline = \"sub/inner.toml\"\n");
        let output = project.weir(&["run", "pipeline.toml"]);
        assert_eq!(output.status.code(), Some(2));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let missing = run("name = \"inner\"\n[steps.a]\nmodule = \"missing.wasm\"\n");
    assert_mentions(&missing, &["sub/inner.toml, step `feat/a`, field `module`", "missing.wasm not found"]);
    let unknown = run("name = \"inner\"\n[steps.b]\nmodule = \"../tool-p1.wasm\"\nargs = [\"${params.missing}\"]\n");
    assert_mentions(
        &unknown,
        &["sub/inner.toml, step `feat/b`, field `args[0]`", "no pipeline parameter named `missing`"],
    );
    let limit = run("name = \"inner\"\n[steps.c]\nmodule = \"../tool-p1.wasm\"\nlimits = { memory = \"lots\" }\n");
    assert_mentions(&limit, &["sub/inner.toml, step `feat/c`, field `limits.memory`"]);
}

#[test]
fn misspelled_keys_name_their_field() {
    let stderr = rejected(&format!("name = \"x\"\n{GOOD_STEP}limits = {{ memroy = \"1MiB\" }}\n"), &[]);
    assert_mentions(&stderr, &["step `a`, field `limits.memroy`", "unknown field `memroy`"]);
    let stderr = rejected(&format!("name = \"x\"\n{GOOD_STEP}modul = 3\n"), &[]);
    assert_mentions(&stderr, &["step `a`, field `modul`", "unknown field `modul`"]);
    let stderr = rejected(&format!("name = \"x\"\n{GOOD_STEP}resources = {{ gpus = 1 }}\n"), &[]);
    assert_mentions(&stderr, &["step `a`, field `resources.gpus`"]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let stderr = rejected(
        "name = \"x\"\n[inputs]\na = \"nope.csv\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"${params.missing}\"]\n\
         [steps.t]\nmodule = \"missing.wasm\"\n",
        &[],
    );
    let lines: Vec<&str> = stderr.lines().filter(|line| line.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert_mentions(&stderr, &["field `inputs.a`", "step `s`, field `args[0]`", "step `t`, field `module`"]);

    let project = Project::new();
    project.manifest(
        "name = \"x\"\n[steps.w]\nmodule = \"tool-p1.wasm\"\nlimits = { stack = \"1GiB\" }\n[steps.n]\nnative = \"nope\"\n\
         [steps.m]\nmodule = \"tool-p1.wasm\"\nnatives = [\"nothere\"]\n",
    );
    let output = project.weir(&["run", "pipeline.toml", "--json"]);
    let refused: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let fields: Vec<&str> =
        refused["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["natives", "native", "limits.stack"], "in the pipeline's order of steps: {refused}");
}

#[test]
fn a_step_names_its_code_exactly_once() {
    let stderr = rejected("name = \"k\"\n[steps.s]\nargs = [\"x\"]\n", &[]);
    assert_mentions(&stderr, &["step `s`", "exactly one of `module`", "`crate`", "`native`", "`pipeline`"]);

    let stderr = rejected("name = \"k\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nbin = \"tool\"\n", &[]);
    assert_mentions(&stderr, &["step `s`", "field `bin`", "`bin` belongs with `crate`"]);

    let stderr = rejected("name = \"k\"\n[steps.s]\nmodule = 3\n", &[]);
    assert_mentions(&stderr, &["step `s`", "field `module`", "must be a string"]);

    let sub = "name = \"inner\"\n[steps.t]\nmodule = \"tool-p1.wasm\"\n";
    let project = Project::new();
    project.write("inner.toml", sub);
    project.manifest("name = \"k\"\n[steps.s]\npipeline = \"inner.toml\"\ncrate = \"step\"\n");
    let output = project.weir(&["run", "pipeline.toml"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_mentions(&stderr, &["step `s`", "a `pipeline` step takes only `inputs` and `params`"]);
}

#[test]
fn slurm_options_are_checked_where_they_are_written() {
    let stderr = rejected(&format!("name = \"x\"\n[executor.slurm]\npartition = \"\"\n{GOOD_STEP}"), &[]);
    assert_mentions(&stderr, &["field `executor.slurm.partition`", "is empty"]);
    let stderr = rejected(&format!("name = \"x\"\n[executor.slurm]\nqueue = \"gpu\"\n{GOOD_STEP}"), &[]);
    assert_mentions(&stderr, &["field `executor.slurm.queue`", "unknown field `queue`"]);
    let stderr = rejected(&format!("name = \"x\"\n{GOOD_STEP}slurm = {{ qos = \"hi gh\" }}\n"), &[]);
    assert_mentions(&stderr, &["step `a`, field `slurm.qos`", "`hi gh`", "whitespace"]);
    // Which executor runs a pipeline is the workspace's choice, not the manifest's.
    let stderr = rejected(&format!("name = \"x\"\n[executor]\nkind = \"slurm\"\n{GOOD_STEP}"), &[]);
    assert_mentions(&stderr, &["unknown field `kind`"]);
}
