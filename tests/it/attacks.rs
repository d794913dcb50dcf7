//! A tenant that attacks: each test reproduces an attack of a manifest author
//! or a guest of one tenant (`mallory`) on a workspace shared with another
//! (`alice`) and the operator, and checks that it is refused with an error
//! naming the field, and that nothing it aimed at changed.

use weir_tests::{Project, RunDocument, output_digest, steps_with};

const TENANTS: &str = "[tenants.mallory]\nstore = \"64KiB\"\nlimits = { log = \"1MiB\" }\n[tenants.alice]\n";

/// A project whose workspace has the two tenants, each with its own directory.
fn shared() -> Project {
    let project = Project::new();
    project.write(".weir/tenants.toml", TENANTS);
    project.write_as("alice", "secret.txt", "alice's secret");
    project.write_as("mallory", "text.txt", "mallory's text");
    project
}

/// A one-step pipeline of mallory's whose step reads input `data` from `input`.
fn mallory_reads(project: &Project, input: &str) {
    project.write_as(
        "mallory",
        "pipeline.toml",
        format!(
            "name = \"steal\"\n[inputs]\ndata = {input:?}\n[steps.copy]\nmodule = \"tool-p1.wasm\"\n\
             args = [\"copy\", \"data\", \"result\"]\ninputs = {{ data = \"inputs.data\" }}\noutputs = {{ result = \"file\" }}\n"
        ),
    );
}

/// A pipeline of mallory's that upper-cases its text and exports it to `export`.
fn mallory_exports(project: &Project, export: &str) {
    project.write_as(
        "mallory",
        "pipeline.toml",
        format!(
            "name = \"drop\"\n[inputs]\ntext = \"text.txt\"\n[steps.up]\nmodule = \"tool-p1.wasm\"\nargs = [\"upper\"]\n\
             inputs = {{ text = \"inputs.text\" }}\noutputs = {{ result = \"file\" }}\n\
             [outputs]\nx = {{ from = \"up.result\", export = {export:?} }}\n"
        ),
    );
}

#[test]
fn a_tenant_cannot_export_outside_its_directory() {
    let project = shared();
    let tenants_file = project.workspace().join("tenants.toml");
    for target in [
        "../../tenants.toml".to_owned(),
        tenants_file.display().to_string(),
        "../alice/secret.txt".to_owned(),
        project.path().join("anywhere.txt").display().to_string(),
    ] {
        mallory_exports(&project, &target);
        let stderr = project.refused_as("mallory");
        assert!(stderr.contains("field `outputs.x.export`") && stderr.contains("is outside"), "{target}: {stderr}");
    }
    let bypass = project.weir_as("mallory", &["run", "pipeline.toml", "--export-anywhere"]);
    assert_eq!(bypass.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bypass.stderr).contains("exports only beneath its own directory"));

    // A link inside its directory that leads out is not followed at export time.
    std::os::unix::fs::symlink(project.workspace(), project.tenant_dir("mallory").join("escape")).unwrap();
    mallory_exports(&project, "escape/tenants.toml");
    let manifest = project.tenant_dir("mallory").join("pipeline.toml");
    let output = project.weir_as("mallory", &["run", manifest.to_str().unwrap()]);
    assert_ne!(output.status.code(), Some(0), "the export through a link must fail");

    assert_eq!(std::fs::read_to_string(&tenants_file).unwrap(), TENANTS, "the tenants file is untouched");
    assert_eq!(std::fs::read_to_string(project.tenant_dir("alice").join("secret.txt")).unwrap(), "alice's secret");
    assert!(!project.path().join("anywhere.txt").exists());

    mallory_exports(&project, "results/x.txt");
    let (code, summary) = project.run_json_as("mallory", &[]);
    assert_eq!(code, 0, "{summary}");
    let exported = project.tenant_dir("mallory").join("results/x.txt");
    assert_eq!(std::fs::read_to_string(exported).unwrap(), "MALLORY'S TEXT");
}

#[test]
fn the_operator_exports_beside_the_manifest_unless_allowed_anywhere() {
    let project = Project::new();
    project.write("text.txt", "hello");
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("exported.txt");
    project.manifest(&format!(
        "name = \"op\"\n[inputs]\ntext = \"text.txt\"\n[steps.up]\nmodule = \"tool-p1.wasm\"\nargs = [\"upper\"]\n\
         inputs = {{ text = \"inputs.text\" }}\noutputs = {{ result = \"file\" }}\n\
         [outputs]\nx = {{ from = \"up.result\", export = {:?} }}\n",
        target.display().to_string()
    ));
    let output = project.weir(&["run", "pipeline.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("field `outputs.x.export`") && stderr.contains("--export-anywhere"), "{stderr}");
    assert!(!target.exists(), "nothing ran, nothing was written");

    let output = project.weir(&["run", "pipeline.toml", "--export-anywhere"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "HELLO");
}

#[test]
fn a_tenant_cannot_import_files_outside_its_directory() {
    let project = shared();
    let tenant_dir = project.tenant_dir("mallory");
    std::os::unix::fs::symlink("/proc/self/environ", tenant_dir.join("environ")).unwrap();
    std::os::unix::fs::symlink("../alice/secret.txt", tenant_dir.join("alice-link")).unwrap();
    let history = project.workspace().join("history.db").display().to_string();
    for input in [
        "/etc/hostname",
        "/proc/self/pagemap",
        "/dev/zero",
        "../../history.db",
        history.as_str(),
        "../alice/secret.txt",
        "environ",
        "alice-link",
    ] {
        mallory_reads(&project, input);
        let stderr = project.refused_as("mallory");
        assert!(stderr.contains("field `inputs.data`"), "{input}: {stderr}");
        assert!(!stderr.contains("alice's secret"), "{input}: {stderr}");
    }
    // Nor through a directory input holding a link out.
    std::fs::create_dir(tenant_dir.join("dir")).unwrap();
    std::os::unix::fs::symlink("../../alice", tenant_dir.join("dir/alice")).unwrap();
    mallory_reads(&project, "dir");
    assert!(project.refused_as("mallory").contains("field `inputs.data`"));

    // Its own file is fine.
    mallory_reads(&project, "text.txt");
    let (code, summary) = project.run_json_as("mallory", &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(project.cat_as("mallory", output_digest(&summary, "copy", "result")), "mallory's text");
}

#[test]
fn a_fifo_or_device_is_not_an_input_and_does_not_block() {
    let project = shared();
    let fifo = project.tenant_dir("mallory").join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    mallory_reads(&project, "fifo");
    let stderr = project.refused_as("mallory");
    assert!(stderr.contains("field `inputs.data`") && stderr.contains("not a regular file"), "{stderr}");

    // The operator may name any path, but a device or FIFO is still no input.
    for input in ["/dev/zero", fifo.to_str().unwrap()] {
        project.manifest(&format!(
            "name = \"dev\"\n[inputs]\ndata = {input:?}\n[steps.copy]\nmodule = \"tool-p1.wasm\"\n\
             args = [\"copy\", \"data\", \"result\"]\ninputs = {{ data = \"inputs.data\" }}\noutputs = {{ result = \"file\" }}\n"
        ));
        let output = project.weir(&["run", "pipeline.toml"]);
        assert_eq!(output.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&output.stderr).contains("not a regular file"), "{input}");
    }
}

#[test]
fn imports_count_against_the_store_quota() {
    let project = shared();
    project.write_as("mallory", "big.bin", vec![7u8; 100 << 10]);
    mallory_reads(&project, "big.bin");
    let stderr = project.refused_as("mallory");
    assert!(stderr.contains("field `inputs.data`") && stderr.contains("bytes it may take"), "{stderr}");
    let objects = weir_tests::files_under(&project.workspace().join("objects"));
    assert!(
        objects.iter().all(|path| std::fs::metadata(path).unwrap().len() < 100 << 10),
        "the refused input was not copied into the store"
    );
}

#[test]
fn a_tenant_cannot_read_sub_pipelines_or_modules_outside_its_directory() {
    let project = shared();
    for (field, step) in [
        ("pipeline", "pipeline = \"/etc/hostname\""),
        ("pipeline", "pipeline = \"../alice/sub.toml\""),
        ("module", "module = \"../../../tool-p1.wasm\"\noutputs = { r = \"file\" }"),
        ("module", "module = \"/bin/sh\"\noutputs = { r = \"file\" }"),
    ] {
        project.write_as("alice", "sub.toml", "name = \"sub\"\n");
        project.write_as("mallory", "pipeline.toml", format!("name = \"m\"\n[steps.s]\n{step}\n"));
        let stderr = project.refused_as("mallory");
        assert!(stderr.contains(&format!("field `{field}`")) && stderr.contains("is outside"), "{step}: {stderr}");
    }
}

#[test]
fn a_file_that_is_not_a_manifest_is_not_echoed_in_errors() {
    let project = Project::new();
    project.write("secret.conf", "SECRET-LINE password hunter2\n");
    project.write("environ", "PATH=/usr/bin\0SECRET-LINE=1\0");
    for sub in ["secret.conf", "environ"] {
        project.manifest(&format!("name = \"leak\"\n[steps.inner]\npipeline = {sub:?}\n"));
        let output = project.weir(&["run", "pipeline.toml"]);
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("SECRET-LINE"), "{sub}: {stderr}");
        assert!(stderr.contains(sub) && stderr.contains("line 1"), "the error still says where: {stderr}");
    }
    // A manifest's own mistakes are still quoted.
    project.write("sub.toml", "name = \"sub\"\nthis is not toml\n");
    project.manifest("name = \"leak\"\n[steps.inner]\npipeline = \"sub.toml\"\n");
    let output = project.weir(&["run", "pipeline.toml"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("this is not toml"));
}

#[test]
fn a_pipeline_name_is_a_plain_name() {
    let project = Project::new();
    project.manifest("name = \"bad name/../x\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"nothing\"]\n");
    let output = project.weir(&["run", "pipeline.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("field `name`") && stderr.contains("invalid name `bad name/../x`"), "{stderr}");
}

#[test]
fn sub_pipelines_that_multiply_are_refused_quickly() {
    let project = Project::new();
    let levels = 23;
    for level in 0..levels {
        let text = if level + 1 == levels {
            "name = \"leaf\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"nothing\"]\n".to_owned()
        } else {
            let next = format!("sub{}.toml", level + 1);
            format!("name = \"l{level}\"\n[steps.a]\npipeline = {next:?}\n[steps.b]\npipeline = {next:?}\n")
        };
        project.write(&format!("sub{level}.toml"), text);
    }
    std::fs::copy(project.path().join("sub0.toml"), project.path().join("pipeline.toml")).unwrap();
    let output = project.weir(&["run", "pipeline.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("more than 10000 steps once its sub-pipelines are inlined"), "{stderr}");

    // Few steps, but a large file used many times.
    let padding = format!("# {}\n", "x".repeat(1 << 20)).repeat(8);
    project.write("big.toml", format!("{padding}name = \"big\"\n"));
    let uses: String = (0..9).map(|i| format!("[steps.u{i}]\npipeline = \"big.toml\"\n")).collect();
    project.manifest(&format!("name = \"many\"\n{uses}"));
    let output = project.weir(&["run", "pipeline.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("field `pipeline`") && stderr.contains("manifests add up to more than"), "{stderr}");
}

#[test]
fn quotas_hold_past_the_depth_a_host_path_can_name() {
    let project = shared();
    project.write_as(
        "mallory",
        "pipeline.toml",
        "name = \"deep\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"deep\", \"20\", \"200\"]\n\
         outputs = { deep = \"dir\" }\nlimits = { output = \"1MiB\", files = 100 }\n",
    );
    let (code, summary) = project.run_json_as("mallory", &[]);
    assert_eq!(code, 1, "{summary}");
    let error = summary.step("s")["error"].as_str().unwrap();
    assert!(error.contains("limits.files") || error.contains("limits.output"), "{error}");
    let stored = weir_tests::files_under(&project.workspace().join("objects"));
    assert!(stored.len() < 100, "{} objects were stored", stored.len());
}

#[test]
fn native_calls_are_bounded_by_the_step_memory_and_output_quota() {
    let project = shared();
    project.write_as("alice", "a.bin", weir_tests::f32_bytes(&vec![1.0; 16384]));
    project.write_as("alice", "b.bin", weir_tests::f32_bytes(&vec![1.0; 16384]));
    let call = |shape: (usize, usize, usize), limits: &str| {
        let (m, n, k) = shape;
        let request =
            format!(r#"{{"m":{m},"n":{n},"k":{k},"a":{{"file":"/in/a"}},"b":{{"file":"/in/b"}},"c_file":"/out/c"}}"#);
        project.write_as(
            "alice",
            "pipeline.toml",
            format!(
                "name = \"g\"\n[inputs]\na = \"a.bin\"\nb = \"b.bin\"\n[steps.s]\nmodule = \"sdk-tool.wasm\"\n\
                 args = [\"call\", \"gemm\", {request:?}]\nnatives = [\"gemm\"]\ninputs = {{ a = \"inputs.a\", b = \"inputs.b\" }}\n\
                 outputs = {{ result = \"file\" }}\nlimits = {limits}\n"
            ),
        );
        let (code, summary) = project.run_json_as("alice", &[]);
        assert_eq!(code, 0, "{summary}");
        project.cat_as("alice", output_digest(&summary, "s", "result"))
    };
    let huge = call((16384, 16384, 1), "{ memory = \"16MiB\" }");
    assert!(huge.starts_with("error:") && huge.contains("limits.memory"), "{huge}");
    let wide = call((1024, 1024, 16), "{ memory = \"64MiB\", output = \"1MiB\" }");
    assert!(wide.starts_with("error:") && wide.contains("limits.output"), "{wide}");
    let fits = call((64, 64, 256), "{ memory = \"64MiB\", output = \"1MiB\" }");
    assert!(fits.starts_with("ok:"), "{fits}");
}

/// `value` in unsigned LEB128, as WebAssembly encodes sizes and counts.
fn leb128(mut value: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            bytes.push(low);
            return bytes;
        }
        bytes.push(low | 0x80);
    }
}

/// A core module with `_start` and `tables` tables of `elements` elements
/// each (8 bytes of host memory per element), assembled by hand.
fn table_hoarder(tables: u32, elements: u32) -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend([0x01, 0x04, 0x01, 0x60, 0x00, 0x00]); // type 0: () -> ()
    module.extend([0x03, 0x02, 0x01, 0x00]); // one function of type 0
    let mut table_section = leb128(tables);
    for _ in 0..tables {
        table_section.extend([0x70, 0x00]); // funcref, a minimum only
        table_section.extend(leb128(elements));
    }
    module.push(0x04);
    module.extend(leb128(table_section.len() as u32));
    module.extend(table_section);
    module.extend([0x07, 0x0a, 0x01, 0x06]);
    module.extend(b"_start");
    module.extend([0x00, 0x00]); // export function 0 as `_start`
    module.extend([0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b]); // its body: nothing
    module
}

#[test]
fn tables_count_against_the_memory_limit() {
    let project = shared();
    let manifest = |memory: &str| {
        let text = format!("name = \"t\"\n[steps.s]\nmodule = \"tables.wasm\"\nlimits = {{ memory = \"{memory}\" }}\n");
        project.write_as("alice", "pipeline.toml", text);
    };
    // Eight tables of 2^18 elements: 16 MiB of host memory.
    project.write_as("alice", "tables.wasm", table_hoarder(8, 1 << 18));
    manifest("1MiB");
    let (code, summary) = project.run_json_as("alice", &[]);
    assert_eq!(code, 1, "{summary}");
    let error = summary.step("s")["error"].as_str().unwrap();
    assert!(error.contains("memory limit of 1MiB"), "{error}");
    manifest("1GiB");
    let (code, summary) = project.run_json_as("alice", &[]);
    assert_eq!(code, 0, "with room for its tables it runs: {summary}");

    // More tables, or larger ones, than an instance slot of the engine's
    // pool holds: refused before anything runs, naming the limit.
    for (tables, elements, limit) in [(64, 1, "tables count of 64"), (1, 1 << 20, "1048576")] {
        project.write_as("alice", "tables.wasm", table_hoarder(tables, elements));
        let stderr = project.refused_as("alice");
        assert!(stderr.contains("more than a step may define") && stderr.contains(limit), "{stderr}");
    }
}

#[test]
fn logs_count_against_the_store_quota_and_the_tenant_maximum() {
    let project = shared();
    project.write_as(
        "mallory",
        "pipeline.toml",
        "name = \"loud\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"chatter\", \"4096\"]\noutputs = { result = \"file\" }\nlimits = { log = \"4GiB\" }\n",
    );
    let stderr = project.refused_as("mallory");
    assert!(stderr.contains("limits.log = 4GiB is above the maximum of tenant `mallory` (1MiB)"), "{stderr}");

    project.write_as(
        "mallory",
        "pipeline.toml",
        "name = \"loud\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"chatter\", \"512\"]\noutputs = { result = \"file\" }\n",
    );
    let (code, summary) = project.run_json_as("mallory", &[]);
    assert_eq!(code, 1, "{summary}");
    let error = summary.step("s")["error"].as_str().unwrap();
    assert!(error.contains("would exceed tenant `mallory`'s store quota"), "{error}");
    let stored: u64 = weir_tests::files_under(&project.workspace().join("objects"))
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    assert!(stored < 200 << 10, "the log was cut at the quota: {stored} bytes stored");
}

#[test]
fn many_stack_sizes_share_a_few_engines_and_large_stacks_work() {
    let project = Project::new();
    let steps: String = (0..40)
        .map(|i| {
            format!(
                "[steps.s{i}]\nmodule = \"tool-p1.wasm\"\nargs = [\"args\", \"{i}\"]\noutputs = {{ result = \"file\" }}\nlimits = {{ stack = {} }}\n",
                (1 << 20) + i * 4096
            )
        })
        .collect();
    project.manifest(&format!(
        "name = \"stacks\"\n{steps}[steps.big]\nmodule = \"tool-p2.wasm\"\nargs = [\"args\", \"big\"]\noutputs = {{ result = \"file\" }}\nlimits = {{ stack = \"32MiB\" }}\n"
    ));
    let (code, summary) = project.run_json(&["--jobs", "2"]);
    assert_eq!(code, 0, "the largest stack allowed works: {summary}");
    assert_eq!(weir_tests::steps_with(&summary, "ran").len(), 41, "{summary}");
    let compiled = std::fs::read_dir(project.workspace().join("compiled")).unwrap().count();
    assert!(compiled <= 3, "{compiled} engine configurations for 41 stack sizes");
}

#[test]
fn compiled_code_placed_under_another_modules_name_is_not_run() {
    let project = Project::new();
    project.write("text.txt", "hello");
    project.manifest(
        "name = \"c\"\n[inputs]\ntext = \"text.txt\"\n[steps.up]\nmodule = \"tool-p2.wasm\"\nargs = [\"upper\"]\n\
         inputs = { text = \"inputs.text\" }\noutputs = { result = \"file\" }\n\
         [steps.m]\nmodule = \"sdk-tool.wasm\"\nargs = [\"metrics\"]\noutputs = { result = \"file\" }\n",
    );
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    let digest = |file: &str| blake3::hash(&std::fs::read(project.path().join(file)).unwrap()).to_hex().to_string();
    let engines: Vec<_> =
        std::fs::read_dir(project.workspace().join("compiled")).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert_eq!(engines.len(), 1);
    let cached = |module: &str| engines[0].join(format!("{}.cwasm", digest(module)));
    // The attack: the other module's code, renamed to `tool-p2.wasm`'s entry.
    std::fs::copy(cached("sdk-tool.wasm"), cached("tool-p2.wasm")).unwrap();

    let (code, again) = project.run_json(&["--no-cache"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(project.cat(output_digest(&again, "up", "result")), "HELLO", "tool-p2.wasm ran its own code");
    assert_ne!(
        std::fs::read(cached("tool-p2.wasm")).unwrap(),
        std::fs::read(cached("sdk-tool.wasm")).unwrap(),
        "the substituted entry was replaced by a genuine one"
    );
}

#[test]
fn repair_drops_the_cache_entries_of_a_tree_with_a_corrupt_file() {
    let project = Project::new();
    project.manifest(
        "name = \"t\"\n[steps.make]\nmodule = \"tool-p1.wasm\"\nargs = [\"tree\", \"dir\"]\noutputs = { dir = \"dir\" }\n\
         [steps.use]\nmodule = \"tool-p1.wasm\"\nargs = [\"list-in\"]\ninputs = { dir = \"make.dir\" }\noutputs = { result = \"file\" }\n",
    );
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    // A reused run keeps the pipeline's reuse index, which holds the entries
    // the repair drops: it must no longer be trusted after.
    let (_, reused) = project.run_json(&[]);
    assert_eq!(steps_with(&reused, "cached"), ["make", "use"], "{reused}");
    weir_tests::tamper(&project.workspace(), blake3::hash(b"alpha").to_hex().as_str());

    let output = project.weir(&["store", "verify", "--repair", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["corrupt"].as_array().unwrap().len(), 1, "{report}");
    assert!(report["dropped_cache_entries"].as_u64().unwrap() >= 1, "{report}");

    let (code, again) = project.run_json(&[]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again.step("make")["status"], "ran", "the tree's maker runs again: {again}");
    assert_eq!(output_digest(&again, "make", "dir"), output_digest(&first, "make", "dir"));
}

#[test]
fn guest_text_reaches_the_terminal_with_control_characters_escaped() {
    let project = Project::new();
    project.manifest(
        "name = \"esc\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"shout\", \"\\u001b[2J\\u001b]0;owned\\u0007 gone\"]\noutputs = { result = \"file\" }\n",
    );
    let output = project.weir(&["run", "pipeline.toml"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains('\u{1b}') && !stderr.contains('\u{7}'), "{stderr:?}");
    assert!(stderr.contains("\\u{1b}[2J") && stderr.contains("gone"), "{stderr}");
    let show = project.weir(&["show", "last"]);
    assert!(!String::from_utf8_lossy(&show.stdout).contains('\u{1b}'));
}

#[test]
fn large_artifacts_are_streamed_by_cat_and_logs() {
    let project = Project::new();
    project.manifest(
        "name = \"big\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"chatter\", \"65536\"]\noutputs = { result = \"file\" }\nlimits = { log = \"128MiB\" }\n",
    );
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    let log = summary.step("s")["logs"]["stdout"].as_str().unwrap().to_owned();
    // 64 MiB of log, read back under a 48 MiB cap on the process's heap.
    let capped = |args: &str| {
        let weir = weir_tests::weir_bin();
        let script = format!(
            "ulimit -d 49152 && {} {args} --workspace {} | wc -c",
            weir.display(),
            project.workspace().display()
        );
        let output = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert!(output.status.success(), "{args}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().parse::<u64>().unwrap()
    };
    assert_eq!(capped(&format!("cat {log}")), 64 << 20);
    assert!(capped("logs last s --json") > 64 << 20);
    let exported = project.path().join("log.txt");
    capped(&format!("export {log} {}", exported.display()));
    assert_eq!(std::fs::metadata(&exported).unwrap().len(), 64 << 20);
    capped("store verify");
    let json = project.weir(&["logs", "last", "s", "--json"]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed["stdout"].as_str().unwrap().len(), 64 << 20);
    assert!(parsed["stdout"].as_str().unwrap().starts_with("yyyy"));
}

// What held before, kept so it keeps holding: hard links out of `/in`,
// writes to `/in` and `..` out of the preopens are in `sandbox.rs`, SIGKILL
// at random moments in `crash.rs`; FIFOs and `/dev/zero` as inputs above.

#[test]
fn sub_pipelines_that_include_themselves_are_refused() {
    let project = Project::new();
    project.manifest("name = \"me\"\n[steps.again]\npipeline = \"pipeline.toml\"\n");
    let output = project.weir(&["run", "pipeline.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("sub-pipelines include each other"));
    project.write("a.toml", "name = \"a\"\n[steps.b]\npipeline = \"b.toml\"\n");
    project.write("b.toml", "name = \"b\"\n[steps.a]\npipeline = \"a.toml\"\n");
    let output = project.weir(&["run", "a.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sub-pipelines include each other") && stderr.contains("b.toml"), "{stderr}");
}

#[test]
fn odd_file_names_are_stored_and_exported_exactly() {
    let project = Project::new();
    project.manifest(
        "name = \"odd\"\n[steps.s]\nmodule = \"tool-p2.wasm\"\nargs = [\"odd-names\"]\noutputs = { odd = \"dir\" }\n",
    );
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    let target = project.path().join("exported");
    let output = project.weir(&["export", output_digest(&summary, "s", "odd"), target.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut names: Vec<String> =
        std::fs::read_dir(&target).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let mut expected: Vec<String> =
        ["line\nbreak", "-rf", " lead", "trail ", "...", "ünïcødé", "tab\there", "\u{1b}[31m"]
            .iter()
            .map(|name| name.to_string())
            .chain(["n".repeat(255)])
            .collect();
    expected.sort();
    assert_eq!(names, expected);
    for name in &names {
        assert_eq!(&std::fs::read_to_string(target.join(name)).unwrap(), name);
    }
}

#[test]
fn a_flood_of_bridge_calls_is_answered_and_bounded() {
    let project = Project::new();
    project.manifest(
        "name = \"flood\"\n[steps.s]\nmodule = \"sdk-tool.wasm\"\nargs = [\"flood\", \"100000\"]\noutputs = { result = \"file\" }\n",
    );
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(project.cat(output_digest(&summary, "s", "result")), "ok: 100000 refused");
    assert_eq!(summary.step("s")["metrics"]["i"], 99999.0);
}

#[test]
fn exports_of_a_manifest_in_another_directory_land_beside_it() {
    let project = Project::new();
    project.write("sub/text.txt", "beside");
    std::fs::copy(project.path().join("tool-p1.wasm"), project.path().join("sub/tool-p1.wasm")).unwrap();
    project.write(
        "sub/pipeline.toml",
        "name = \"sub\"\n[inputs]\ntext = \"text.txt\"\n[steps.up]\nmodule = \"tool-p1.wasm\"\nargs = [\"upper\"]\n\
         inputs = { text = \"inputs.text\" }\noutputs = { result = \"file\" }\n\
         [outputs]\nx = { from = \"up.result\", export = \"results/x.txt\" }\n",
    );
    let output = project.weir(&["run", "sub/pipeline.toml"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(std::fs::read_to_string(project.path().join("sub/results/x.txt")).unwrap(), "BESIDE");
    assert!(!project.path().join("sub/sub").exists(), "not resolved twice against the manifest's directory");
}
