//! The designer: a published version drawn as cards and wires, edited by
//! adding steps, dragging an output onto an input, and setting parameters
//! and limits, each edit checked by the engine as it is made, then saved
//! as a new version. The page's script keeps the manifest's text and sends
//! each edit here; [`manifest_edit`](super::manifest_edit) makes it on the
//! TOML, so the manifest saved is the one a person would have written, and
//! a version opened and saved unchanged is the same version.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::{Deserialize, Serialize};
use serde_json::json;
use weir::{Pipeline, ValidationErrorKind};

use super::manifest_edit::{Edit, Model, apply, model};
use super::page::{Page, PageResult};
use super::pipelines::VersionQuery;
use super::runs::blocking;
use super::session::{Viewer, url_encode};
use crate::api::pipelines::PublishRequest;
use crate::bundle::Bundle;
use crate::launch::find_version;
use crate::problem::{Json, Problem};
use crate::state::AppState;

/// A problem the engine found in the edited pipeline, on the element at fault.
#[derive(Debug, Serialize)]
pub struct DesignProblem {
    /// The step at fault (`sub/step` inside a sub-pipeline), if one is.
    step: Option<String>,
    /// The field at fault (`module`, `inputs.text`), if one is.
    field: Option<String>,
    /// What is wrong.
    message: String,
}

/// What the page's script gets after each edit.
#[derive(Debug, Serialize)]
struct Checked {
    manifest: String,
    model: Model,
    problems: Vec<DesignProblem>,
}

/// The manifest of `bundle`, from the store.
fn manifest_text(state: &AppState, bundle: &Bundle) -> Result<String, Problem> {
    let digest =
        bundle.files.get(&bundle.manifest).ok_or_else(|| Problem::internal("a bundle without its manifest"))?;
    let bytes = state.engine.store().read_file(digest)?;
    String::from_utf8(bytes).map_err(|_| Problem::bad_field("manifest", "the manifest is not UTF-8 text"))
}

/// Loads `manifest` as if it replaced `bundle`'s, beside the bundle's other
/// files, and returns every problem the engine reports (inputs published
/// without content are no problem: each trigger gives them).
fn validate(state: &AppState, tenant: &str, bundle: &Bundle, manifest: &str) -> Result<Vec<DesignProblem>, Problem> {
    let materialized = bundle.materialize(state, tenant)?;
    let draft_name = format!(".designer-{}.toml", crate::tokens::random_hex(8)?);
    let draft = materialized.manifest.with_file_name(&draft_name);
    std::fs::write(&draft, manifest).map_err(|err| crate::ServerError::io("writing a draft manifest", err))?;
    let loaded = Pipeline::from_manifest_within_with(&materialized.dir, &draft, &materialized.packages());
    let _ = std::fs::remove_file(&draft);
    let Err(err) = loaded else { return Ok(Vec::new()) };
    let shown_name = bundle.manifest.rsplit('/').next().unwrap_or(&bundle.manifest);
    Ok(err
        .errors()
        .filter(|problem| {
            !matches!(problem.kind(), ValidationErrorKind::InputMissing { path } if path.starts_with(&materialized.dir))
        })
        .map(|problem| DesignProblem {
            step: problem.location().step.clone(),
            field: problem.location().field.clone(),
            message: materialized.hide_paths(&problem.kind().to_string()).replace(&draft_name, shown_name),
        })
        .collect())
}

/// `/pipelines/{name}/designer?version=V`: the designer, open on a version.
pub async fn open(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<VersionQuery>,
) -> PageResult {
    let tenant = viewer.caller.tenant.clone();
    let pipeline = name.clone();
    let (version, checked, modules) = blocking(&state, move |state| {
        let version = find_version(state, &tenant, &pipeline, query.version.as_deref())?;
        let manifest = manifest_text(state, &version.bundle)?;
        let problems = validate(state, &tenant, &version.bundle, &manifest)?;
        let modules: Vec<String> =
            version.bundle.files.keys().filter(|path| path.ends_with(".wasm")).cloned().collect();
        Ok((version.name, Checked { model: model(&manifest)?, manifest, problems }, modules))
    })
    .await?;
    let data = json!({ "pipeline": name, "version": version, "modules": modules, "checked": checked });
    let body = html! {
        p.crumbs { a href={ "/pipelines/" (url_encode(&name)) "?version=" (url_encode(&version)) } { "← pipeline " (name) } }
        h1 { "Designer: " (name) ", from version " (version) }
        div.designer #designer data-model=(data.to_string()) data-csrf=(viewer.csrf) {
            div {
                p.hint { "Drag from an output (filled circle) to an input (open circle) of another step, or to its "
                    strong { "+" } " to add an input. Keyboard: focus an output and press Enter, then an input and press Enter. "
                    "Select a step to set its parameters and limits." }
                div.canvas #canvas aria-label="The pipeline's steps" {}
                noscript { p.error { "The designer needs JavaScript; the manifest below is the pipeline as published." } }
            }
            aside {
                section #add-step {
                    h2 { "Add a step" }
                    label { "Name " input #new-step-name name="step" placeholder="e.g. normalize"; }
                    label { "Module "
                        select #new-step-module name="module" {
                            @for module in &modules { option value=(module) { (module) } }
                        }
                    }
                    button #add-step-button type="button" { "Add step" }
                }
                section #properties aria-live="polite" { h2 { "Step" } p.hint { "Select a step on the canvas." } }
                section {
                    h2 { "Problems" }
                    p #edit-error.error role="alert" hidden {}
                    ul.problems #problems {}
                }
                section {
                    h2 { "Manifest" }
                    textarea.manifest #manifest readonly aria-label="The manifest the designer produces" {}
                    button #save type="submit" { "Save as a new version" }
                    p #save-result role="status" {}
                }
            }
        }
    };
    Ok(Page::new(&format!("Designer: {name}"), &viewer, "pipelines").render(body).into_response())
}

/// `POST …/designer/check`: an edit to make, and the manifest to make it on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The version the designer opened (whose other files the manifest uses).
    version: String,
    /// The manifest as it is now.
    manifest: String,
    /// The edit, if any.
    edit: Option<Edit>,
}

/// Makes an edit and checks the result: the new manifest, its model and
/// the engine's problems with it; a malformed edit is a 400 naming its field.
pub async fn check(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(request): Json<CheckRequest>,
) -> Result<Response, Problem> {
    viewer.check_csrf_header(&headers)?;
    let tenant = viewer.caller.tenant;
    let checked = tokio::task::spawn_blocking(move || {
        let version = find_version(&state, &tenant, &name, Some(&request.version))?;
        let manifest = match &request.edit {
            Some(edit) => apply(&request.manifest, edit)?,
            None => request.manifest,
        };
        let problems = validate(&state, &tenant, &version.bundle, &manifest)?;
        Ok::<_, Problem>(Checked { model: model(&manifest)?, manifest, problems })
    })
    .await
    .map_err(Problem::internal)??;
    Ok(axum::Json(checked).into_response())
}

/// `POST …/designer`: the manifest to save.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveRequest {
    /// The version the designer opened.
    version: String,
    /// The manifest to publish with that version's other files.
    manifest: String,
}

/// Publishes the manifest with the opened version's other files as a new
/// version (the default, as `weir publish` makes it). Unchanged content is
/// the version that has it already (200, `created: false`); a pipeline the
/// engine refuses is a 400 listing the problems.
pub async fn save(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(request): Json<SaveRequest>,
) -> Result<Response, Problem> {
    viewer.check_csrf_header(&headers)?;
    let tenant = viewer.caller.tenant;
    tokio::task::spawn_blocking(move || {
        let base = find_version(&state, &tenant, &name, Some(&request.version))?;
        let named = model(&request.manifest)?.name;
        if named != name {
            return Err(Problem::bad_field("manifest", format!("the manifest names pipeline `{named}`, not `{name}`")));
        }
        let problems = validate(&state, &tenant, &base.bundle, &request.manifest)?;
        if !problems.is_empty() {
            let body = json!({ "detail": "the engine refuses this pipeline: fix the problems shown first", "problems": problems });
            return Ok((StatusCode::BAD_REQUEST, axum::Json(body)).into_response());
        }
        let digest = crate::api::blobs::put_bytes(&state, &tenant, request.manifest.as_bytes())?;
        let bundle = base.bundle.replacing(&base.bundle.manifest, digest);
        let publish = PublishRequest {
            manifest: bundle.manifest.clone(),
            files: bundle.files.iter().map(|(path, digest)| (path.clone(), digest.to_string())).collect(),
            version: None,
            make_default: true,
        };
        let (status, axum::Json(info)) = crate::api::pipelines::record_version(&state, &tenant, &bundle, &publish)?;
        let body = json!({ "version": info.version, "content": info.content, "created": status == StatusCode::CREATED });
        Ok((status, axum::Json(body)).into_response())
    })
    .await
    .map_err(Problem::internal)?
}
