//! Shared fixtures of weir's integration tests: guests built from source,
//! the `weir` binary, and throwaway projects with a manifest and a workspace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

/// The WASI flavours a guest can be built as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wasi {
    /// A preview-1 core module (`wasm32-wasip1`).
    P1,
    /// A preview-2 command component (`wasm32-wasip2`).
    P2,
}

impl Wasi {
    /// Both flavours.
    pub const ALL: [Wasi; 2] = [Wasi::P1, Wasi::P2];

    fn target(self) -> &'static str {
        match self {
            Wasi::P1 => "wasm32-wasip1",
            Wasi::P2 => "wasm32-wasip2",
        }
    }

    /// The file name the test tool gets inside a project.
    pub fn tool_name(self) -> &'static str {
        match self {
            Wasi::P1 => "tool-p1.wasm",
            Wasi::P2 => "tool-p2.wasm",
        }
    }
}

/// The directory holding the test executable (`target/<profile>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps directory");
    deps.parent().expect("profile directory").to_owned()
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned()
}

fn run_cargo(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|err| panic!("running cargo to build {what}: {err}"));
    assert!(output.status.success(), "building {what} failed:\n{}", String::from_utf8_lossy(&output.stderr));
}

/// Builds the guest crate at `crate_dir` (relative to the repository) for
/// `target`, once per process, and returns the path of its `bin`.
///
/// Where `WEIR_TEST_GUESTS` names a directory, guests already built there
/// (`DIR/TARGET/release/BIN.wasm`, as cargo lays them out) are used instead:
/// for a bench binary carried to a machine without cargo, such as a GPU host.
fn build_guest(lock: &OnceLock<PathBuf>, crate_dir: &str, target: &str, bin: &str) -> PathBuf {
    lock.get_or_init(|| {
        if let Some(prebuilt) = std::env::var_os("WEIR_TEST_GUESTS") {
            let path = Path::new(&prebuilt).join(target).join("release").join(format!("{bin}.wasm"));
            assert!(path.is_file(), "WEIR_TEST_GUESTS is set, but {} is not there", path.display());
            return path;
        }
        let target_dir = profile_dir().parent().expect("target directory").join("guests");
        let mut command = cargo();
        command
            .args(["build", "--quiet", "--release", "--target", target, "--manifest-path"])
            .arg(workspace_root().join(crate_dir).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir);
        for target in ["WASM32_WASIP1", "WASM32_WASIP2"] {
            // Fixed-width SIMD lets LLVM vectorize guest loops; wasmtime runs it everywhere it runs.
            command.env(format!("CARGO_TARGET_{target}_RUSTFLAGS"), "-C target-feature=+simd128");
        }
        run_cargo(command, &format!("the guest {crate_dir} for {target}"));
        target_dir.join(target).join("release").join(format!("{bin}.wasm"))
    })
    .clone()
}

/// Writes an input file as users usually have it: not changed in the last
/// moments. The engine does not trust a stat-based digest of a file whose
/// modification or status change is within 2 s (a write in the same
/// timestamp tick could go unnoticed) and hashes such a file again on every
/// run, so this waits until the file is past that window.
pub fn write_settled(path: &Path, contents: impl AsRef<[u8]>) {
    std::fs::write(path, contents).expect("write input");
    std::thread::sleep(std::time::Duration::from_millis(2100));
}

/// The test tool (`tests/guests/tool`) built for `wasi`, built on first use.
pub fn tool(wasi: Wasi) -> PathBuf {
    static BUILT: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    build_guest(&BUILT[wasi as usize], "tests/guests/tool", wasi.target(), "tool")
}

/// The guest built with the SDK (`tests/guests/sdk-tool`), a preview-2 component.
pub fn sdk_tool() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    build_guest(&BUILT, "tests/guests/sdk-tool", "wasm32-wasip2", "sdk-tool")
}

/// The digits example's steps (`examples/digits/steps`), built once; returns
/// the directory holding `validate.wasm`, `prep.wasm`, and the rest.
pub fn digits_steps() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let train = build_guest(&BUILT, "examples/digits/steps", "wasm32-wasip2", "train");
    train.parent().expect("release directory").to_owned()
}

/// The wordcount example's steps (`examples/wordcount/steps`), built once;
/// returns the directory holding `normalize.wasm`, `count.wasm`, and the rest.
pub fn wordcount_steps() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let report = build_guest(&BUILT, "examples/wordcount/steps", "wasm32-wasip2", "report");
    report.parent().expect("release directory").to_owned()
}

/// Copies the repository directory `relative` (recursively) to `dest`.
pub fn copy_tree(relative: &str, dest: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("create directory");
        for entry in std::fs::read_dir(from).expect("read directory") {
            let path = entry.expect("entry").path();
            let target = to.join(path.file_name().expect("name"));
            if path.is_dir() { copy(&path, &target) } else { std::fs::copy(&path, &target).map(|_| ()).expect("copy") }
        }
    }
    copy(&workspace_root().join(relative), dest);
}

/// The embedding example's wasm step (`examples/embed/step`).
pub fn embed_step() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    build_guest(&BUILT, "examples/embed/step", "wasm32-wasip2", "summarize")
}

/// The guest SDK's template step (`guest-sdk/template`), built as its README says.
pub fn template_step() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    build_guest(&BUILT, "guest-sdk/template", "wasm32-wasip2", "standardize")
}

/// The `weir` binary of this profile, built on first use.
///
/// Under `cargo test`, it is built with the features the workspace's tests
/// resolve (`--workspace --bins --tests`), so its dependencies are the ones
/// the test build just compiled: only the binary itself is compiled and
/// linked. (`-p weir-cli` alone resolves other features for some crates,
/// wasmtime's among them, and would compile dozens of them a second time.)
pub fn weir_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let profile = profile_dir();
            let mut command = cargo();
            command.current_dir(workspace_root()).args(["build", "--quiet"]);
            if profile.file_name().is_some_and(|name| name == "release") {
                command.args(["--release", "-p", "weir-cli"]);
            } else {
                command.args(["--workspace", "--bins", "--tests"]);
            }
            run_cargo(command, "the weir binary");
            profile.join(format!("weir{}", std::env::consts::EXE_SUFFIX))
        })
        .clone()
}

/// A throwaway project: a directory with both test tools, data files, a
/// manifest, and its own workspace (`.weir`).
pub struct Project {
    dir: tempfile::TempDir,
}

impl Default for Project {
    fn default() -> Self {
        Self::new()
    }
}

impl Project {
    /// An empty project holding `tool-p1.wasm`, `tool-p2.wasm` and `sdk-tool.wasm`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        for wasi in Wasi::ALL {
            std::fs::copy(tool(wasi), dir.path().join(wasi.tool_name())).expect("copy test tool");
        }
        std::fs::copy(sdk_tool(), dir.path().join("sdk-tool.wasm")).expect("copy sdk tool");
        Self { dir }
    }

    /// A project whose pipeline has one step, `upper`, which upper-cases
    /// the input `text` (`text.txt`, holding `hello`) with `module`.
    pub fn upper(module: &str) -> Self {
        let project = Self::new();
        project.write("text.txt", "hello");
        project.manifest(&format!(
            "name = \"upper\"\n[inputs]\ntext = \"text.txt\"\n[steps.upper]\nmodule = \"{module}\"\nargs = [\"upper\"]\n\
             inputs = {{ text = \"inputs.text\" }}\noutputs = {{ result = \"file\" }}\n"
        ));
        project
    }

    /// The project directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The project's workspace directory.
    pub fn workspace(&self) -> PathBuf {
        self.path().join(".weir")
    }

    /// Writes a file (creating parent directories) and returns its path.
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create parent");
        std::fs::write(&path, contents).expect("write file");
        path
    }

    /// Writes `pipeline.toml`.
    pub fn manifest(&self, toml: &str) -> PathBuf {
        self.write("pipeline.toml", toml)
    }

    /// Runs `weir` with these arguments and the project's workspace.
    pub fn weir(&self, args: &[&str]) -> Output {
        Command::new(weir_bin())
            .args(args)
            .arg("--workspace")
            .arg(self.workspace())
            .current_dir(self.path())
            .env_remove("WEIR_HOME")
            .env_remove("WEIR_TENANT")
            .output()
            .expect("run weir")
    }

    /// `weir ARGS…` that prints one JSON value on stdout: the exit code and the value.
    pub fn weir_json(&self, args: &[&str]) -> (i32, Value) {
        let output = self.weir(args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let value = serde_json::from_str(&stdout).unwrap_or_else(|err| {
            panic!(
                "{args:?} ({}): not JSON ({err}): {stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code().expect("exit code"), value)
    }

    /// `weir run pipeline.toml --json EXTRA…`: the exit code and the summary.
    pub fn run_json(&self, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["run", "pipeline.toml", "--json"];
        args.extend_from_slice(extra);
        self.summary_of(&args)
    }

    /// `weir show RUN --json`: the run's document, checked against the schema.
    pub fn show_json(&self, run: &str) -> Value {
        let (code, shown) = self.summary_of(&["show", run, "--json"]);
        assert_eq!(code, 0, "weir show {run} failed: {shown}");
        shown
    }

    /// `weir ARGS…` that prints one JSON object: the exit code and the
    /// object. A run's document is checked against `docs/run.schema.json`.
    fn summary_of(&self, args: &[&str]) -> (i32, Value) {
        let output = self.weir(args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|err| {
            panic!(
                "stdout is not one JSON object ({err}; weir ended with {}):\n{stdout}\nstderr:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        });
        if !matches!(summary["status"].as_str(), Some("invalid" | "error")) {
            assert_run_document(&summary);
        }
        (output.status.code().expect("exit code"), summary)
    }

    /// The default directory of `tenant`'s files (`WORKSPACE/tenants/TENANT`),
    /// created with the test tools in it.
    pub fn tenant_dir(&self, tenant: &str) -> PathBuf {
        let dir = self.workspace().join("tenants").join(tenant);
        if !dir.exists() {
            std::fs::create_dir_all(&dir).expect("create tenant directory");
            for name in ["tool-p1.wasm", "tool-p2.wasm", "sdk-tool.wasm"] {
                std::fs::copy(self.path().join(name), dir.join(name)).expect("copy test tool");
            }
        }
        dir
    }

    /// Writes a file in `tenant`'s directory and returns its path.
    pub fn write_as(&self, tenant: &str, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.tenant_dir(tenant).join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create parent");
        std::fs::write(&path, contents).expect("write file");
        path
    }

    /// `weir ARGS… --tenant TENANT`.
    pub fn weir_as(&self, tenant: &str, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--tenant", tenant]);
        self.weir(&all)
    }

    /// `weir run TENANT_DIR/pipeline.toml --json --tenant TENANT EXTRA…`.
    pub fn run_json_as(&self, tenant: &str, extra: &[&str]) -> (i32, Value) {
        let manifest = self.tenant_dir(tenant).join("pipeline.toml");
        let mut args = vec!["run", manifest.to_str().expect("UTF-8 path"), "--json", "--tenant", tenant];
        args.extend_from_slice(extra);
        self.summary_of(&args)
    }

    /// `weir run TENANT_DIR/pipeline.toml --tenant TENANT`, expected to be
    /// refused before anything runs (exit 2); returns its stderr.
    pub fn refused_as(&self, tenant: &str) -> String {
        let manifest = self.tenant_dir(tenant).join("pipeline.toml");
        let output = self.weir(&["run", manifest.to_str().expect("UTF-8 path"), "--tenant", tenant]);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "expected a refusal, got {}:\n{stderr}", output.status);
        stderr
    }

    /// `weir cat DIGEST` as text.
    pub fn cat(&self, digest: &str) -> String {
        String::from_utf8(self.cat_bytes(digest)).expect("utf-8 artifact")
    }

    /// `weir cat DIGEST --tenant TENANT` as text.
    pub fn cat_as(&self, tenant: &str, digest: &str) -> String {
        let output = self.weir(&["cat", digest, "--tenant", tenant]);
        assert!(output.status.success(), "weir cat failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("utf-8 artifact")
    }

    /// `weir cat DIGEST` as bytes.
    pub fn cat_bytes(&self, digest: &str) -> Vec<u8> {
        let output = self.weir(&["cat", digest]);
        assert!(output.status.success(), "weir cat failed: {}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    }
}

/// Replaces the bytes of stored object `digest` (`blake3:…`) in `workspace`
/// by as many `!`, as a disk or a hand might: it stays the same size.
pub fn tamper(workspace: &Path, digest: &str) {
    let hex = digest.trim_start_matches("blake3:");
    let object = workspace.join("objects").join(&hex[..2]).join(&hex[2..]);
    let len = std::fs::metadata(&object).expect("stored object").len() as usize;
    let mut perms = std::fs::metadata(&object).expect("stored object").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&object, perms).expect("make writable");
    std::fs::write(&object, vec![b'!'; len]).expect("tamper");
}

/// Every file beneath `dir` (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() { files.extend(files_under(&path)) } else { files.push(path) }
    }
    files
}

/// The files of compiled code in `workspace` (`compiled/<engine>/*.cwasm`).
pub fn compiled_code(workspace: &Path) -> Vec<PathBuf> {
    files_under(&workspace.join("compiled"))
        .into_iter()
        .filter(|file| file.extension().is_some_and(|ext| ext == "cwasm"))
        .collect()
}

/// What a command printed, stdout then stderr, for messages and assertions.
pub fn printed(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Asserts that `document` is a run as `docs/run.schema.json` describes it.
pub fn assert_run_document(document: &Value) {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let validator = SCHEMA.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/run.schema.json");
        let schema: Value = serde_json::from_slice(&std::fs::read(&path).expect("read the run schema"))
            .expect("the run schema is JSON");
        jsonschema::validator_for(&schema).expect("the run schema is a valid JSON Schema")
    });
    let errors: Vec<String> =
        validator.iter_errors(document).map(|error| format!("{} at {}", error, error.instance_path())).collect();
    assert!(errors.is_empty(), "not a run document:\n{}\n{document:#}", errors.join("\n"));
}

/// Reading a run's document (`weir run --json`, `weir show --json`; see
/// `docs/run.schema.json`), whose steps are a list in pipeline order.
pub trait RunDocument {
    /// The record of step `name` (`null` when the run has none).
    fn step(&self, name: &str) -> &Value;
}

impl RunDocument for Value {
    fn step(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self["steps"].as_array().and_then(|steps| steps.iter().find(|step| step["step"] == name)).unwrap_or(&NULL)
    }
}

/// The names of the steps with `status` in a run document, sorted.
pub fn steps_with(summary: &Value, status: &str) -> Vec<String> {
    let steps = summary["steps"].as_array().expect("steps list");
    let mut names: Vec<String> = steps
        .iter()
        .filter(|step| step["status"] == status)
        .map(|step| step["step"].as_str().expect("step name").to_owned())
        .collect();
    names.sort();
    names
}

/// The digest of `step`'s `output` in a run document.
pub fn output_digest<'a>(summary: &'a Value, step: &str, output: &str) -> &'a str {
    summary.step(step)["outputs"][output].as_str().unwrap_or_else(|| panic!("no output {step}.{output} in {summary}"))
}

/// Little-endian bytes of `f32` values, as matrix files hold them.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `f32` values from little-endian bytes.
pub fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The row-major product of an `m × k` and a `k × n` matrix, the slow way.
pub fn reference_matmul(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
        }
    }
    c
}

/// Sends `signal` (e.g. `libc::SIGINT`) to process `pid`.
pub fn send_signal(pid: u32, signal: i32) {
    let pid = i32::try_from(pid).expect("a process id");
    // SAFETY: kill(2) with a live child's pid and a valid signal number.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
}

/// Waits up to a minute for processes whose command line contains
/// `needle` to exist, and returns them; panics naming `what` otherwise.
pub fn wait_for_processes(needle: &str, what: &str) -> Vec<u32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let found = processes_matching(needle);
        if !found.is_empty() {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "{what} did not start within a minute");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The processes whose command line contains `needle` (from /proc).
pub fn processes_matching(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let line = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let line: Vec<u8> = line.into_iter().map(|byte| if byte == 0 { b' ' } else { byte }).collect();
            String::from_utf8_lossy(&line).contains(needle)
        })
        .collect()
}

/// A pipeline named `name` of one step, `say`, whose result is `word`.
pub fn say_pipeline(name: &str, word: &str) -> weir::Pipeline {
    weir::Pipeline::builder(name)
        .step(
            weir::StepBuilder::new("say", tool(Wasi::P1)).args(["args", word]).output("result", weir::OutputKind::File),
        )
        .build()
        .expect("a valid pipeline")
}

/// A Docker distribution registry (Debian's `docker-registry`) on a free
/// loopback port, with its storage in a temporary directory; stopped when
/// dropped.
pub struct LocalRegistry {
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`, as a reference names it.
    pub address: String,
}

impl LocalRegistry {
    /// A registry started and answering, or `None` (the test is skipped,
    /// saying so) where `docker-registry` is not installed.
    pub fn start() -> Option<Self> {
        if Command::new("docker-registry").arg("--version").output().is_err() {
            eprintln!("skipped: `docker-registry` is not installed (make setup installs it as root)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let address = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let mut registry = LocalRegistry { child: None, dir, address };
        registry.restart();
        Some(registry)
    }

    /// Starts it again after [`LocalRegistry::stop`], with the same storage.
    pub fn restart(&mut self) {
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("log")).unwrap())
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(&self.address).is_err() {
            assert!(std::time::Instant::now() < deadline, "docker-registry did not listen on {}", self.address);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Stops it (a run must then do without it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The file holding blob `digest` (`sha256:HEX`) in its storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.dir.path().join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}
