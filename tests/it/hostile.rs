//! The adversarial suite: guests that attack their sandbox's limits, all in
//! one run beside a well-behaved step. Each ends with its own error kind,
//! naming the limit and its value, within bounded time; the good step and
//! the engine go on.

use std::time::{Duration, Instant};

use weir_tests::{Project, RunDocument, Wasi, output_digest};

/// One hostile step: its name, tool arguments, limits, and the error it must end with.
struct Attack {
    name: &'static str,
    args: &'static str,
    limits: &'static str,
    error: &'static str,
}

const ATTACKS: [Attack; 8] = [
    Attack {
        name: "loops",
        args: r#""spin""#,
        limits: r#"{ timeout = "300ms" }"#,
        error: "timed out after 300ms (limits.timeout)",
    },
    Attack {
        name: "burns_fuel",
        args: r#""spin""#,
        limits: "{ fuel = 5_000_000 }",
        error: "ran out of fuel after 5000000 units (limits.fuel)",
    },
    Attack {
        name: "hoards",
        args: r#""alloc""#,
        limits: r#"{ memory = "32MiB" }"#,
        error: "exceeded its memory limit of 32MiB (limits.memory)",
    },
    Attack {
        name: "recurses",
        args: r#""recurse""#,
        limits: r#"{ stack = "256KiB" }"#,
        error: "overflowed its stack of 256KiB (limits.stack)",
    },
    Attack {
        name: "fills_disk",
        args: r#""fill""#,
        limits: r#"{ output = "8MiB" }"#,
        error: "wrote more than its output quota of 8MiB (limits.output)",
    },
    Attack {
        name: "makes_files",
        args: r#""files", "1000000""#,
        limits: "{ files = 1000 }",
        error: "created more than its quota of 1000 files (limits.files)",
    },
    Attack { name: "floods", args: r#""flood", "64""#, limits: r#"{ log = "64KiB" }"#, error: "exited with status" },
    Attack { name: "traps", args: r#""panic""#, limits: "{}", error: "trapped" },
];

fn manifest(wasi: Wasi) -> String {
    let mut toml = format!(
        "name = \"hostile\"\n[inputs]\ntext = \"text.txt\"\n[steps.good]\nmodule = \"{}\"\nargs = [\"upper\"]\ninputs = {{ text = \"inputs.text\" }}\noutputs = {{ result = \"file\" }}\n",
        wasi.tool_name()
    );
    for attack in &ATTACKS {
        toml.push_str(&format!(
            "[steps.{}]\nmodule = \"{}\"\nargs = [{}]\nlimits = {}\noutputs = {{ result = \"file\" }}\n",
            attack.name,
            wasi.tool_name(),
            attack.args,
            attack.limits
        ));
    }
    toml
}

#[test]
fn every_attack_ends_with_its_own_error_while_a_good_step_succeeds() {
    for wasi in Wasi::ALL {
        attack_under(wasi, "local");
    }
}

/// Under the `process` executor the code has no interruption checks: the
/// worker's watchdog enforces the timeout and the quotas on `/out`.
#[test]
fn every_attack_ends_with_its_own_error_in_a_worker_process() {
    attack_under(Wasi::P1, "process");
}

fn attack_under(wasi: Wasi, executor: &str) {
    {
        let project = Project::new();
        project.write("text.txt", "fine");
        project.manifest(&manifest(wasi));
        let started = Instant::now();
        let (code, summary) = project.run_json(&["--jobs", "2", "--executor", executor]);
        assert!(started.elapsed() < Duration::from_secs(120), "{wasi:?}: the attacks were not stopped in time");
        assert_eq!(code, 1, "{summary}");
        assert_eq!(summary.step("good")["status"], "ran", "{wasi:?}: {summary}");
        assert_eq!(project.cat(output_digest(&summary, "good", "result")), "FINE");
        for attack in &ATTACKS {
            let step = &summary.step(attack.name);
            assert_eq!(step["status"], "failed", "{wasi:?} {}: {step}", attack.name);
            let error = step["error"].as_str().unwrap();
            let first_line = error.lines().next().unwrap();
            assert!(
                first_line.starts_with(&format!("step `{}` failed: {}", attack.name, attack.error)),
                "{wasi:?} {}: {first_line}",
                attack.name
            );
        }
        let flood_log = summary.step("floods")["logs"]["stderr"].as_str().unwrap();
        let kept = project.cat_bytes(flood_log);
        assert!(kept.len() < (64 << 10) + 200, "{wasi:?}: the flooded log was not cut: {} bytes", kept.len());
        assert!(kept.ends_with(b"[weir: log truncated here: it passed limits.log = 64KiB]\n"), "{wasi:?}");
    }
}

/// `timeout = "none"` compiles the step without interruption checks: it
/// computes what the interruptible build computes, and its quotas on `/out`,
/// no longer measured while it runs, are still enforced when it ends.
#[test]
fn a_step_without_timeout_computes_the_same_and_has_its_quotas_checked_at_the_end() {
    for wasi in Wasi::ALL {
        let project = Project::new();
        let tool = wasi.tool_name();
        project.manifest(&format!(
            r#"name = "trusted"
[steps.checked]
module = "{tool}"
args = ["kernel", "3"]
outputs = {{ result = "file" }}
[steps.unchecked]
module = "{tool}"
args = ["kernel", "3"]
limits = {{ timeout = "none" }}
outputs = {{ result = "file" }}
[steps.makes_files]
module = "{tool}"
args = ["files", "300"]
limits = {{ timeout = "none", files = 100 }}
outputs = {{ result = "file" }}
"#
        ));
        let (code, summary) = project.run_json(&[]);
        assert_eq!(code, 1, "{summary}");
        let loss = |step| project.cat(output_digest(&summary, step, "result"));
        assert_eq!(loss("unchecked"), loss("checked"), "{wasi:?}");
        let error = summary.step("makes_files")["error"].as_str().unwrap();
        assert!(
            error.starts_with("step `makes_files` failed: created more than its quota of 100 files (limits.files)"),
            "{wasi:?}: {error}"
        );
    }
}

#[test]
fn a_chatty_step_succeeds_with_its_log_truncated_and_a_warning() {
    let project = Project::new();
    project.manifest(
        "name = \"chatty\"\n[steps.talk]\nmodule = \"tool-p2.wasm\"\nargs = [\"chatter\", \"256\"]\nlimits = { log = \"16KiB\" }\noutputs = { result = \"file\" }\n",
    );
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    let step = &summary.step("talk");
    assert_eq!(step["warnings"][0], "stdout was truncated at 16KiB (limits.log)", "{step}");
    let stdout = project.cat(step["logs"]["stdout"].as_str().unwrap());
    assert!(stdout.starts_with(&"y".repeat(1023)));
    assert!(stdout.ends_with("[weir: log truncated here: it passed limits.log = 16KiB]\n"), "{}", &stdout[16000..]);
}

#[test]
fn limits_that_are_not_numbers_are_refused_with_their_field() {
    let project = Project::new();
    for (limits, field) in [
        ("{ fuel = \"lots\" }", "limits.fuel"),
        ("{ stack = \"deep\" }", "limits.stack"),
        ("{ output = -5 }", "limits.output"),
        ("{ files = 1.5 }", "limits.files"),
        ("{ stack = \"1GiB\" }", "limits.stack"),
        ("{ swap = \"1GiB\" }", "swap"),
    ] {
        project.manifest(&format!(
            "name = \"bad\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"nothing\"]\nlimits = {limits}\n"
        ));
        let output = project.weir(&["run", "pipeline.toml"]);
        assert_eq!(output.status.code(), Some(2), "{limits}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("step `s`") && stderr.contains(field), "{limits}: {stderr}");
    }
}
