//! The Slurm commands the executor runs: `sbatch`, `squeue`, `scancel`,
//! each a plain command of the coordinator's machine, and their output read.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{Error, Result};

/// A job as `squeue` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Its id (`123`, or `123_4` for an array task).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its state (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, …).
    pub state: String,
    /// Its node, if it has one.
    pub node: Option<String>,
    /// Why it is in its state, as Slurm says (`None`, `Resources`, …).
    pub reason: String,
    /// Its comment: the path of its result file.
    pub comment: String,
    /// Its exit code as Slurm writes it, `CODE:SIGNAL` (`0:0` until it ends).
    pub exit_code: String,
}

impl Listed {
    /// Whether Slurm is done with it: it will never run (again).
    pub(crate) fn ended(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "SUSPENDED"
                | "REQUEUED"
                | "RESIZING"
                | "STAGE_OUT"
                | "SIGNALING"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESV_DEL_HOLD"
                | "STOPPED"
        )
    }
}

/// The separator of `squeue`'s fields (no job name or path holds it).
const SEP: char = '\u{1f}';

/// Runs `program` with `args`; its stdout, or an error naming the command
/// and what it printed on stderr.
fn run(program: &str, args: &[String]) -> Result<String> {
    let output = Command::new(program).args(args).output().map_err(|err| {
        let hint = if err.kind() == std::io::ErrorKind::NotFound {
            ": is Slurm installed here? (the slurm executor runs the cluster's own commands)"
        } else {
            ""
        };
        Error::Runtime(format!("running `{program}`: {err}{hint}"))
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Error::Runtime(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            stderr.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Submits a batch job; returns its id.
pub(crate) fn sbatch(args: &[String]) -> Result<String> {
    let out = run("sbatch", args)?;
    // `--parsable` prints `ID` or `ID;CLUSTER`.
    let id = out.trim().split(';').next().unwrap_or_default().to_owned();
    if id.is_empty() {
        return Err(Error::Runtime(format!("sbatch printed no job id: {out:?}")));
    }
    Ok(id)
}

/// The jobs named `names` (any state Slurm still remembers), in one query.
pub(crate) fn squeue(names: &[String]) -> Result<Vec<Listed>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    // `--Format` fields with a suffix and no width are printed unpadded.
    let fields = ["JobArrayID", "Name", "State", "NodeList", "Reason", "Comment", "exit_code"];
    let format = fields.map(|field| format!("{field}:{SEP}")).join(",");
    let args = [
        "--noheader".into(),
        "--array".into(),
        "--states=all".into(),
        format!("--Format={format}"),
        format!("--name={}", names.join(",")),
    ];
    Ok(run("squeue", &args)?.lines().filter_map(parse_line).collect())
}

fn parse_line(line: &str) -> Option<Listed> {
    let mut fields = line.split(SEP).map(str::trim);
    let mut next = || fields.next().filter(|field| *field != "(null)").unwrap_or_default().to_owned();
    let (id, name, state, node, reason, comment, status) = (next(), next(), next(), next(), next(), next(), next());
    if id.is_empty() || state.is_empty() {
        return None;
    }
    Some(Listed {
        id,
        name,
        state,
        node: (!node.is_empty()).then_some(node),
        reason,
        comment,
        exit_code: exit_code(&status),
    })
}

/// Slurm's `CODE:SIGNAL` of the wait status `squeue` prints (`768` is
/// `3:0`, an exit with code 3; `9` is `0:9`, killed by signal 9).
fn exit_code(status: &str) -> String {
    let status: u32 = status.parse().unwrap_or(0);
    format!("{}:{}", (status >> 8) & 0xff, status & 0x7f)
}

/// The cluster's `MaxArraySize`: a job array's task indices must be below
/// it (0 turns job arrays off). `None` when `scontrol` does not say.
pub(crate) fn max_array_size() -> Option<usize> {
    parse_max_array_size(&run("scontrol", &["show".into(), "config".into()]).ok()?)
}

fn parse_max_array_size(config: &str) -> Option<usize> {
    config.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "MaxArraySize").then(|| value.trim().parse().ok())?
    })
}

/// Cancels job `id` (already ended is fine).
pub(crate) fn scancel(id: &str) {
    let _ = Command::new("scancel").arg(id).output();
}

/// Checks that the cluster's nodes see `probe` (a file the coordinator just
/// wrote in the workspace): a job that tests for it, waited for.
pub(crate) fn probe(probe: &Path, extra: &[String], timeout: Duration) -> Result<()> {
    let mut args = vec![
        "--parsable".into(),
        "--wait".into(),
        "--job-name=weir-probe".into(),
        "--output=/dev/null".into(),
        format!("--time={}", timeout.as_secs().div_ceil(60).max(1)),
    ];
    args.extend_from_slice(extra);
    args.push(format!("--wrap=test -f {}", quote(&probe.display().to_string())));
    sbatch(&args).map(drop).map_err(|err| {
        Error::Runtime(format!(
            "the cluster's nodes do not see this workspace ({}): the slurm executor needs the workspace on a file \
             system every node mounts at the same path (see docs/slurm.md). The probe job said: {err}",
            probe.parent().and_then(Path::parent).map_or_else(String::new, |dir| dir.display().to_string())
        ))
    })
}

/// `text` quoted for the shell of a batch script.
pub(crate) fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_array_size_is_read_from_scontrols_config() {
        let config =
            "Configuration data as of 2026-12-01T10:00:00\nMaxArraySize            = 1001\nMaxJobCount = 10000\n";
        assert_eq!(parse_max_array_size(config), Some(1001));
        assert_eq!(parse_max_array_size("MaxJobCount = 10000\n"), None);
    }

    #[test]
    fn squeue_lines_are_read_field_by_field() {
        let line = format!("12_3{SEP}weir-ab{SEP}RUNNING{SEP}n2{SEP}None{SEP}/ws/slurm/r-ab.frames{SEP}0{SEP}");
        let listed = parse_line(&line).unwrap();
        assert_eq!(listed.id, "12_3");
        assert_eq!(listed.node.as_deref(), Some("n2"));
        assert_eq!(listed.comment, "/ws/slurm/r-ab.frames");
        assert_eq!(listed.exit_code, "0:0");
        assert!(!listed.ended());
        let pending =
            parse_line(&format!("13{SEP}weir-cd{SEP}PENDING{SEP}{SEP}Resources{SEP}(null){SEP}0{SEP}")).unwrap();
        assert_eq!(pending.node, None);
        assert_eq!(pending.comment, "");
        let killed = parse_line(&format!("14{SEP}w{SEP}FAILED{SEP}n1{SEP}JobLaunchFailure{SEP}{SEP}9{SEP}")).unwrap();
        assert_eq!(killed.exit_code, "0:9");
        let exited = parse_line(&format!("15{SEP}w{SEP}FAILED{SEP}n1{SEP}NonZeroExitCode{SEP}{SEP}768{SEP}")).unwrap();
        assert_eq!(exited.exit_code, "3:0");
        assert!(parse_line("").is_none());
        for ended in ["COMPLETED", "FAILED", "CANCELLED", "NODE_FAIL", "PREEMPTED", "TIMEOUT", "OUT_OF_MEMORY"] {
            assert!(Listed { state: ended.into(), ..pending.clone() }.ended(), "{ended}");
        }
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(quote("a b'c"), r"'a b'\''c'");
    }
}
