//! The history commands: `runs`, `show`, `logs`, `metrics`, `explain`, `lineage`.

use std::io::{IsTerminal, Read, Write};

use anyhow::bail;
use weir::{Digest, Logs, TenantView};

use crate::terminal::printable;

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

/// `weir runs`.
pub(crate) fn runs(view: &TenantView<'_>, filter: &weir::RunFilter, as_json: bool) -> anyhow::Result<()> {
    let runs = view.runs(filter)?;
    if as_json {
        return crate::render::print_json(&runs);
    }
    println!("{:<24} {:<16} {:<10} {:<19} {:>9}  steps", "run", "pipeline", "status", "started", "duration");
    for run in runs {
        let duration = run.ended.map_or("-".to_owned(), |end| format!("{:.2} s", end - run.started));
        let verify = if run.kind == "verify" { " (verify)" } else { "" };
        let cancelled = if run.cancelled > 0 { format!(", {} cancelled", run.cancelled) } else { String::new() };
        println!(
            "{:<24} {:<16} {:<10} {:<19} {:>9}  {} ran, {} reused, {} failed, {} skipped{cancelled}{verify}",
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
pub(crate) fn show(view: &TenantView<'_>, run: &str, as_json: bool) -> anyhow::Result<()> {
    print_run(&view.run(run)?, as_json)
}

/// Prints a run's document, as JSON or for reading.
pub(crate) fn print_run(detail: &weir::RunDetail, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return crate::render::print_json(detail);
    }
    let run = &detail.summary;
    let what = if run.kind == "verify" { "verification run" } else { "run" };
    println!(
        "{what} {} of `{}`: {} (host {}, started {})",
        run.id,
        run.pipeline,
        run.status,
        run.host,
        time(run.started)
    );
    println!("params: {}", detail.params);
    for step in &detail.steps {
        let reuse = step.reused_from.as_deref().map(|from| format!(" (reused from {from})")).unwrap_or_default();
        println!("  {:<8} {}  {:.1} ms{reuse}", step.status, step.step, step.duration_ms);
        for (name, digest) in &step.outputs {
            println!("      output {name}: {digest}");
        }
        if !step.metrics.is_empty() {
            let metrics: Vec<String> = step.metrics.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mean = if step.entries.is_empty() { "" } else { " (means over entries)" };
            println!("      metrics{mean}: {}", metrics.join(" "));
        }
        for (entry, report) in &step.entries {
            let metrics: String = report.metrics.iter().map(|(k, v)| format!(" {k}={v}")).collect();
            println!("      entry {:<8} {}{metrics}", report.status.as_str(), printable(entry));
        }
        for attempt in &step.details.attempts {
            let entry =
                attempt.entry.as_deref().map(|entry| format!(" of entry {}", printable(entry))).unwrap_or_default();
            println!(
                "      attempt {}{entry} failed after {:.1} ms, retried: {}",
                attempt.attempt,
                attempt.duration_ms,
                printable(&attempt.error.replace('\n', " "))
            );
        }
        for placement in &step.details.placements {
            let node =
                placement.node.as_deref().map(|node| format!(" on node {}", printable(node))).unwrap_or_default();
            let again = if placement.submissions > 1 {
                format!(", submitted {} times", placement.submissions)
            } else {
                String::new()
            };
            let exit = placement
                .exit_code
                .as_deref()
                .map(|code| format!(", exit code {}", printable(code)))
                .unwrap_or_default();
            println!(
                "      {} job {}{node}: {}{exit}{again}",
                placement.executor,
                printable(&placement.job),
                printable(&placement.state)
            );
        }
        if let Some(error) = &step.error {
            println!("      error: {}", printable(error).replace('\n', "\n        "));
        }
    }
    Ok(())
}

/// `weir logs RUN STEP [--attempt N]`.
pub(crate) fn logs(
    view: &TenantView<'_>,
    run: &str,
    step: &str,
    attempt: Option<u32>,
    as_json: bool,
) -> anyhow::Result<()> {
    let run = view.run_id(run)?;
    let record = view.step(&run, step)?;
    let retried = &record.details.attempts;
    let streams: Vec<(Option<&str>, Logs)> = match attempt {
        // An attempt that was retried: the step's, or each entry's with that number.
        Some(number) if retried.iter().any(|a| a.attempt == number) => {
            retried.iter().filter(|a| a.attempt == number).filter_map(|a| Some((a.entry.as_deref(), a.logs?))).collect()
        }
        Some(number) if number != last_attempt(retried) => {
            bail!("step `{step}` of run {run} made {} attempt(s); there is no attempt {number}", last_attempt(retried))
        }
        _ => match record.logs {
            Some(logs) => vec![(None, logs)],
            // A map step's logs are its entries'.
            None => {
                record.entries.iter().filter_map(|(entry, report)| Some((Some(entry.as_str()), report.logs?))).collect()
            }
        },
    };
    if streams.is_empty() {
        bail!("step `{step}` of run {run} has no logs (it did not run)");
    }
    if attempt.is_none() && !retried.is_empty() && !as_json {
        eprintln!(
            "note: step `{step}` was retried; these are the last attempt's logs \
             (earlier ones: weir logs {run} {step} --attempt N)"
        );
    }
    let mut out = std::io::stdout().lock();
    if as_json {
        write!(out, "{{\"run_id\":{},\"step\":{}", serde_json::to_string(&run)?, serde_json::to_string(step)?)?;
        let entries = streams.first().is_some_and(|(entry, _)| entry.is_some());
        if entries {
            write!(out, ",\"entries\":{{")?;
        }
        for (n, (entry, logs)) in streams.iter().enumerate() {
            if let Some(entry) = entry {
                write!(out, "{}{}:{{", if n > 0 { "," } else { "" }, serde_json::to_string(entry)?)?;
            }
            write!(out, "{}\"stdout\":", if entry.is_some() { "" } else { "," })?;
            write_json_string(&mut out, view.open_file(&logs.stdout)?)?;
            write!(out, ",\"stderr\":")?;
            write_json_string(&mut out, view.open_file(&logs.stderr)?)?;
            if entry.is_some() {
                write!(out, "}}")?;
            }
        }
        writeln!(out, "{}}}", if entries { "}" } else { "" })?;
        return Ok(());
    }
    let terminal = std::io::stdout().is_terminal();
    for (entry, logs) in &streams {
        for (name, digest) in [("stdout", &logs.stdout), ("stderr", &logs.stderr)] {
            match entry {
                Some(entry) => writeln!(out, "--- entry {}: {name} ---", printable(entry))?,
                None => writeln!(out, "--- {name} ---")?,
            }
            for_each_text_chunk(view.open_file(digest)?, |text| {
                if terminal { out.write_all(printable(text).as_bytes()) } else { out.write_all(text.as_bytes()) }
            })?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// The number of a step's last attempt, given those that were retried.
fn last_attempt(retried: &[weir::Attempt]) -> u32 {
    retried.iter().filter(|a| a.entry.is_none()).map(|a| a.attempt).max().unwrap_or(0) + 1
}

/// Writes the bytes `reader` yields as one JSON string, streaming (invalid
/// UTF-8 becomes U+FFFD, as in a lossy conversion).
fn write_json_string(out: &mut impl Write, reader: impl Read) -> anyhow::Result<()> {
    out.write_all(b"\"")?;
    for_each_text_chunk(reader, |text| {
        let quoted = serde_json::to_string(text).map_err(std::io::Error::other)?;
        out.write_all(&quoted.as_bytes()[1..quoted.len() - 1])
    })?;
    out.write_all(b"\"")?;
    Ok(())
}

/// Calls `visit` with the text `reader` yields, a chunk at a time, never
/// splitting a character; invalid UTF-8 becomes U+FFFD.
fn for_each_text_chunk(
    mut reader: impl Read,
    mut visit: impl FnMut(&str) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut buffer = vec![0u8; 64 << 10];
    let mut held = 0;
    loop {
        let read = reader.read(&mut buffer[held..])?;
        let (end, at_end) = (held + read, read == 0);
        let mut start = 0;
        while start < end {
            let err = match std::str::from_utf8(&buffer[start..end]) {
                Ok(text) => {
                    visit(text)?;
                    start = end;
                    break;
                }
                Err(err) => err,
            };
            let valid = start + err.valid_up_to();
            visit(std::str::from_utf8(&buffer[start..valid]).unwrap_or_default())?;
            match err.error_len() {
                Some(bad) => {
                    visit("\u{fffd}")?;
                    start = valid + bad;
                }
                None if at_end => {
                    visit("\u{fffd}")?;
                    start = end;
                }
                // An incomplete character at the end: kept for the next read.
                None => {
                    start = valid;
                    break;
                }
            }
        }
        buffer.copy_within(start..end, 0);
        held = end - start;
        if at_end {
            return Ok(());
        }
    }
}

/// `weir explain RUN STEP`.
pub(crate) fn explain(view: &TenantView<'_>, run: &str, step: &str, as_json: bool) -> anyhow::Result<()> {
    let explanation = view.explain(run, step)?;
    if as_json {
        return crate::render::print_json(&explanation);
    }
    let compared = explanation.compared_with.as_deref().map(|r| format!(", compared with run {r}")).unwrap_or_default();
    println!("step `{}` of run {}: {}{compared}", explanation.step, explanation.run_id, explanation.status);
    for reason in &explanation.reasons {
        println!("  - {reason}");
    }
    Ok(())
}

/// `weir lineage DIGEST`.
pub(crate) fn lineage(view: &TenantView<'_>, digest: &Digest, as_json: bool) -> anyhow::Result<()> {
    let chain = view.lineage(digest)?;
    if as_json {
        return crate::render::print_json(&chain);
    }
    for node in chain {
        match (&node.step, &node.path) {
            (Some(step), _) => {
                println!("{} = {step}.{} (run {})", node.digest, node.output, node.run_id);
                for (name, input) in &node.inputs {
                    let same = if *input == node.digest { " (passed through unchanged)" } else { "" };
                    println!("    from input {name}: {input}{same}");
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
