//! Isolation and limits: guests see nothing of the host, cannot write their
//! inputs, and are stopped by their time and memory limits.

use weir_tests::{Project, RunDocument, Wasi, output_digest};

/// Runs one step of the tool with `args` and returns what it wrote.
fn probe(wasi: Wasi, args: &[&str], with_input: bool) -> String {
    let project = Project::new();
    project.write("data/secret.txt", "original");
    let args = args.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
    let inputs = if with_input { "inputs = { data = \"inputs.data\" }" } else { "" };
    project.manifest(&format!(
        "name = \"probe\"\n[inputs]\ndata = \"data/secret.txt\"\n[steps.probe]\nmodule = \"{}\"\nargs = [{args}]\n{inputs}\noutputs = {{ result = \"file\" }}\n",
        wasi.tool_name()
    ));
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    let result = project.cat(output_digest(&summary, "probe", "result"));
    assert_eq!(std::fs::read_to_string(project.path().join("data/secret.txt")).unwrap(), "original");
    result
}

#[test]
fn host_paths_are_invisible() {
    for wasi in Wasi::ALL {
        for path in ["/etc/passwd", "/in/../../../../etc/passwd", "../etc/passwd", "/out/../../etc/passwd", "/tmp"] {
            let result = probe(wasi, &["probe-read", path], false);
            assert!(result.starts_with("err:"), "{wasi:?} read {path}: {result}");
        }
    }
}

#[test]
fn host_environment_is_invisible() {
    // `weir` inherits this test's environment (PATH, CARGO_*, …); the guest must see none of it.
    for wasi in Wasi::ALL {
        let result = probe(wasi, &["env"], false);
        assert_eq!(result, "", "{wasi:?} saw environment variables: {result}");
    }
}

#[test]
fn inputs_are_read_only() {
    for wasi in Wasi::ALL {
        let result = probe(wasi, &["probe-write", "/in/data"], true);
        let lines: Vec<&str> = result.lines().collect();
        assert_eq!(lines.len(), 3, "{result}");
        for line in lines {
            assert!(line.contains(":err:"), "{wasi:?}: {result}");
        }
    }
}

#[test]
fn inputs_cannot_be_hard_linked_into_the_output_directory() {
    for wasi in Wasi::ALL {
        let result = probe(wasi, &["probe-link", "/in/data"], true);
        assert!(result.starts_with("err:"), "{wasi:?} linked an input into /out: {result}");
    }
}

#[test]
fn stored_inputs_stay_intact_after_a_write_attempt() {
    let project = Project::new();
    project.write("data/secret.txt", "original");
    project.manifest(
        r#"
name = "intact"
[inputs]
data = "data/secret.txt"
[steps.vandal]
module = "tool-p1.wasm"
args = ["probe-write", "/in/data"]
inputs = { data = "inputs.data" }
outputs = { result = "file" }
[steps.reader]
module = "tool-p2.wasm"
args = ["copy", "data", "result"]
inputs = { data = "inputs.data", after = "vandal.result" }
outputs = { result = "file" }
"#,
    );
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(project.cat(output_digest(&summary, "reader", "result")), "original");
}

/// A step whose inputs and outputs are files runs on the engine's own file
/// system (`runtime/step_fs`), one with a directory output on host
/// directories through wasmtime-wasi: the same guest, making the same calls,
/// must see the same results from each binding of the engine's file system
/// as from wasmtime-wasi's binding of the same preview, errors included.
#[test]
fn the_engines_own_file_system_answers_as_host_directories_do() {
    let project = Project::new();
    project.write("text.txt", "some text\n");
    let step = |name: &str, wasi: Wasi, dir_output: bool| {
        let (args, outputs) = if dir_output { (", \"t\"", ", t = \"dir\"") } else { ("", "") };
        format!(
            "[steps.{name}]\nmodule = \"{}\"\nargs = [\"fs-tour\"{args}]\ninputs = {{ text = \"inputs.text\" }}\noutputs = {{ result = \"file\"{outputs} }}\n",
            wasi.tool_name()
        )
    };
    project.manifest(&format!(
        "name = \"tour\"\n[inputs]\ntext = \"text.txt\"\n{}{}{}{}",
        step("own_p1", Wasi::P1, false),
        step("own_p2", Wasi::P2, false),
        step("host_p1", Wasi::P1, true),
        step("host_p2", Wasi::P2, true)
    ));
    let (code, run) = project.run_json(&[]);
    assert_eq!(code, 0, "{run}");
    // Each binding of the engine's file system answers as wasmtime-wasi's
    // binding of host directories does (the two bindings differ on a few errors).
    let transcript = |step: &str| project.cat(output_digest(&run, step, "result"));
    let differences: Vec<String> = [("own_p1", "host_p1"), ("own_p2", "host_p2")]
        .into_iter()
        .flat_map(|(own, host)| {
            let (mine, theirs) = (transcript(own), transcript(host));
            assert_eq!(mine.lines().count(), theirs.lines().count(), "{own}:\n{mine}\n{host}:\n{theirs}");
            let differing: Vec<String> = mine
                .lines()
                .zip(theirs.lines())
                .filter(|(a, b)| a != b)
                .map(|(a, b)| format!("{own}: `{a}`, {host}: `{b}`"))
                .collect();
            differing
        })
        .collect();
    assert!(differences.is_empty(), "the transcripts differ:\n{}", differences.join("\n"));
    let host = transcript("host_p2");
    for line in [
        "read: hello world",
        "overwrite in place: tail rld position 11",
        "after set_len: heXY",
        "write past the end: [104, 101, 88, 89, 0, 0, 33]",
        "list again: g",
        "read_link: g",
        "input: some text",
        "input stat: file true len 10",
        "input list: .params.json,text",
        "write an input: error PermissionDenied",
        "remove a dir as a file: error IsADirectory",
        "dot-dot out of /out: error PermissionDenied",
        "write an input opened to read: error PermissionDenied",
        "pread a directory: error Uncategorized",
    ] {
        assert!(host.lines().any(|seen| seen == line), "no `{line}` in:\n{host}");
    }
}

/// Which steps get the engine's own file system: a module or component
/// whose inputs and outputs are files; one with a directory output, or a
/// component that may call native functions (whose file operands are host
/// files), gets host directories. The engine's shows itself by `/in`'s
/// inode number, 1 (and to a preview-1 guest by its device number, "weir"
/// in ASCII).
#[test]
fn a_step_of_files_gets_the_engines_own_file_system() {
    let project = Project::new();
    project.manifest(
        "name = \"which\"\n\
         [steps.p1_files]\nmodule = \"tool-p1.wasm\"\nargs = [\"stat-in\"]\noutputs = { result = \"file\" }\n\
         [steps.p2_files]\nmodule = \"tool-p2.wasm\"\nargs = [\"stat-in\"]\noutputs = { result = \"file\" }\n\
         [steps.p1_tree]\nmodule = \"tool-p1.wasm\"\nargs = [\"stat-in\", \"t\"]\noutputs = { result = \"file\", t = \"dir\" }\n\
         [steps.p2_tree]\nmodule = \"tool-p2.wasm\"\nargs = [\"stat-in\", \"t\"]\noutputs = { result = \"file\", t = \"dir\" }\n\
         [steps.p2_natives]\nmodule = \"tool-p2.wasm\"\nargs = [\"stat-in\"]\nnatives = [\"gemm\"]\noutputs = { result = \"file\" }\n\
         [steps.p2_natives_tree]\nmodule = \"tool-p2.wasm\"\nargs = [\"stat-in\", \"t\"]\nnatives = [\"gemm\"]\noutputs = { result = \"file\", t = \"dir\" }\n",
    );
    let (code, run) = project.run_json(&[]);
    assert_eq!(code, 0, "{run}");
    let stat = |step: &str| project.cat(output_digest(&run, step, "result"));
    assert_eq!(stat("p1_files"), "dev 0x77656972 ino 1");
    for own in ["p2_files", "p2_natives"] {
        assert!(stat(own).ends_with(" ino 1"), "{own}: {}", stat(own));
    }
    for host in ["p1_tree", "p2_tree", "p2_natives_tree"] {
        let seen = stat(host);
        assert!(seen.starts_with("dev ") && !seen.ends_with(" ino 1"), "{host}: {seen}");
    }
}

fn failing_step(wasi: Wasi, args: &str, limits: &str) -> (i32, serde_json::Value) {
    let project = Project::new();
    project.manifest(&format!(
        "name = \"limits\"\n[steps.greedy]\nmodule = \"{}\"\nargs = [{args}]\nlimits = {limits}\noutputs = {{ result = \"file\" }}\n",
        wasi.tool_name()
    ));
    project.run_json(&[])
}

#[test]
fn an_infinite_loop_is_stopped_by_its_timeout() {
    for wasi in Wasi::ALL {
        let started = std::time::Instant::now();
        let (code, summary) = failing_step(wasi, "\"spin\"", "{ timeout = \"300ms\" }");
        assert_eq!(code, 1);
        let error = summary.step("greedy")["error"].as_str().unwrap();
        assert!(error.contains("timed out after 300ms (limits.timeout)"), "{wasi:?}: {error}");
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the loop was not interrupted");
    }
}

#[test]
fn an_allocation_past_the_memory_limit_fails_the_step() {
    for wasi in Wasi::ALL {
        let (code, summary) = failing_step(wasi, "\"alloc\"", "{ memory = \"32MiB\" }");
        assert_eq!(code, 1);
        let error = summary.step("greedy")["error"].as_str().unwrap();
        assert!(error.contains("exceeded its memory limit of 32MiB (limits.memory)"), "{wasi:?}: {error}");
    }
}

#[test]
fn a_symlink_output_is_rejected() {
    for wasi in Wasi::ALL {
        let (code, summary) = failing_step(wasi, "\"symlink\"", "{}");
        assert_eq!(code, 1);
        let error = summary.step("greedy")["error"].as_str().unwrap();
        assert!(error.contains("output `result`") && error.contains("symbolic link"), "{wasi:?}: {error}");
    }
}

/// Scratch directories are used again after a step succeeds (see
/// `store/scratch.rs`): whatever earlier steps left in `/out` (undeclared
/// files, directories, odd names) and in `/in` must be gone when the next
/// step starts in the same directory.
#[test]
fn a_step_sees_nothing_that_earlier_steps_left_in_their_scratch_directories() {
    let project = Project::new();
    project.manifest(
        "name = \"reuse\"\n\
         [steps.junk]\nmodule = \"tool-p1.wasm\"\nargs = [\"files\", \"5\"]\noutputs = { result = \"file\" }\n\
         [steps.odd]\nmodule = \"tool-p1.wasm\"\nargs = [\"odd-names\"]\noutputs = { odd = \"dir\" }\n\
         [steps.tree]\nmodule = \"tool-p1.wasm\"\nargs = [\"tree\", \"t\"]\noutputs = { t = \"dir\" }\n\
         [steps.look]\nmodule = \"tool-p1.wasm\"\nargs = [\"list-in\"]\n\
         inputs = { a = \"junk.result\", b = \"odd.odd\", c = \"tree.t\" }\noutputs = { result = \"file\" }\n",
    );
    // One worker, so the steps follow one another through the pool; every
    // round executes all four again.
    for round in 0..4 {
        let args: &[&str] = if round == 0 { &["-j", "1"] } else { &["-j", "1", "--no-cache"] };
        let (code, run) = project.run_json(args);
        assert_eq!(code, 0, "{run}");
        let listing = project.weir(&["cat", output_digest(&run, "look", "result")]);
        let listing = String::from_utf8(listing.stdout).unwrap();
        // (One of the odd names holds a line break: only lines naming a path count.)
        assert!(!listing.lines().any(|line| line.starts_with("/out")), "round {round}: the step saw: {listing}");
        let tops: std::collections::BTreeSet<&str> = listing
            .lines()
            .filter_map(|line| line.strip_prefix("/in/"))
            .map(|path| path.split(['/', ' ']).next().unwrap())
            .collect();
        assert_eq!(tops, [".params.json", "a", "b", "c"].into(), "round {round}: {listing}");
        assert!(!listing.contains("many"), "round {round}: {listing}");
    }
    let leftovers = std::fs::read_dir(project.workspace().join("tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "the pooled scratch directories are removed when the process ends");
}

/// Executions of one module follow one another through the engine's pool of
/// instance slots, each slot keeping its module's image mapped (see
/// `runtime.rs`): every execution must still start from zeroed memory, in
/// its initial image and in pages it grows, whatever the one before it in
/// the slot wrote there.
#[test]
fn a_step_sees_nothing_that_earlier_executions_left_in_memory() {
    let project = Project::new();
    let manifest: String = (0..6)
        .map(|i| {
            let wasi = Wasi::ALL[i % 2];
            format!(
                "[steps.r{i}]\nmodule = \"{}\"\nargs = [\"residue\", \"{i}\"]\noutputs = {{ result = \"file\" }}\n",
                wasi.tool_name()
            )
        })
        .collect();
    project.manifest(&format!("name = \"residue\"\n{manifest}"));
    for round in 0..3 {
        let args: &[&str] = if round == 0 { &["-j", "1"] } else { &["-j", "1", "--no-cache"] };
        let (code, run) = project.run_json(args);
        assert_eq!(code, 0, "{run}");
        for i in 0..6 {
            let seen = project.cat(output_digest(&run, &format!("r{i}"), "result"));
            assert_eq!(seen, "static 0 grown 0", "round {round}: step r{i} saw another execution's bytes");
        }
    }
}

/// A pooled scratch directory keeps its parameters file when the next step
/// staged there has the same parameters (see `stage`): each step must still
/// see exactly its own, whichever steps went before it in the directory.
#[test]
fn a_step_sees_its_own_parameters_in_a_scratch_directory_used_again() {
    let project = Project::new();
    let step = |name: &str, params: &str| {
        format!(
            "[steps.{name}]\nmodule = \"tool-p1.wasm\"\nargs = [\"params\"]\n{params}outputs = {{ result = \"file\" }}\n"
        )
    };
    let steps = [
        ("one", "params = { w = \"1\" }\n"),
        ("same", "params = { w = \"1\" }\n"),
        ("two", "params = { w = \"2\" }\n"),
        ("none", ""),
        ("nested", "params = { w = { deep = [1, 2] } }\n"),
    ];
    let manifest: String = steps.iter().map(|(name, params)| step(name, params)).collect();
    project.manifest(&format!("name = \"params\"\n{manifest}"));
    let expected = |name: &str| match name {
        "one" | "same" => serde_json::json!({ "w": "1" }),
        "two" => serde_json::json!({ "w": "2" }),
        "none" => serde_json::json!({}),
        _ => serde_json::json!({ "w": { "deep": [1, 2] } }),
    };
    // One worker, so the steps follow one another through the pool.
    for round in 0..3 {
        let args: &[&str] = if round == 0 { &["-j", "1"] } else { &["-j", "1", "--no-cache"] };
        let (code, run) = project.run_json(args);
        assert_eq!(code, 0, "{run}");
        for (name, _) in steps {
            let seen: serde_json::Value =
                serde_json::from_str(&project.cat(output_digest(&run, name, "result"))).unwrap();
            assert_eq!(seen, expected(name), "round {round}: step {name}");
        }
    }
}
