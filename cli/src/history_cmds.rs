//! The history commands: `runs`, `show`, `logs`, `metrics`, `explain`, `lineage`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use weir::{Digest, History, Store};

fn time(seconds: f64) -> String {
    let secs = seconds as u64;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // 1970-01-01 + days, by Howard Hinnant's algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// `weir runs`.
pub(crate) fn runs(
    history: &History,
    tenant: &str,
    pipeline: Option<&str>,
    limit: usize,
    as_json: bool,
) -> anyhow::Result<()> {
    let runs = history.runs(tenant, pipeline, limit)?;
    if as_json {
        return json(&runs);
    }
    println!("{:<24} {:<16} {:<10} {:<19} {:>9}  steps", "run", "pipeline", "status", "started", "duration");
    for run in runs {
        let duration = run.ended.map_or("-".to_owned(), |end| format!("{:.2} s", end - run.started));
        println!(
            "{:<24} {:<16} {:<10} {:<19} {:>9}  {} ran, {} reused, {} failed, {} skipped",
            run.id,
            run.pipeline,
            run.status,
            time(run.started),
            duration,
            run.ran,
            run.cached,
            run.failed,
            run.skipped
        );
    }
    Ok(())
}

/// `weir show RUN`.
pub(crate) fn show(history: &History, tenant: &str, run: &str, as_json: bool) -> anyhow::Result<()> {
    let detail = history.run_detail(&history.resolve_run(tenant, run)?)?;
    if as_json {
        return json(&detail);
    }
    let run = &detail.summary;
    println!("run {} of `{}`: {} (host {}, started {})", run.id, run.pipeline, run.status, run.host, time(run.started));
    println!("params: {}", detail.params);
    for step in &detail.steps {
        let reuse = step.reused_from.as_deref().map(|from| format!(" (reused from {from})")).unwrap_or_default();
        println!("  {:<8} {}  {:.1} ms{reuse}", step.status, step.step, step.duration_ms);
        for (name, digest) in &step.outputs {
            println!("      output {name}: {digest}");
        }
        if !step.metrics.is_empty() {
            let metrics: Vec<String> = step.metrics.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("      metrics: {}", metrics.join(" "));
        }
        if let Some(error) = &step.error {
            println!("      error: {}", error.replace('\n', "\n        "));
        }
    }
    Ok(())
}

/// `weir logs RUN STEP`.
pub(crate) fn logs(
    history: &History,
    tenant: &str,
    workspace: &Path,
    run: &str,
    step: &str,
    as_json: bool,
) -> anyhow::Result<()> {
    let run = history.resolve_run(tenant, run)?;
    let record = history.step_record(&run, step)?;
    let logs = record.logs.with_context(|| format!("step `{step}` of run {run} has no logs (it did not run)"))?;
    let store = Store::open(workspace)?;
    let text = |digest: &Digest| -> anyhow::Result<String> {
        Ok(String::from_utf8_lossy(&store.read_file(digest)?).into_owned())
    };
    let (stdout, stderr) = (text(&logs.stdout)?, text(&logs.stderr)?);
    if as_json {
        return json(&serde_json::json!({"run_id": run, "step": step, "stdout": stdout, "stderr": stderr}));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "--- stdout ---\n{}", stdout.trim_end())?;
    writeln!(out, "--- stderr ---\n{}", stderr.trim_end())?;
    Ok(())
}

/// `weir metrics`.
pub(crate) fn metrics(
    history: &History,
    tenant: &str,
    pipeline: Option<&str>,
    metric: Option<&str>,
    limit: usize,
    as_json: bool,
) -> anyhow::Result<()> {
    let rows = history.metrics_table(tenant, pipeline, metric, limit)?;
    if as_json {
        return json(&rows);
    }
    let mut columns: Vec<&String> = rows.iter().flat_map(|row| row.metrics.keys()).collect();
    columns.sort();
    columns.dedup();
    print!("{:<24} {:<10}", "run", "status");
    for column in &columns {
        print!(" {column:>16}");
    }
    println!("  params");
    for row in &rows {
        print!("{:<24} {:<10}", row.run_id, row.status);
        for column in &columns {
            match row.metrics.get(*column) {
                Some(value) => print!(" {value:>16.6}"),
                None => print!(" {:>16}", "-"),
            }
        }
        println!("  {}", row.params);
    }
    Ok(())
}

/// `weir explain RUN STEP`.
pub(crate) fn explain(history: &History, tenant: &str, run: &str, step: &str, as_json: bool) -> anyhow::Result<()> {
    let explanation = history.explain(&history.resolve_run(tenant, run)?, step)?;
    if as_json {
        return json(&explanation);
    }
    let compared = explanation.compared_with.as_deref().map(|r| format!(", compared with run {r}")).unwrap_or_default();
    println!("step `{}` of run {}: {}{compared}", explanation.step, explanation.run_id, explanation.status);
    for reason in &explanation.reasons {
        println!("  - {reason}");
    }
    Ok(())
}

/// `weir lineage DIGEST`.
pub(crate) fn lineage(history: &History, tenant: &str, digest: &Digest, as_json: bool) -> anyhow::Result<()> {
    let chain = history.lineage(tenant, digest)?;
    if as_json {
        return json(&chain);
    }
    for node in chain {
        match (&node.step, &node.path) {
            (Some(step), _) => {
                println!("{} = {step}.{} (run {})", node.digest, node.output, node.run_id);
                for (name, input) in &node.inputs {
                    println!("    from input {name}: {input}");
                }
            }
            (None, path) => println!(
                "{} = pipeline input {} read from {} (run {})",
                node.digest,
                node.output,
                path.as_deref().unwrap_or("?"),
                node.run_id
            ),
        }
    }
    Ok(())
}
