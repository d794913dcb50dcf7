//! Starting a run of a published pipeline version: check the trigger
//! against the version (parameters, inputs), record it, and execute it on
//! a thread of its own (its steps go to the engine's pool; nothing of a run
//! runs on the async runtime).

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weir::{Digest, RunOptions};

use crate::ServerError;
use crate::bundle::Bundle;
use crate::db::now;
use crate::problem::Problem;
use crate::state::AppState;

/// What a trigger asks for (`POST /v1/pipelines/{name}/runs`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// The version to run (default: the pipeline's default version).
    #[serde(default)]
    pub version: Option<String>,
    /// Parameter values, each of its default's type.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: BTreeMap<String, Value>,
    /// Pipeline inputs replaced by uploaded blobs: input name → digest.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// Labels to find the run by (`GET /v1/runs?label=KEY=VALUE`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A published version as a trigger needs it.
pub struct Version {
    /// Its name.
    pub name: String,
    /// Its files.
    pub bundle: Bundle,
    /// Each pipeline input's path in the bundle, and whether it was published.
    pub inputs: BTreeMap<String, InputInfo>,
}

/// A pipeline input of a published version.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InputInfo {
    /// Its path in the bundle.
    pub path: String,
    /// Whether its content was published (else each trigger must give it).
    pub published: bool,
}

/// Version `version` (or the default) of `tenant`'s pipeline `pipeline`.
pub fn find_version(state: &AppState, tenant: &str, pipeline: &str, version: Option<&str>) -> Result<Version, Problem> {
    let row = state.db.with(|conn| {
        let query = "SELECT v.version, v.bundle, v.inputs FROM versions v JOIN pipelines p
                     ON p.tenant = v.tenant AND p.name = v.pipeline
                     WHERE v.tenant = ?1 AND v.pipeline = ?2 AND v.version = coalesce(?3, p.default_version)";
        conn.query_row(query, params![tenant, pipeline, version], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?))
        })
        .optional()
    })?;
    let Some((name, bundle, inputs)) = row else {
        return Err(match version {
            Some(version) => Problem::not_found(format!("version `{version}` of pipeline `{pipeline}`")),
            None => Problem::not_found(format!("pipeline `{pipeline}`")),
        });
    };
    let bundle = serde_json::from_str(&bundle).map_err(Problem::internal)?;
    let inputs = serde_json::from_str(&inputs).map_err(Problem::internal)?;
    Ok(Version { name, bundle, inputs })
}

/// Version `version` (or the default) of `tenant`'s pipeline `pipeline`,
/// loaded (without its inputs' content, which a trigger may give).
pub fn version_pipeline(
    state: &AppState,
    tenant: &str,
    pipeline: &str,
    version: Option<&str>,
) -> Result<(Version, weir::Pipeline), Problem> {
    let version = find_version(state, tenant, pipeline, version)?;
    let materialized = version.bundle.materialize(state, tenant)?;
    // The cache holds pipelines loaded to run; one whose inputs a trigger
    // must give cannot be, and is loaded on its own each time.
    let loaded = match state.pipeline(&materialized.manifest, || materialized.load()) {
        Ok(pipeline) => pipeline,
        Err(_) => materialized.load_without_inputs()?.0,
    };
    Ok((version, loaded))
}

/// A run accepted for execution.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The run's id.
    pub id: String,
    /// The pipeline.
    pub pipeline: String,
    /// The version it runs.
    pub version: String,
    /// `running` (or, for a replayed trigger, the run's status now).
    pub status: String,
}

/// Where a trigger comes from, besides its request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Origin<'a> {
    /// The client's `Idempotency-Key`.
    pub idempotency_key: Option<&'a str>,
    /// The run this one retries.
    pub retry_of: Option<&'a str>,
    /// The schedule that fired it.
    pub schedule: Option<&'a str>,
}

/// A trigger checked against its version, ready to start.
pub struct Prepared {
    pipeline: weir::Pipeline,
    options: RunOptions,
    version: String,
    materialized: crate::bundle::Materialized,
}

/// Checks `request` against `tenant`'s pipeline `pipeline_name`: labels,
/// version, inputs (known, uploaded, none missing) and parameters (known,
/// of the default's type). Errors name the field.
pub fn prepare(
    state: &AppState,
    tenant: &str,
    pipeline_name: &str,
    request: &TriggerRequest,
) -> Result<Prepared, Problem> {
    for (key, value) in &request.labels {
        check_label(key, value)?;
    }
    let version = find_version(state, tenant, pipeline_name, request.version.as_deref())?;
    let mut bundle = version.bundle.clone();
    for (name, digest) in &request.inputs {
        let field = || format!("inputs.{name}");
        let info = version.inputs.get(name).ok_or_else(|| {
            let known: Vec<&str> = version.inputs.keys().map(String::as_str).collect();
            Problem::bad_field(field(), format!("the pipeline has no such input (it has: {})", known.join(", ")))
        })?;
        let digest = Digest::parse(digest).map_err(|err| Problem::bad_field(field(), err))?;
        if !crate::api::blobs::owns(state, tenant, &digest)? {
            return Err(Problem::bad_field(
                field(),
                format!("{digest} is not a blob you uploaded (PUT /v1/blobs/{digest})"),
            ));
        }
        bundle = bundle.replacing(&info.path, digest);
    }
    if let Some((name, _)) =
        version.inputs.iter().find(|(name, info)| !info.published && !request.inputs.contains_key(*name))
    {
        return Err(Problem::bad_field(
            format!("inputs.{name}"),
            "the version was published without this input's content: give it by digest in `inputs`",
        ));
    }
    let materialized = bundle.materialize(state, tenant)?;
    let pipeline = state.pipeline(&materialized.manifest, || materialized.load())?;
    let mut options = RunOptions::new().tenant(tenant);
    for (name, value) in &request.params {
        let single = RunOptions::new().param(name, value.clone());
        single.resolve(&pipeline).map_err(|err| {
            let why = match err.kind() {
                weir::ValidationErrorKind::UnknownParam { known, .. } => {
                    format!("the pipeline has no such parameter (it has: {})", known.join(", "))
                }
                // The problem alone: its location (`--param NAME`) is the CLI's.
                other => materialized.hide_paths(&other.to_string()),
            };
            Problem::bad_field(format!("params.{name}"), why)
        })?;
        options = options.param(name, value.clone());
    }
    // The history keeps the labels too, so `weir runs --label` finds the run.
    for (key, value) in &request.labels {
        options = options.label(key, value);
    }
    Ok(Prepared { pipeline, options, version: version.name, materialized })
}

/// Checks `request` against `pipeline_name` of `tenant`, records the run
/// and starts it. With an idempotency key, a trigger already made with that
/// key returns its run instead (and `false`: nothing new started).
pub fn trigger(
    state: &std::sync::Arc<AppState>,
    tenant: &str,
    pipeline_name: &str,
    request: &TriggerRequest,
    origin: Origin<'_>,
) -> Result<(Accepted, bool), Problem> {
    if let Some(key) = origin.idempotency_key
        && let Some(accepted) = by_idempotency_key(state, tenant, key)?
    {
        return Ok((accepted, false));
    }
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the server is stopping: trigger the run again once it is back",
        ));
    }
    let prepared = prepare(state, tenant, pipeline_name, request)?;
    let id = weir::new_run_id();
    let recorded = json!({ "version": prepared.version, "params": request.params, "inputs": request.inputs, "labels": request.labels });
    let inserted = state.db.with(|conn| {
        conn.execute(
            "INSERT INTO runs (id, tenant, pipeline, version, status, labels, request, idempotency_key, retry_of, schedule, created)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                id,
                tenant,
                pipeline_name,
                prepared.version,
                json!(request.labels).to_string(),
                recorded.to_string(),
                origin.idempotency_key,
                origin.retry_of,
                origin.schedule,
                now(),
            ],
        )
    });
    if let Err(err) = inserted {
        // Two triggers with one key at once: the other one won.
        if let Some(key) = origin.idempotency_key
            && let Some(accepted) = by_idempotency_key(state, tenant, key)?
        {
            return Ok((accepted, false));
        }
        return Err(err.into());
    }
    let version = prepared.version.clone();
    start(state, &id, tenant, prepared);
    let accepted = Accepted { id, pipeline: pipeline_name.to_owned(), version, status: "running".into() };
    Ok((accepted, true))
}

/// Executes recorded run `id` on a thread of its own.
fn start(
    state: &std::sync::Arc<AppState>,
    id: &str,
    tenant: &str,
    Prepared { pipeline, options, materialized, .. }: Prepared,
) {
    let (live, sink) = state.live.register(id, tenant);
    let options = options.run_id(id).events(sink).cancel_with(live.cancel.clone());
    let run_state = state.clone();
    let run_id = id.to_owned();
    let started = std::thread::Builder::new().name(format!("weir-serve-{id}")).spawn(move || {
        let result = run_state.engine.run(&pipeline, &options);
        let (status, error) = match &result {
            Ok(report) => (report.status.as_str().to_owned(), None),
            Err(err) => ("failed".to_owned(), Some(materialized.hide_paths(&err.to_string()))),
        };
        finish(&run_state, &run_id, &status, error.as_deref());
    });
    if let Err(err) = started {
        finish(state, id, "failed", Some(&format!("starting the run's thread: {err}")));
    }
}

/// Records how run `id` ended, tells its followers, and forgets it.
fn finish(state: &AppState, id: &str, status: &str, error: Option<&str>) {
    let recorded = state.db.with(|conn| {
        conn.execute(
            "UPDATE runs SET status = ?2, error = ?3, ended = ?4 WHERE id = ?1",
            params![id, status, error, now()],
        )
    });
    if let Err(err) = recorded {
        eprintln!("weir serve: recording the end of run {id}: {err}");
    }
    if let Some(run) = state.live.remove(id) {
        run.end(json!({ "run": id, "status": status, "error": error }));
    }
}

fn by_idempotency_key(state: &AppState, tenant: &str, key: &str) -> Result<Option<Accepted>, ServerError> {
    state.db.with(|conn| {
        conn.query_row(
            "SELECT id, pipeline, version, status FROM runs WHERE tenant = ?1 AND idempotency_key = ?2",
            params![tenant, key],
            |row| Ok(Accepted { id: row.get(0)?, pipeline: row.get(1)?, version: row.get(2)?, status: row.get(3)? }),
        )
        .optional()
    })
}

/// Label keys and values: short, printable; keys are names.
pub(crate) fn check_label(key: &str, value: &str) -> Result<(), Problem> {
    let key_ok = !key.is_empty()
        && key.len() <= 63
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if !key_ok {
        return Err(Problem::bad_field(format!("labels.{key}"), "a label key is 1 to 63 of A-Z a-z 0-9 _ - . /"));
    }
    if value.len() > 256 || value.chars().any(char::is_control) {
        return Err(Problem::bad_field(format!("labels.{key}"), "a label value is at most 256 printable characters"));
    }
    Ok(())
}

/// At start: runs recorded as running whose process is gone (the server
/// was killed) take the status the history gave them, `killed` where the
/// run never reached it.
pub fn settle_orphans(state: &AppState) -> Result<usize, ServerError> {
    let orphans: Vec<String> = state.db.with(|conn| {
        let mut statement = conn.prepare("SELECT id FROM runs WHERE status = 'running'")?;
        let ids = statement.query_map([], |row| row.get(0))?;
        ids.collect()
    })?;
    for id in &orphans {
        let status = match state.engine.history().run_detail(id) {
            Ok(detail) if detail.summary.status != weir::RunStatus::Running => detail.summary.status.as_str(),
            _ => "killed",
        };
        let error = (status == "killed").then_some("the server stopped while the run was executing");
        state.db.with(|conn| {
            conn.execute(
                "UPDATE runs SET status = ?2, error = coalesce(error, ?3), ended = coalesce(ended, ?4) WHERE id = ?1",
                params![id, status, error, now()],
            )
        })?;
    }
    Ok(orphans.len())
}
