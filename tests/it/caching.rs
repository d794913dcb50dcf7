//! Memoization: which steps run and which are reused, across runs.

use weir_tests::{Project, RunDocument, output_digest, steps_with};

/// prep -> upper -> join, with `shout` as an independent branch into join.
pub(crate) fn chain(project: &Project) {
    project.write("data/text.txt", "hello world\n");
    project.manifest(
        r#"
name = "chain"

[params]
word = "hello"
loud = "yes"

[inputs]
text = "data/text.txt"

[steps.prep]
module = "tool-p1.wasm"
args = ["copy", "text", "copied"]
inputs = { text = "inputs.text" }
outputs = { copied = "file" }

[steps.upper]
module = "tool-p2.wasm"
args = ["upper", "${params.word}"]
inputs = { text = "prep.copied" }
outputs = { result = "file" }

[steps.shout]
module = "tool-p1.wasm"
args = ["params"]
params = { loud = "${params.loud}" }
outputs = { result = "file" }

[steps.join]
module = "tool-p1.wasm"
args = ["concat"]
inputs = { a = "upper.result", b = "shout.result" }
outputs = { result = "file" }
"#,
    );
}

#[test]
fn first_run_executes_everything_and_rerun_reuses_everything() {
    let project = Project::new();
    chain(&project);
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    assert_eq!(first["status"], "succeeded");
    assert_eq!(steps_with(&first, "ran"), ["join", "prep", "shout", "upper"]);
    let joined = project.cat(output_digest(&first, "join", "result"));
    assert!(joined.starts_with("HELLO WORLD\n[hello]"), "{joined}");

    let (code, second) = project.run_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(steps_with(&second, "cached"), ["join", "prep", "shout", "upper"]);
    assert_eq!(steps_with(&second, "ran"), Vec::<String>::new());
    for step in ["prep", "upper", "shout", "join"] {
        assert_eq!(first.step(step)["outputs"], second.step(step)["outputs"], "{step}");
    }
    assert_ne!(first["id"], second["id"]);
}

#[test]
fn changing_a_parameter_reruns_only_its_users_and_their_dependents() {
    let project = Project::new();
    chain(&project);
    assert_eq!(project.run_json(&[]).0, 0);

    let (code, summary) = project.run_json(&["--param", "word=bye"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(steps_with(&summary, "ran"), ["join", "upper"]);
    assert_eq!(steps_with(&summary, "cached"), ["prep", "shout"]);

    let (_, summary) = project.run_json(&["--param", "loud=no"]);
    assert_eq!(steps_with(&summary, "ran"), ["join", "shout"]);
    assert_eq!(steps_with(&summary, "cached"), ["prep", "upper"]);

    // Back to the defaults: every result is still in the cache.
    let (_, summary) = project.run_json(&[]);
    assert_eq!(steps_with(&summary, "cached").len(), 4);
}

#[test]
fn changing_an_input_file_reruns_its_readers() {
    let project = Project::new();
    chain(&project);
    assert_eq!(project.run_json(&[]).0, 0);
    project.write("data/text.txt", "other text\n");
    let (_, summary) = project.run_json(&[]);
    assert_eq!(steps_with(&summary, "ran"), ["join", "prep", "upper"]);
    assert_eq!(steps_with(&summary, "cached"), ["shout"]);
}

#[test]
fn identical_upstream_output_cuts_off_downstream_reruns() {
    let project = Project::new();
    chain(&project);
    assert_eq!(project.run_json(&[]).0, 0);
    // `prep` must execute again, but it produces the same bytes, so `upper`
    // and `join` keep their keys.
    let (_, summary) = project.run_json(&["--rerun", "prep"]);
    assert_eq!(steps_with(&summary, "ran"), ["prep"]);
    assert_eq!(steps_with(&summary, "cached"), ["join", "shout", "upper"]);
}

#[test]
fn no_cache_executes_every_step() {
    let project = Project::new();
    chain(&project);
    assert_eq!(project.run_json(&[]).0, 0);
    let (_, summary) = project.run_json(&["--no-cache"]);
    assert_eq!(steps_with(&summary, "ran").len(), 4);
}

#[test]
fn steps_that_opt_out_of_reuse_always_run() {
    let project = Project::new();
    project.manifest(
        r#"
name = "effects"
[steps.publish]
module = "tool-p1.wasm"
args = ["args", "x"]
outputs = { result = "file" }
reuse = false

[steps.pure]
module = "tool-p1.wasm"
args = ["args", "y"]
outputs = { result = "file" }
"#,
    );
    assert_eq!(project.run_json(&[]).0, 0);
    let (_, summary) = project.run_json(&[]);
    assert_eq!(steps_with(&summary, "ran"), ["publish"]);
    assert_eq!(steps_with(&summary, "cached"), ["pure"]);
}

#[test]
fn a_different_module_is_a_different_key() {
    let project = Project::new();
    let manifest = |module: &str| {
        format!(
            "name = \"m\"\n[steps.s]\nmodule = \"{module}\"\nargs = [\"args\", \"same\"]\noutputs = {{ result = \"file\" }}\n"
        )
    };
    project.manifest(&manifest("tool-p1.wasm"));
    let (_, first) = project.run_json(&[]);
    project.manifest(&manifest("tool-p2.wasm"));
    let (_, second) = project.run_json(&[]);
    assert_eq!(steps_with(&second, "ran"), ["s"]);
    assert_ne!(first.step("s")["cache_key"], second.step("s")["cache_key"]);
    // Same bytes out, so the output digest is shared.
    assert_eq!(output_digest(&first, "s", "result"), output_digest(&second, "s", "result"));
}

#[test]
fn rerun_of_a_sub_pipeline_reruns_all_its_steps() {
    let project = Project::new();
    project.write(
        "feat.toml",
        "name = \"feat\"\n[steps.one]\nmodule = \"tool-p1.wasm\"\nargs = [\"args\", \"1\"]\noutputs = { result = \"file\" }\n\
         [steps.two]\nmodule = \"tool-p1.wasm\"\nargs = [\"args\", \"2\"]\noutputs = { result = \"file\" }\n",
    );
    project.manifest(
        "name = \"outer\"\n[steps.feat]\npipeline = \"feat.toml\"\n[steps.other]\nmodule = \"tool-p1.wasm\"\nargs = [\"args\", \"3\"]\noutputs = { result = \"file\" }\n",
    );
    let (code, _) = project.run_json(&[]);
    assert_eq!(code, 0);
    let (code, again) = project.run_json(&["--rerun", "feat"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(steps_with(&again, "ran"), ["feat/one", "feat/two"]);
    assert_eq!(steps_with(&again, "cached"), ["other"]);

    let output = project.weir(&["run", "pipeline.toml", "--rerun", "fea"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{}\n{stderr}", output.status);
    assert!(stderr.contains("(steps: feat, feat/one, feat/two, other)"), "{stderr}");
}

/// `log` writes its arguments; `every` is declared as not affecting the result.
const IGNORING: &str = r#"
name = "ignoring"
[params]
word = "hello"
every = 10
[steps.log]
module = "tool-p1.wasm"
args = ["args", "${params.word}", "--every=${params.every}"]
params = { every = "${params.every}", note = "kept" }
ignored_params = ["every"]
outputs = { result = "file" }
"#;

#[test]
fn an_ignored_parameter_does_not_make_a_step_run_again() {
    let project = Project::new();
    project.manifest(IGNORING);
    let (_, first) = project.run_json(&[]);
    assert_eq!(steps_with(&first, "ran"), ["log"]);
    assert_eq!(project.cat(output_digest(&first, "log", "result")), "hello\n--every=10");

    let (_, second) = project.run_json(&["--param", "every=20"]);
    assert_eq!(steps_with(&second, "cached"), ["log"], "`every` is in neither the key's params nor its args");
    let (_, third) = project.run_json(&["--param", "word=bye", "--param", "every=30"]);
    assert_eq!(steps_with(&third, "ran"), ["log"], "other parameters still count");
    assert_eq!(project.cat(output_digest(&third, "log", "result")), "bye\n--every=30", "the guest sees its value");

    let explained = project.weir(&["explain", third["id"].as_str().unwrap(), "log"]);
    let explained = String::from_utf8_lossy(&explained.stdout);
    assert!(explained.contains("ignored: every (ignored_params: not in its cache key)"), "{explained}");
    assert!(explained.contains("param word: hello → bye"), "{explained}");
    assert!(!explained.contains("param every"), "an ignored parameter is not a difference: {explained}");

    project.manifest(&IGNORING.replace(r#"ignored_params = ["every"]"#, r#"ignored_params = ["evry"]"#));
    let output = project.weir(&["run", "pipeline.toml"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ignored_params") && stderr.contains("evry"), "{stderr}");
}

#[test]
fn a_cached_result_older_than_its_reuse_age_runs_again() {
    let project = Project::new();
    let manifest = |reuse: &str| {
        project.manifest(&format!(
            "name = \"aging\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"args\", \"x\"]\noutputs = {{ result = \"file\" }}\nreuse = {reuse}\n"
        ))
    };
    // Eight seconds: a run of a debug build on a loaded machine takes a few.
    manifest("\"8s\"");
    let (_, first) = project.run_json(&[]);
    assert_eq!(steps_with(&first, "ran"), ["s"]);
    let (_, young) = project.run_json(&[]);
    assert_eq!(steps_with(&young, "cached"), ["s"], "younger than eight seconds: reused");
    std::thread::sleep(std::time::Duration::from_millis(8200));
    let (_, old) = project.run_json(&[]);
    assert_eq!(steps_with(&old, "ran"), ["s"], "older than eight seconds: executed again");
    let (_, renewed) = project.run_json(&[]);
    assert_eq!(steps_with(&renewed, "cached"), ["s"], "the identical re-execution renewed the result's age");
    assert_eq!(renewed.step("s")["outputs"], first.step("s")["outputs"]);
    let explained = project.weir(&["explain", old["id"].as_str().unwrap(), "s"]);
    let explained = String::from_utf8_lossy(&explained.stdout);
    assert!(explained.contains("expiry (reuse = \"8s\"): its cached result, of run"), "{explained}");

    manifest("5");
    let output = project.weir(&["run", "pipeline.toml"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("reuse") && stderr.contains("a maximum age such as \"7d\""), "{stderr}");
}

#[test]
fn slurm_options_are_not_part_of_a_key() {
    let project = Project::new();
    chain(&project);
    let (_, first) = project.run_json(&[]);
    assert_eq!(steps_with(&first, "ran").len(), 4, "{first}");
    let plain = std::fs::read_to_string(project.path().join("pipeline.toml")).unwrap();
    let placed = plain
        .replace("name = \"chain\"\n", "name = \"chain\"\n[executor.slurm]\npartition = \"cpu\"\n")
        .replace("outputs = { copied = \"file\" }\n", "outputs = { copied = \"file\" }\nslurm = { qos = \"high\" }\n");
    assert_ne!(placed, plain);
    project.manifest(&placed);
    let (code, second) = project.run_json(&[]);
    assert_eq!(code, 0, "{second}");
    assert_eq!(steps_with(&second, "cached").len(), 4, "where a step runs does not change its result: {second}");
}

/// The test tool with a one-byte custom section holding `tag`: builds of one
/// size whose bytes differ.
fn tagged_tool(project: &Project, tag: u8) -> Vec<u8> {
    let mut bytes = std::fs::read(project.path().join("tool-p1.wasm")).unwrap();
    bytes.extend([0, 3, 1, b'v', tag]);
    bytes
}

#[test]
fn a_module_rewritten_with_its_size_and_modification_time_is_hashed_again() {
    let project = Project::upper("tagged.wasm");
    let module = project.path().join("tagged.wasm");
    weir_tests::write_settled(&module, tagged_tool(&project, 1));
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    let (_, reused) = project.run_json(&[]);
    assert_eq!(steps_with(&reused, "cached"), ["upper"], "known by its recorded stamp: {reused}");

    // Rewritten in place, same size, its modification time put back: only
    // the status change time tells.
    let modified = std::fs::metadata(&module).unwrap().modified().unwrap();
    std::fs::write(&module, tagged_tool(&project, 2)).unwrap();
    std::fs::File::options().write(true).open(&module).unwrap().set_modified(modified).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (code, rewritten) = project.run_json(&[]);
    assert_eq!(code, 0, "{rewritten}");
    assert_eq!(steps_with(&rewritten, "ran"), ["upper"], "{rewritten}");
    assert_ne!(first.step("upper")["cache_key"], rewritten.step("upper")["cache_key"]);
    let (_, again) = project.run_json(&[]);
    assert_eq!(steps_with(&again, "cached"), ["upper"], "{again}");
}

#[test]
fn a_run_that_executes_no_step_does_not_load_compiled_code() {
    let project = Project::upper("tool-p1.wasm");
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    let compiled = weir_tests::compiled_code(&project.workspace());
    let [code_file] = compiled.as_slice() else { panic!("one module, one compiled file: {compiled:?}") };
    std::fs::write(code_file, "not code").unwrap();

    let (code, reused) = project.run_json(&[]);
    assert_eq!(code, 0, "{reused}");
    assert_eq!(steps_with(&reused, "cached"), ["upper"], "{reused}");
    assert_eq!(std::fs::read(code_file).unwrap(), b"not code", "a run that executes nothing never reads the code");

    // The step executing loads the code, finds it damaged and compiles the
    // module again.
    let (code, executed) = project.run_json(&["--no-cache"]);
    assert_eq!(code, 0, "{executed}");
    assert_eq!(project.cat(output_digest(&executed, "upper", "result")), "HELLO");
    assert_ne!(std::fs::read(code_file).unwrap(), b"not code", "the damaged code was replaced");
}

/// The cache entry files of `project`'s workspace (not its reuse indexes).
fn entry_files(project: &Project) -> Vec<std::path::PathBuf> {
    let cache = project.workspace().join("cache");
    weir_tests::files_under(&cache).into_iter().filter(|path| !path.starts_with(cache.join("reuse"))).collect()
}

#[test]
fn a_reused_run_takes_its_entries_from_the_pipelines_reuse_index() {
    let project = Project::new();
    chain(&project);
    let (_, first) = project.run_json(&[]);
    assert_eq!(steps_with(&first, "ran").len(), 4, "{first}");
    let (_, second) = project.run_json(&[]);
    assert_eq!(steps_with(&second, "cached").len(), 4, "{second}");
    let index = project.workspace().join("cache/reuse");
    assert!(weir_tests::files_under(&index).len() >= 2, "the reused run wrote its index and the token");

    // With every entry file unreadable, the index still names each result.
    let entries = entry_files(&project);
    assert_eq!(entries.len(), 4);
    for entry in &entries {
        std::fs::write(entry, b"not an entry").unwrap();
    }
    let (code, third) = project.run_json(&[]);
    assert_eq!(code, 0, "{third}");
    assert_eq!(steps_with(&third, "cached"), ["join", "prep", "shout", "upper"]);
    for step in ["prep", "upper", "shout", "join"] {
        assert_eq!(third.step(step)["outputs"], first.step(step)["outputs"], "{step}");
    }

    // Without it, the damaged entries count as absent.
    std::fs::remove_dir_all(&index).unwrap();
    let (code, fourth) = project.run_json(&[]);
    assert_eq!(code, 0, "{fourth}");
    assert_eq!(steps_with(&fourth, "ran"), ["join", "prep", "shout", "upper"]);
}

#[test]
fn a_replaced_entry_is_never_reused_from_another_pipelines_index() {
    let project = Project::new();
    let step = "[steps.roll]\nmodule = \"tool-p1.wasm\"\nargs = [\"entropy\"]\noutputs = { result = \"file\" }\n";
    project.write("a.toml", format!("name = \"a\"\n{step}"));
    project.write("b.toml", format!("name = \"b\"\n{step}"));
    let run = |manifest: &str, extra: &[&str]| {
        let mut args = vec!["run", manifest, "--json"];
        args.extend_from_slice(extra);
        let (code, summary) = project.weir_json(&args);
        assert_eq!(code, 0, "{summary}");
        output_digest(&summary, "roll", "result").to_owned()
    };
    let rolled = run("a.toml", &[]);
    // Each pipeline's second run keeps an index holding that result.
    for manifest in ["a.toml", "b.toml", "a.toml", "b.toml"] {
        assert_eq!(run(manifest, &[]), rolled, "{manifest} reuses the one result");
    }
    let rerolled = run("a.toml", &["--no-cache"]);
    assert_ne!(rerolled, rolled, "the step is not deterministic");
    assert_eq!(run("b.toml", &[]), rerolled, "b's index held the replaced entry: it must not be trusted");
    assert_eq!(run("a.toml", &[]), rerolled);
    assert_eq!(run("b.toml", &[]), rerolled);
}

#[test]
fn a_damaged_reuse_index_or_token_costs_only_the_reads_it_saves() {
    let project = Project::new();
    chain(&project);
    let (_, first) = project.run_json(&[]);
    let reuse = project.workspace().join("cache/reuse");
    for damaged in ["index", "token", "index", "token"] {
        project.run_json(&[]);
        let file = weir_tests::files_under(&reuse)
            .into_iter()
            .find(|path| (path.file_name().unwrap() == "token") == (damaged == "token"))
            .unwrap_or_else(|| panic!("no {damaged} under {}", reuse.display()));
        std::fs::write(&file, b"\x93garbage").unwrap();
        let (code, again) = project.run_json(&[]);
        assert_eq!(code, 0, "{again}");
        assert_eq!(steps_with(&again, "cached"), ["join", "prep", "shout", "upper"], "a damaged {damaged}");
        for step in ["prep", "upper", "shout", "join"] {
            assert_eq!(again.step(step)["outputs"], first.step(step)["outputs"], "{step}, a damaged {damaged}");
        }
        assert_ne!(std::fs::read(&file).unwrap(), b"\x93garbage", "the damaged {damaged} was written again");
    }
}
