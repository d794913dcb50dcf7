//! Writing step records, and the queries behind the history commands.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::{History, db_error, now};
use crate::{Digest, EntryReport, Error, Logs, Phases, Result, RunStatus, StepErrorKind, StepStatus, Verification};

/// One metric value as reported, in order.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct MetricPoint {
    /// The metric's name.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its position as the step gave it (an epoch, a batch), if it did.
    #[serde(default)]
    pub at: Option<u64>,
    /// When it was reported (seconds since the Unix epoch).
    pub time: f64,
}

/// A metric's values in the order reported, each with its position: the one
/// the step gave with it (an epoch, a batch) or, where it gave none, the
/// value's place in the series (0, 1, 2…).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct MetricSeries {
    /// The position of each value.
    pub at: Vec<u64>,
    /// The values.
    pub values: Vec<f64>,
}

impl MetricSeries {
    /// Values at positions 0, 1, 2…
    pub fn indexed(values: Vec<f64>) -> Self {
        Self { at: (0..values.len() as u64).collect(), values }
    }

    /// Appends `value` at position `at`.
    pub fn push(&mut self, at: u64, value: f64) {
        self.at.push(at);
        self.values.push(value);
    }

    /// How many values the series holds.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// What the history keeps of one step in one run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct StepRecord {
    /// The step.
    pub step: String,
    /// Its position in the pipeline's order.
    pub position: usize,
    /// How it ended.
    pub status: StepStatus,
    /// The cache key, when one was computed.
    pub cache_key: Option<Digest>,
    /// For a cached step, the run whose execution it reused.
    pub reused_from: Option<String>,
    /// Why the step was made to execute (`--rerun`, `--no-cache`, `reuse = false`).
    pub forced: Option<String>,
    /// Wall time in milliseconds.
    pub duration_ms: f64,
    /// When it settled (seconds since the Unix epoch); null while it runs.
    #[serde(default)]
    pub finished: Option<f64>,
    /// The cache key's material as JSON (what `explain` compares).
    #[serde(skip)]
    pub key_material: Option<String>,
    /// Input digests by name.
    pub inputs: BTreeMap<String, Digest>,
    /// Output digests by name.
    pub outputs: BTreeMap<String, Digest>,
    /// The error of a failed step.
    pub error: Option<String>,
    /// The captured stdout and stderr.
    pub logs: Option<Logs>,
    /// The last value of each metric (a map step: the means over its entries).
    pub metrics: BTreeMap<String, f64>,
    /// For a map step: how each entry ended, with its logs and metrics
    /// (empty for other steps).
    pub entries: BTreeMap<String, EntryReport>,
    /// What else the run knew of the step.
    #[serde(flatten)]
    pub details: StepDetails,
    /// Every metric value, in order (written, not read back here).
    #[serde(skip)]
    pub series: Vec<MetricPoint>,
}

impl StepRecord {
    /// The parameters the step ran with (templates such as
    /// `${params.epochs}` resolved), from its cache key's material; `None`
    /// when no key was recorded.
    pub fn resolved_params(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        let material: serde_json::Value = serde_json::from_str(self.key_material.as_deref()?).ok()?;
        material.get("params")?.as_object().cloned()
    }
}

/// What the history keeps of a step beyond its outcome (one JSON column).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct StepDetails {
    /// The cause of a failure, as a value (`error` has it as text).
    pub error_kind: Option<StepErrorKind>,
    /// Things the user should know, e.g. that a GPU was asked for and none was there.
    pub warnings: Vec<String>,
    /// Calls to native functions that failed.
    pub native_failures: u64,
    /// For a skipped step, the upstream step that kept it from running.
    pub blocked_by: Option<String>,
    /// In a verifying run, what re-executing the step showed.
    pub verification: Option<Verification>,
    /// Where the execution's time went (absent unless the step executed).
    pub phases: Option<Phases>,
    /// The failed attempts that were retried before its outcome.
    pub attempts: Vec<crate::Attempt>,
    /// Where its executions ran on a cluster (the `slurm` executor).
    pub placements: Vec<crate::Placement>,
}

/// One line of `weir runs`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RunSummary {
    /// The run id.
    pub id: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The tenant the run belongs to.
    pub tenant: String,
    /// The manifest file the pipeline was loaded from, if it was.
    pub manifest_path: Option<String>,
    /// The digest of that manifest's bytes at the time of the run.
    pub manifest_digest: Option<String>,
    /// How it ended (or `Running`, or `Killed` when its process died).
    pub status: RunStatus,
    /// `run`, or `verify` for a run of `weir verify` (which re-executes
    /// another run's cached steps and is not one of the pipeline's runs).
    pub kind: String,
    /// Start (seconds since the Unix epoch).
    pub started: f64,
    /// End, if it ended.
    pub ended: Option<f64>,
    /// The host it ran on.
    pub host: String,
    /// Steps that executed.
    pub ran: usize,
    /// Steps reused from the cache.
    pub cached: usize,
    /// Steps that failed.
    pub failed: usize,
    /// Steps skipped.
    pub skipped: usize,
    /// Steps the run's cancellation stopped or kept from starting.
    pub cancelled: usize,
    /// Its labels ([`RunOptions::label`](crate::RunOptions::label)).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Which of a tenant's runs to list, newest first.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunFilter {
    /// Only runs of this pipeline.
    pub pipeline: Option<String>,
    /// Only runs with this label (key, value).
    pub label: Option<(String, String)>,
    /// At most this many.
    pub limit: usize,
}

impl RunFilter {
    /// The `limit` newest runs of any pipeline.
    pub fn newest(limit: usize) -> Self {
        Self { pipeline: None, label: None, limit }
    }

    /// Only runs of `pipeline` (all when `None`).
    pub fn pipeline(mut self, pipeline: Option<&str>) -> Self {
        self.pipeline = pipeline.map(str::to_owned);
        self
    }

    /// Only runs labelled `key` = `value`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.label = Some((key.into(), value.into()));
        self
    }
}

/// A run with its parameters and every step: the one document of a run,
/// printed by `weir run --json` and `weir show --json` and described by
/// `docs/run.schema.json`. (It reads back from JSON too, as a client of
/// `weir serve` gets it.)
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub summary: RunSummary,
    /// The run's parameters.
    pub params: serde_json::Value,
    /// The digests of the pipeline's named outputs whose steps succeeded.
    pub outputs: BTreeMap<String, Digest>,
    /// Things the application should know about the run as a whole.
    pub warnings: Vec<String>,
    /// The steps, in pipeline order.
    pub steps: Vec<StepRecord>,
}

impl RunDetail {
    /// The document of a run that just ended, from what was recorded of it
    /// (the same as [`History::run_detail`] reads back, without reading).
    pub(crate) fn assemble(start: &super::RunStart<'_>, end: &super::RunEnd, mut steps: Vec<StepRecord>) -> Self {
        steps.sort_by_key(|step| step.position);
        let count = |status: StepStatus| steps.iter().filter(|step| step.status == status).count();
        let summary = RunSummary {
            id: start.id.to_owned(),
            pipeline: start.pipeline.to_owned(),
            tenant: start.tenant.to_owned(),
            manifest_path: start.manifest_path.map(|path| path.display().to_string()),
            manifest_digest: start.manifest_digest.clone(),
            status: end.status,
            kind: start.kind.to_owned(),
            started: start.started,
            ended: Some(end.ended),
            host: super::host_name(),
            ran: count(StepStatus::Ran),
            cached: count(StepStatus::Cached),
            failed: count(StepStatus::Failed),
            skipped: count(StepStatus::Skipped),
            cancelled: count(StepStatus::Cancelled),
            labels: start.labels.clone(),
        };
        RunDetail {
            summary,
            params: start.params.clone(),
            outputs: end.outputs.clone(),
            warnings: end.warnings.clone(),
            steps,
        }
    }

    /// The record of step `name`, if the run has one.
    pub fn step(&self, name: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|step| step.step == name)
    }
}

/// One line of `weir metrics`: a run's parameters and final metric values.
#[derive(Debug, Clone, Serialize)]
pub struct MetricRow {
    /// The run id.
    pub run_id: String,
    /// The run's status.
    pub status: RunStatus,
    /// The run's parameters.
    pub params: serde_json::Value,
    /// Final values, by `STEP.METRIC`.
    pub metrics: BTreeMap<String, f64>,
}

/// A link in the chain that produced an artifact (`weir lineage`).
#[derive(Debug, Clone, Serialize)]
pub struct LineageNode {
    /// The artifact.
    pub digest: Digest,
    /// The run that produced it (or imported it).
    pub run_id: String,
    /// The step that produced it; `None` for a pipeline input.
    pub step: Option<String>,
    /// The step's output name, or the pipeline input's name.
    pub output: String,
    /// The digests the step read, by input name.
    pub inputs: BTreeMap<String, Digest>,
    /// For a pipeline input, the host path it was read from.
    pub path: Option<String>,
}

pub(super) fn digests(json: &str) -> BTreeMap<String, Digest> {
    serde_json::from_str(json).unwrap_or_default()
}

/// Column `column` of `row`, parsed (a status the history holds as text).
fn parsed<T: std::str::FromStr<Err = String>>(row: &Row<'_>, column: &str) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    text.parse()
        .map_err(|why: String| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, why.into()))
}

fn summary_from(row: &Row<'_>) -> rusqlite::Result<RunSummary> {
    Ok(RunSummary {
        id: row.get("id")?,
        pipeline: row.get("pipeline")?,
        tenant: row.get("tenant")?,
        manifest_path: row.get("manifest_path")?,
        manifest_digest: row.get("manifest_digest")?,
        status: parsed(row, "status")?,
        kind: row.get("kind")?,
        started: row.get("started")?,
        ended: row.get("ended")?,
        host: row.get("host")?,
        ran: row.get::<_, i64>("ran")? as usize,
        cached: row.get::<_, i64>("cached")? as usize,
        failed: row.get::<_, i64>("failed")? as usize,
        skipped: row.get::<_, i64>("skipped")? as usize,
        cancelled: row.get::<_, i64>("cancelled")? as usize,
        labels: row
            .get::<_, Option<String>>("labels")?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
    })
}

const SUMMARY_SQL: &str = "SELECT r.*,
    (SELECT count(*) FROM step_runs s WHERE s.run_id = r.id AND s.status = 'ran') AS ran,
    (SELECT count(*) FROM step_runs s WHERE s.run_id = r.id AND s.status = 'cached') AS cached,
    (SELECT count(*) FROM step_runs s WHERE s.run_id = r.id AND s.status = 'failed') AS failed,
    (SELECT count(*) FROM step_runs s WHERE s.run_id = r.id AND s.status = 'skipped') AS skipped,
    (SELECT count(*) FROM step_runs s WHERE s.run_id = r.id AND s.status = 'cancelled') AS cancelled,
    (SELECT json_group_object(l.key, l.value) FROM run_labels l WHERE l.run_id = r.id) AS labels
    FROM runs r";

impl History {
    /// Records steps' outcomes, their metric values and what they produced,
    /// and the values executing steps reported so far (`live`, by step), in
    /// one transaction.
    pub(crate) fn record_steps(
        &self,
        run_id: &str,
        records: &[StepRecord],
        live: &BTreeMap<String, Vec<MetricPoint>>,
    ) -> Result<()> {
        if records.is_empty() && live.is_empty() {
            return Ok(());
        }
        self.with(|conn| {
            let tx = conn.transaction().map_err(db_error("recording steps"))?;
            for record in records {
                insert_step(&tx, run_id, record)?;
            }
            for (step, points) in live {
                append_metrics(&tx, run_id, step, points)?;
            }
            tx.commit().map_err(db_error("recording steps"))
        })
    }

    /// The runs of `tenant` that `filter` admits, newest first.
    pub fn runs(&self, tenant: &str, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        self.with(|conn| {
            let sql = format!(
                "{SUMMARY_SQL} WHERE r.tenant = ?3 AND (?1 IS NULL OR r.pipeline = ?1)
                 AND (?4 IS NULL OR EXISTS (SELECT 1 FROM run_labels l WHERE l.run_id = r.id AND l.key = ?4 AND l.value = ?5))
                 ORDER BY r.started DESC LIMIT ?2"
            );
            let mut stmt = conn.prepare(&sql).map_err(db_error("listing runs"))?;
            let (key, value) = filter.label.as_ref().map(|(k, v)| (k.as_str(), v.as_str())).unzip();
            let rows = stmt
                .query_map(params![filter.pipeline, filter.limit as i64, tenant, key, value], summary_from)
                .map_err(db_error("listing runs"))?;
            rows.collect::<rusqlite::Result<_>>().map_err(db_error("listing runs"))
        })
    }

    /// The id of `tenant`'s run named by `spec`: a full id, a unique prefix,
    /// or `last`. Other tenants' runs are not found.
    pub fn resolve_run(&self, tenant: &str, spec: &str) -> Result<String> {
        self.with(|conn| {
            let ids: Vec<String> = if spec == "last" {
                conn.prepare("SELECT id FROM runs WHERE tenant = ?1 ORDER BY started DESC LIMIT 1")
                    .and_then(|mut s| s.query_map([tenant], |r| r.get(0))?.collect())
            } else {
                conn.prepare(
                    "SELECT id FROM runs WHERE tenant = ?3 AND (id = ?1 OR id LIKE ?2 ESCAPE '\\')
                     ORDER BY started DESC LIMIT 3",
                )
                .and_then(|mut s| {
                    let pattern = format!("{}%", spec.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
                    s.query_map(params![spec, pattern, tenant], |r| r.get(0))?.collect()
                })
            }
            .map_err(db_error("finding the run"))?;
            match ids.as_slice() {
                [] if spec == "last" => Err(Error::NotInHistory("no runs recorded in this workspace yet".into())),
                [] => Err(Error::NotInHistory(format!("no run `{spec}` in this workspace (see `weir runs`)"))),
                [id] => Ok(id.clone()),
                _ if ids.contains(&spec.to_owned()) => Ok(spec.to_owned()),
                _ => Err(Error::NotInHistory(format!("`{spec}` matches several runs; give more of the id"))),
            }
        })
    }

    /// A run and all its steps.
    pub fn run_detail(&self, id: &str) -> Result<RunDetail> {
        self.with(|conn| {
            type Row = (RunSummary, String, Option<String>, Option<String>);
            let (summary, params, outputs, warnings): Row = conn
                .query_row(&format!("{SUMMARY_SQL} WHERE r.id = ?1"), [id], |row| {
                    Ok((summary_from(row)?, row.get("params")?, row.get("outputs")?, row.get("warnings")?))
                })
                .optional()
                .map_err(db_error("reading a run"))?
                .ok_or_else(|| Error::NotInHistory(format!("no run `{id}`")))?;
            let mut stmt = conn
                .prepare("SELECT * FROM step_runs WHERE run_id = ?1 ORDER BY position")
                .map_err(db_error("reading steps"))?;
            let steps = stmt
                .query_map([id], step_from)
                .map_err(db_error("reading steps"))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_error("reading steps"))?;
            let mut steps = steps;
            for step in &mut steps {
                step.metrics = step_final_metrics(conn, id, &step.step)?;
                step.entries = entries_of(conn, id, &step.step)?;
            }
            Ok(RunDetail {
                summary,
                params: serde_json::from_str(&params).unwrap_or_default(),
                outputs: outputs.as_deref().map(digests).unwrap_or_default(),
                warnings: warnings.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default(),
                steps,
            })
        })
    }

    /// One step of a run.
    pub fn step_record(&self, run_id: &str, step: &str) -> Result<StepRecord> {
        self.with(|conn| {
            let mut record = conn
                .query_row("SELECT * FROM step_runs WHERE run_id = ?1 AND step = ?2", [run_id, step], step_from)
                .optional()
                .map_err(db_error("reading a step"))?
                .ok_or_else(|| Error::NotInHistory(format!("run `{run_id}` has no step `{step}`")))?;
            record.entries = entries_of(conn, run_id, step)?;
            Ok(record)
        })
    }

    /// The most recent execution of `step` of `pipeline` by `tenant` in a
    /// run started before `before` (seconds since the epoch).
    pub(crate) fn execution_before(
        &self,
        pipeline: &str,
        step: &str,
        tenant: &str,
        before: f64,
    ) -> Result<Option<(String, StepRecord)>> {
        self.with(|conn| {
            conn.query_row(
                "SELECT s.* FROM step_runs s JOIN runs r ON r.id = s.run_id
                 WHERE r.pipeline = ?1 AND s.step = ?2 AND s.status IN ('ran', 'failed', 'cached') AND r.kind = 'run'
                   AND s.key_material IS NOT NULL AND r.tenant = ?3 AND r.started < ?4
                 ORDER BY r.started DESC LIMIT 1",
                rusqlite::params![pipeline, step, tenant, before],
                |row| Ok((row.get::<_, String>("run_id")?, step_from(row)?)),
            )
            .optional()
            .map_err(db_error("reading earlier executions"))
        })
    }

    /// One row per run that `filter` admits, newest first, with the final
    /// value of every metric (or only of `metric`).
    pub fn metrics_table(&self, tenant: &str, filter: &RunFilter, metric: Option<&str>) -> Result<Vec<MetricRow>> {
        let runs = self.runs(tenant, filter)?;
        self.with(|conn| {
            let mut rows = Vec::new();
            for run in runs {
                let params: String = conn
                    .query_row("SELECT params FROM runs WHERE id = ?1", [&run.id], |r| r.get(0))
                    .map_err(db_error("reading a run"))?;
                let metrics = run_final_metrics(conn, &run.id, metric)?;
                rows.push(MetricRow {
                    run_id: run.id,
                    status: run.status,
                    params: serde_json::from_str(&params).unwrap_or_default(),
                    metrics,
                });
            }
            Ok(rows)
        })
    }

    /// Run `id`'s line of `weir runs`.
    pub fn summary(&self, id: &str) -> Result<RunSummary> {
        self.with(|conn| {
            conn.query_row(&format!("{SUMMARY_SQL} WHERE r.id = ?1"), [id], summary_from)
                .optional()
                .map_err(db_error("reading a run"))?
                .ok_or_else(|| Error::NotInHistory(id.to_owned()))
        })
    }

    /// The last value of each metric of run `id`, by `STEP.METRIC`.
    pub fn final_metrics(&self, id: &str) -> Result<BTreeMap<String, f64>> {
        self.with(|conn| run_final_metrics(conn, id, None))
    }

    /// Every value of every metric of a run, by `STEP.METRIC`, in order; a
    /// reused step's are those of the run that executed it.
    pub fn metric_series(&self, run_id: &str) -> Result<BTreeMap<String, MetricSeries>> {
        self.with(|conn| {
            // A reused step's values are those of the run that executed it,
            // while that run is still recorded.
            let mut stmt = conn
                .prepare(
                    "SELECT m.step, m.name, m.value, coalesce(m.at, m.seq) FROM step_runs s
                     JOIN metrics m ON m.step = s.step AND m.run_id = CASE
                         WHEN s.status = 'cached' AND EXISTS (SELECT 1 FROM runs WHERE id = s.reused_from)
                         THEN s.reused_from ELSE s.run_id END
                     WHERE s.run_id = ?1 ORDER BY m.step, m.name, m.seq",
                )
                .map_err(db_error("reading metrics"))?;
            let mut series: BTreeMap<String, MetricSeries> = BTreeMap::new();
            let rows = stmt
                .query_map([run_id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, f64>(2)?, r.get::<_, i64>(3)?))
                })
                .map_err(db_error("reading metrics"))?;
            for row in rows {
                let (step, name, value, at) = row.map_err(db_error("reading metrics"))?;
                series.entry(format!("{step}.{name}")).or_default().push(at.max(0) as u64, value);
            }
            Ok(series)
        })
    }

    /// The chain of steps and pipeline inputs of `tenant`'s runs that
    /// produced `digest`, down to the input files. Every producer of an
    /// artifact is listed: each step (output) that wrote it, earliest run
    /// first, and the pipeline input it was imported as, so a step that
    /// passes its input through unchanged still leads to the input's file.
    pub fn lineage(&self, tenant: &str, digest: &Digest) -> Result<Vec<LineageNode>> {
        let mut chain = Vec::new();
        let mut queue = vec![*digest];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(next) = queue.pop() {
            if !seen.insert(next) {
                continue;
            }
            let producers = self.producers(tenant, &next)?;
            if producers.is_empty() && next == *digest {
                return Err(Error::NotInHistory(format!("no run in this workspace produced or imported {digest}")));
            }
            for node in producers {
                queue.extend(node.inputs.values().rev().copied());
                chain.push(node);
            }
        }
        Ok(chain)
    }

    /// Each step output that produced `digest` (its earliest execution), then
    /// the pipeline input it was first imported as.
    fn producers(&self, tenant: &str, digest: &Digest) -> Result<Vec<LineageNode>> {
        let text = digest.to_string();
        let reading = || db_error("reading lineage");
        self.with(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT a.run_id, a.step, a.output, a.inputs, min(r.started) FROM artifacts a
                     JOIN runs r ON r.id = a.run_id
                     WHERE a.digest = ?1 AND r.tenant = ?2 GROUP BY a.step, a.output ORDER BY min(r.started)",
                )
                .map_err(reading())?;
            let mut nodes = stmt
                .query_map([&text, tenant], |r| {
                    Ok(LineageNode {
                        digest: *digest,
                        run_id: r.get(0)?,
                        step: Some(r.get(1)?),
                        output: r.get(2)?,
                        inputs: digests(&r.get::<_, String>(3)?),
                        path: None,
                    })
                })
                .map_err(reading())?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(reading())?;
            let imported = conn
                .query_row(
                    "SELECT i.run_id, i.name, i.path FROM run_inputs i JOIN runs r ON r.id = i.run_id
                     WHERE i.digest = ?1 AND r.tenant = ?2 ORDER BY r.started LIMIT 1",
                    [&text, tenant],
                    |r| {
                        Ok(LineageNode {
                            digest: *digest,
                            run_id: r.get(0)?,
                            step: None,
                            output: r.get(1)?,
                            inputs: BTreeMap::new(),
                            path: Some(r.get(2)?),
                        })
                    },
                )
                .optional()
                .map_err(reading())?;
            nodes.extend(imported);
            Ok(nodes)
        })
    }
}

/// The last value of each metric (or only of `metric`) of run `id`, by `STEP.METRIC`.
fn run_final_metrics(conn: &rusqlite::Connection, id: &str, metric: Option<&str>) -> Result<BTreeMap<String, f64>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT step, name, value FROM metrics m WHERE run_id = ?1 AND (?2 IS NULL OR name = ?2)
             AND seq = (SELECT max(seq) FROM metrics WHERE run_id = m.run_id AND step = m.step AND name = m.name)",
        )
        .map_err(db_error("reading metrics"))?;
    stmt.query_map(params![id, metric], |r| {
        Ok((format!("{}.{}", r.get::<_, String>(0)?, r.get::<_, String>(1)?), r.get::<_, f64>(2)?))
    })
    .map_err(db_error("reading metrics"))?
    .collect::<rusqlite::Result<BTreeMap<_, _>>>()
    .map_err(db_error("reading metrics"))
}

/// Inserts one step's row, metric values and lineage (prepared statements are cached).
fn insert_step(tx: &rusqlite::Transaction<'_>, run_id: &str, record: &StepRecord) -> Result<()> {
    let json = |map: &BTreeMap<String, Digest>| serde_json::to_string(map).unwrap_or_default();
    tx.prepare_cached(
        "INSERT OR REPLACE INTO step_runs (run_id, step, position, status, cache_key, reused_from, forced,
             duration_ms, key_material, inputs, outputs, error, stdout, stderr, finished, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            run_id,
            record.step,
            record.position as i64,
            record.status.as_str(),
            record.cache_key.map(|k| k.to_string()),
            record.reused_from,
            record.forced,
            record.duration_ms,
            record.key_material,
            json(&record.inputs),
            json(&record.outputs),
            record.error,
            record.logs.map(|l| l.stdout.to_string()),
            record.logs.map(|l| l.stderr.to_string()),
            record.finished.unwrap_or_else(now),
            // Most steps have nothing to add: no column to write or parse.
            (record.details != StepDetails::default()).then(|| serde_json::to_string(&record.details).ok()).flatten(),
        ])
    })
    .map_err(db_error("recording a step"))?;
    insert_entries(tx, run_id, record)?;
    if record.status != StepStatus::Running && !record.series.is_empty() {
        // The step's whole series replaces what was written while it ran.
        tx.prepare_cached("DELETE FROM metrics WHERE run_id = ?1 AND step = ?2")
            .and_then(|mut stmt| stmt.execute(params![run_id, record.step]))
            .map_err(db_error("recording a metric"))?;
    }
    let mut seq: BTreeMap<&str, i64> = BTreeMap::new();
    let mut metric = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO metrics (run_id, step, name, value, seq, time, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(db_error("recording a metric"))?;
    for point in &record.series {
        let n = seq.entry(&point.name).or_default();
        metric
            .execute(params![run_id, record.step, point.name, point.value, *n, point.time, at_column(point.at)])
            .map_err(db_error("recording a metric"))?;
        *n += 1;
    }
    if record.status == StepStatus::Ran {
        let mut lineage = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO artifacts (digest, run_id, step, output, inputs) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(db_error("recording lineage"))?;
        for (output, digest) in &record.outputs {
            lineage
                .execute(params![digest.to_string(), run_id, record.step, output, json(&record.inputs)])
                .map_err(db_error("recording lineage"))?;
        }
    }
    Ok(())
}

/// Appends the values an executing step reported, after those written before.
fn append_metrics(tx: &rusqlite::Transaction<'_>, run_id: &str, step: &str, points: &[MetricPoint]) -> Result<()> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO metrics (run_id, step, name, value, seq, time, at) VALUES (?1, ?2, ?3, ?4,
             (SELECT coalesce(max(seq) + 1, 0) FROM metrics WHERE run_id = ?1 AND step = ?2 AND name = ?3), ?5, ?6)",
        )
        .map_err(db_error("recording a metric"))?;
    for point in points {
        stmt.execute(params![run_id, step, point.name, point.value, point.time, at_column(point.at)])
            .map_err(db_error("recording a metric"))?;
    }
    Ok(())
}

/// A metric's position as SQLite stores it (a signed integer; positions past
/// `i64::MAX` saturate there).
fn at_column(at: Option<u64>) -> Option<i64> {
    at.map(|at| i64::try_from(at).unwrap_or(i64::MAX))
}

fn step_from(row: &Row<'_>) -> rusqlite::Result<StepRecord> {
    let digest = |column: &str| -> rusqlite::Result<Option<Digest>> {
        Ok(row.get::<_, Option<String>>(column)?.and_then(|text| Digest::parse(&text).ok()))
    };
    let logs = match (digest("stdout")?, digest("stderr")?) {
        (Some(stdout), Some(stderr)) => Some(Logs { stdout, stderr }),
        _ => None,
    };
    Ok(StepRecord {
        step: row.get("step")?,
        position: row.get::<_, i64>("position")? as usize,
        status: parsed(row, "status")?,
        cache_key: digest("cache_key")?,
        reused_from: row.get("reused_from")?,
        forced: row.get("forced")?,
        duration_ms: row.get("duration_ms")?,
        finished: row.get("finished")?,
        key_material: row.get("key_material")?,
        inputs: digests(&row.get::<_, String>("inputs")?),
        outputs: digests(&row.get::<_, String>("outputs")?),
        error: row.get("error")?,
        logs,
        metrics: BTreeMap::new(),
        entries: BTreeMap::new(),
        details: row
            .get::<_, Option<String>>("details")?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
        series: Vec::new(),
    })
}

/// The entries of map step `step` in run `run_id` (none for other steps).
fn entries_of(conn: &rusqlite::Connection, run_id: &str, step: &str) -> Result<BTreeMap<String, EntryReport>> {
    let reading = || db_error("reading map entries");
    let mut stmt = conn
        .prepare_cached("SELECT entry, status, stdout, stderr, metrics FROM entry_runs WHERE run_id = ?1 AND step = ?2")
        .map_err(reading())?;
    let rows = stmt
        .query_map([run_id, step], |row| {
            let digest = |i: usize| -> rusqlite::Result<Option<Digest>> {
                Ok(row.get::<_, Option<String>>(i)?.and_then(|text| Digest::parse(&text).ok()))
            };
            let logs = match (digest(2)?, digest(3)?) {
                (Some(stdout), Some(stderr)) => Some(Logs { stdout, stderr }),
                _ => None,
            };
            let status = row.get::<_, String>(1)?.parse().unwrap_or(StepStatus::Failed);
            let metrics = serde_json::from_str(&row.get::<_, String>(4)?).unwrap_or_default();
            Ok((row.get::<_, String>(0)?, EntryReport::new(status, logs, metrics)))
        })
        .map_err(reading())?;
    rows.collect::<rusqlite::Result<_>>().map_err(reading())
}

fn insert_entries(tx: &rusqlite::Transaction<'_>, run_id: &str, record: &StepRecord) -> Result<()> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO entry_runs (run_id, step, entry, status, stdout, stderr, metrics)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(db_error("recording map entries"))?;
    for (entry, report) in &record.entries {
        let status = report.status.as_str();
        stmt.execute(params![
            run_id,
            record.step,
            entry,
            status,
            report.logs.map(|l| l.stdout.to_string()),
            report.logs.map(|l| l.stderr.to_string()),
            serde_json::to_string(&report.metrics).unwrap_or_default(),
        ])
        .map_err(db_error("recording map entries"))?;
    }
    Ok(())
}

fn step_final_metrics(conn: &rusqlite::Connection, run_id: &str, step: &str) -> Result<BTreeMap<String, f64>> {
    let mut stmt = conn
        .prepare(
            "SELECT name, value FROM metrics m WHERE run_id = ?1 AND step = ?2
             AND seq = (SELECT max(seq) FROM metrics WHERE run_id = m.run_id AND step = m.step AND name = m.name)",
        )
        .map_err(db_error("reading metrics"))?;
    let rows = stmt.query_map([run_id, step], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_error("reading metrics"))?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_error("reading metrics"))
}
