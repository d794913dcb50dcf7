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
    let format = ["%i", "%j", "%T", "%N", "%r", "%k"].join(&SEP.to_string());
    let args = [
        "--noheader".into(),
        "--array".into(),
        "--states=all".into(),
        format!("--format={format}"),
        format!("--name={}", names.join(",")),
    ];
    Ok(run("squeue", &args)?.lines().filter_map(parse_line).collect())
}

fn parse_line(line: &str) -> Option<Listed> {
    let mut fields = line.split(SEP).map(str::trim);
    let (id, name, state, node, reason, comment) =
        (fields.next()?, fields.next()?, fields.next()?, fields.next()?, fields.next()?, fields.next().unwrap_or(""));
    Some(Listed {
        id: id.to_owned(),
        name: name.to_owned(),
        state: state.to_owned(),
        node: (!node.is_empty() && node != "(null)").then(|| node.to_owned()),
        reason: reason.to_owned(),
        comment: comment.to_owned(),
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
    fn squeue_lines_are_read_field_by_field() {
        let line = format!("12_3{SEP}weir-ab{SEP}RUNNING{SEP}n2{SEP}None{SEP}/ws/slurm/r-ab.frames");
        let listed = parse_line(&line).unwrap();
        assert_eq!(listed.id, "12_3");
        assert_eq!(listed.node.as_deref(), Some("n2"));
        assert_eq!(listed.comment, "/ws/slurm/r-ab.frames");
        assert!(!listed.ended());
        let pending = parse_line(&format!("13{SEP}weir-cd{SEP}PENDING{SEP}{SEP}Resources{SEP}")).unwrap();
        assert_eq!(pending.node, None);
        for ended in ["COMPLETED", "FAILED", "CANCELLED", "NODE_FAIL", "PREEMPTED", "TIMEOUT", "OUT_OF_MEMORY"] {
            assert!(Listed { state: ended.into(), ..pending.clone() }.ended(), "{ended}");
        }
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(quote("a b'c"), r"'a b'\''c'");
    }
}
