//! The pipelines: their versions, graph and parameters, the trigger form
//! generated from the typed parameters, and their schedules.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::page::{Page, PageResult, UiError, status_badge, svg, time};
use super::runs::blocking;
use super::session::{Viewer, url_encode};
use crate::api::pipelines::{PipelineInfo, VersionInfo};
use crate::launch::{Origin, TriggerRequest};
use crate::problem::Problem;
use crate::render::Graph;
use crate::schedules::Schedule;
use crate::state::AppState;

/// `/pipelines`: the tenant's pipelines.
pub async fn list(viewer: Viewer, State(state): State<Arc<AppState>>) -> PageResult {
    let axum::Json(listed) = crate::api::pipelines::list(viewer.caller.clone(), State(state)).await?;
    let body = html! {
        h1 { "Pipelines" }
        @if listed.pipelines.is_empty() {
            p { "None published yet: " code { "weir publish MANIFEST --server URL --token TOKEN" } "." }
        } @else {
            table {
                thead { tr { th { "pipeline" } th { "default version" } th { "first published (UTC)" } } }
                tbody { @for pipeline in &listed.pipelines {
                    tr { td { a href={ "/pipelines/" (url_encode(&pipeline.name)) } { (pipeline.name) } }
                         td { (pipeline.default_version) } td { (time(pipeline.created)) } }
                } }
            }
        }
    };
    Ok(Page::new("Pipelines", &viewer, "pipelines").render(body).into_response())
}

/// `/pipelines/{name}`'s query: the version to show.
#[derive(Deserialize)]
pub struct VersionQuery {
    /// The version (default: the pipeline's default).
    pub version: Option<String>,
}

/// Everything the pipeline page shows.
struct PipelineView {
    info: PipelineInfo,
    versions: Vec<VersionInfo>,
    shown: String,
    graph: Option<String>,
    schedules: Vec<Schedule>,
}

async fn pipeline_view(
    viewer: &Viewer,
    state: &Arc<AppState>,
    name: &str,
    version: Option<String>,
) -> Result<PipelineView, UiError> {
    let caller = viewer.caller.clone();
    let axum::Json(info) =
        crate::api::pipelines::get(caller.clone(), State(state.clone()), Path(name.to_owned())).await?;
    let axum::Json(listed) =
        crate::api::pipelines::versions(caller.clone(), State(state.clone()), Path(name.to_owned())).await?;
    let shown = version.filter(|version| !version.is_empty()).unwrap_or_else(|| info.default_version.clone());
    if !listed.versions.iter().any(|version| version.version == shown) {
        return Err(Problem::not_found(format!("version `{shown}` of pipeline `{name}`")).into());
    }
    let (tenant, pipeline, version) = (caller.tenant.clone(), name.to_owned(), shown.clone());
    let graph = blocking(state, move |state| {
        Ok(crate::launch::version_pipeline(state, &tenant, &pipeline, Some(&version))
            .ok()
            .map(|(_, pipeline)| Graph::new(&pipeline, &BTreeMap::new()).svg()))
    })
    .await?;
    let schedules = crate::schedules::list(state, &caller.tenant)?
        .into_iter()
        .filter(|schedule| schedule.pipeline == name)
        .collect();
    Ok(PipelineView { info, versions: listed.versions, shown, graph, schedules })
}

/// `/pipelines/{name}`: versions, the graph and parameters of one, the
/// trigger form, and the schedules.
pub async fn show(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<VersionQuery>,
) -> PageResult {
    let view = pipeline_view(&viewer, &state, &name, query.version).await?;
    Ok(render(&viewer, &view, &BTreeMap::new(), None, StatusCode::OK))
}

fn render(
    viewer: &Viewer,
    view: &PipelineView,
    entered: &BTreeMap<String, String>,
    error: Option<&Problem>,
    status: StatusCode,
) -> Response {
    let name = &view.info.name;
    let version = view.versions.iter().find(|version| version.version == view.shown);
    let params = version.and_then(|version| version.params.as_object().cloned()).unwrap_or_default();
    let body = html! {
        h1 { "Pipeline " (name) }
        p { "Default version " strong { (view.info.default_version) } ". "
            a href={ "/?pipeline=" (url_encode(name)) } { "Its runs" } " · "
            a href={ "/metrics?pipeline=" (url_encode(name)) } { "its metrics across runs" } " · "
            a href={ "/pipelines/" (url_encode(name)) "/designer?version=" (url_encode(&view.shown)) } { "open version " (view.shown) " in the designer" } }
        h2 { "Versions" }
        table.versions {
            thead { tr { th { "version" } th { "published (UTC)" } th { "content" } th { "inputs" } } }
            tbody { @for version in &view.versions {
                tr aria-current=[(version.version == view.shown).then_some("true")] {
                    td { a href={ "/pipelines/" (url_encode(name)) "?version=" (url_encode(&version.version)) } { (version.version) } }
                    td { (time(version.created)) }
                    td { code { (version.content.chars().take(19).collect::<String>()) "…" } }
                    td { @for (input, info) in &version.inputs {
                        code { (input) } @if !info.published { " (given at each trigger)" } " " } }
                }
            } }
        }
        h2 { "Version " (view.shown) }
        @if let Some(graph) = &view.graph { div.graph { (svg(graph.clone())) } }
        h2 #trigger { "Trigger a run" }
        (trigger_form(viewer, name, &view.shown, &params, entered, error))
        h2 { "Schedules" }
        @if view.schedules.is_empty() { p { "None: create one with " code { "POST /v1/schedules" } "." } }
        @else { (schedule_table(viewer, &view.schedules)) }
    };
    (status, Page::new(&format!("Pipeline {name}"), viewer, "pipelines").render(body)).into_response()
}

/// A parameter's type, as its default value says.
#[derive(Clone, Copy, PartialEq, Debug)]
enum ParamType {
    Int,
    Float,
    Bool,
    Text,
    Json,
}

impl ParamType {
    fn of(default: &Value) -> ParamType {
        match default {
            Value::Number(number) if number.is_i64() || number.is_u64() => ParamType::Int,
            Value::Number(_) => ParamType::Float,
            Value::Bool(_) => ParamType::Bool,
            Value::String(_) => ParamType::Text,
            _ => ParamType::Json,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ParamType::Int => "integer",
            ParamType::Float => "number",
            ParamType::Bool => "true or false",
            ParamType::Text => "text",
            ParamType::Json => "JSON",
        }
    }

    /// The value a form field's text stands for, or why it stands for none.
    fn parse(self, text: &str) -> Result<Value, String> {
        let text = text.trim();
        let fail = || format!("`{text}` is not {}", self.name());
        match self {
            ParamType::Int => text.parse::<i64>().map(Value::from).map_err(|_| fail()),
            ParamType::Float => text.parse::<f64>().ok().filter(|v| v.is_finite()).map(Value::from).ok_or_else(fail),
            ParamType::Bool => match text {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(fail()),
            },
            ParamType::Text => Ok(Value::String(text.to_owned())),
            ParamType::Json => serde_json::from_str(text).map_err(|err| format!("not JSON: {err}")),
        }
    }

    /// How a default is written in its field.
    fn show(default: &Value) -> String {
        match default {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        }
    }
}

fn trigger_form(
    viewer: &Viewer,
    name: &str,
    version: &str,
    params: &serde_json::Map<String, Value>,
    entered: &BTreeMap<String, String>,
    error: Option<&Problem>,
) -> Markup {
    let field_error =
        |field: &str| error.filter(|problem| problem.field.as_deref() == Some(field)).map(|p| p.detail.clone());
    let general = error.filter(|problem| !problem.field.as_deref().is_some_and(|field| field.starts_with("params.")));
    html! {
        form.trigger #trigger-form method="post" action={ "/pipelines/" (url_encode(name)) "/trigger" } novalidate {
            input type="hidden" name="csrf" value=(viewer.csrf);
            input type="hidden" name="version" value=(version);
            @if let Some(problem) = general { p.error role="alert" { (problem.detail) } }
            @if params.is_empty() { p { "This version has no parameters." } }
            @for (param, default) in params {
                @let kind = ParamType::of(default);
                @let field = format!("param.{param}");
                @let value = entered.get(param).cloned().unwrap_or_else(|| ParamType::show(default));
                @let message = field_error(&format!("params.{param}"));
                @let id = format!("param-{param}");
                div.field data-type=(kind.name()) {
                    label for=(id) { code { (param) } " " span.type { "(" (kind.name()) ")" } }
                    @match kind {
                        ParamType::Int => input #(id) name=(field) type="number" step="1" required value=(value) aria-invalid=[message.as_ref().map(|_| "true")];
                        ParamType::Float => input #(id) name=(field) type="number" step="any" required value=(value) aria-invalid=[message.as_ref().map(|_| "true")];
                        ParamType::Bool => select #(id) name=(field) {
                            option value="true" selected[value == "true"] { "true" }
                            option value="false" selected[value == "false"] { "false" }
                        },
                        ParamType::Text => input #(id) name=(field) type="text" value=(value);
                        ParamType::Json => textarea #(id) name=(field) rows="2" { (value) },
                    }
                    span.default { "default " code { (ParamType::show(default)) } }
                    span.field-error role="alert" { @if let Some(message) = message { (message) } }
                }
            }
            div.field {
                label for="labels" { "Labels " span.type { "(KEY=VALUE, one per line)" } }
                textarea #labels name="labels" rows="2" { (entered.get("\u{0}labels").cloned().unwrap_or_default()) }
            }
            button type="submit" { "Run" }
        }
    }
}

/// Triggers a run from the form; a bad value shows the form again with the
/// message beside its field.
pub async fn trigger(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    let get = |key: &str| fields.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str());
    viewer.check_csrf(get("csrf"))?;
    let version = get("version").map(str::to_owned);
    let view = pipeline_view(&viewer, &state, &name, version.clone()).await?;
    let defaults = view
        .versions
        .iter()
        .find(|known| known.version == view.shown)
        .and_then(|known| known.params.as_object().cloned())
        .unwrap_or_default();
    let mut entered: BTreeMap<String, String> = fields
        .iter()
        .filter_map(|(key, value)| key.strip_prefix("param.").map(|param| (param.to_owned(), value.clone())))
        .collect();
    entered.insert("\u{0}labels".into(), get("labels").unwrap_or_default().to_owned());
    let request = match read_request(&defaults, &entered, version) {
        Ok(request) => request,
        Err(problem) => return Ok(render(&viewer, &view, &entered, Some(&problem), StatusCode::BAD_REQUEST)),
    };
    let tenant = viewer.caller.tenant.clone();
    let started = {
        let state = state.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || crate::launch::trigger(&state, &tenant, &name, &request, Origin::default()))
            .await
            .map_err(Problem::internal)?
    };
    match started {
        Ok((accepted, _)) => Ok(Redirect::to(&format!("/runs/{}", url_encode(&accepted.id))).into_response()),
        Err(problem) if problem.status == 400 => {
            Ok(render(&viewer, &view, &entered, Some(&problem), StatusCode::BAD_REQUEST))
        }
        Err(problem) => Err(problem.into()),
    }
}

/// The trigger a form's fields ask for: each parameter whose value is not
/// its default, read as the default's type, and the labels.
fn read_request(
    defaults: &serde_json::Map<String, Value>,
    entered: &BTreeMap<String, String>,
    version: Option<String>,
) -> Result<TriggerRequest, Problem> {
    let mut request = TriggerRequest { version, ..TriggerRequest::default() };
    for (param, text) in entered.iter().filter(|(key, _)| !key.starts_with('\u{0}')) {
        let Some(default) = defaults.get(param) else {
            return Err(Problem::bad_field(format!("params.{param}"), "the version has no such parameter"));
        };
        let value =
            ParamType::of(default).parse(text).map_err(|why| Problem::bad_field(format!("params.{param}"), why))?;
        if &value != default {
            request.params.insert(param.clone(), value);
        }
    }
    for line in entered.get("\u{0}labels").map_or("", String::as_str).lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (key, value) =
            line.split_once('=').ok_or_else(|| Problem::bad_field("labels", format!("`{line}` is not KEY=VALUE")))?;
        request.labels.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    Ok(request)
}

fn schedule_table(viewer: &Viewer, schedules: &[Schedule]) -> Markup {
    html! {
        table.schedules {
            thead { tr { th { "schedule" } th { "when" } th { "next fire (UTC)" } th { "state" } th { "latest fire" } th {} } }
            tbody { @for schedule in schedules {
                tr {
                    td { code { (schedule.id) } }
                    td { @if let Some(cron) = &schedule.cron { code { (cron) } " " (schedule.timezone) }
                         @if let Some(watch) = &schedule.watch { "when " code { (watch.path) } " changes" } }
                    td { @if schedule.paused { "—" } @else if let Some(next) = schedule.next_fire { (time(next)) } }
                    td { (status_badge(if schedule.paused { "paused" } else { "active" })) }
                    td { @if let Some(fire) = schedule.fires.first() {
                        (fire.slot) @if let Some(run) = &fire.run { " → " a href={ "/runs/" (run) } { code { (run) } } } } }
                    td {
                        form method="post" action={ "/schedules/" (url_encode(&schedule.id)) "/" (if schedule.paused { "resume" } else { "pause" }) } {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button type="submit" { (if schedule.paused { "Resume" } else { "Pause" }) }
                        }
                    }
                }
            } }
        }
    }
}

/// Pauses or resumes a schedule, then shows its pipeline.
pub async fn schedule_action(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<super::session::CsrfForm>,
) -> PageResult {
    viewer.check_csrf(form.csrf.as_deref())?;
    let paused = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => return Err(Problem::not_found("this path").into()),
    };
    let tenant = viewer.caller.tenant.clone();
    crate::schedules::set_paused(&state, &tenant, &id, paused, crate::db::now())?;
    let schedule = crate::schedules::find(&state, &tenant, &id)?;
    Ok(Redirect::to(&format!("/pipelines/{}#trigger", url_encode(&schedule.pipeline))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn form_values_are_read_as_their_defaults_types_and_only_changes_are_sent() {
        let defaults = json!({ "epochs": 10, "lr": 0.5, "shuffle": true, "name": "a", "layers": [1] });
        let defaults = defaults.as_object().unwrap();
        let entered: BTreeMap<String, String> = [
            ("epochs", "12"),
            ("lr", "0.5"),
            ("shuffle", "false"),
            ("name", "a"),
            ("layers", "[1, 2]"),
            ("\u{0}labels", "team=ml\n\n owner = me "),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let request = read_request(defaults, &entered, Some("2".into())).unwrap();
        assert_eq!(
            Value::Object(request.params.into_iter().collect()),
            json!({ "epochs": 12, "shuffle": false, "layers": [1, 2] })
        );
        assert_eq!(request.labels.get("owner").map(String::as_str), Some("me"));
        assert_eq!(request.version.as_deref(), Some("2"));
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_parameter() {
        let defaults = json!({ "epochs": 10 });
        let entered: BTreeMap<String, String> = [("epochs".to_owned(), "1.5".to_owned())].into();
        let problem = read_request(defaults.as_object().unwrap(), &entered, None).unwrap_err();
        assert_eq!(problem.field.as_deref(), Some("params.epochs"));
        assert!(problem.detail.contains("is not integer"), "{}", problem.detail);
    }
}
