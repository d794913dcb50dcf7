//! `weir verify RUN [STEP]`: re-execute the steps of a recorded run that have
//! cached results, and report any whose outputs differ.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use weir::{Engine, RunOptions, StepStatus, TenantView, Verification};

/// Verifies run `run` of `tenant` (only `step`, when given).
pub(crate) fn verify(
    engine: &Engine,
    view: &TenantView<'_>,
    run: &str,
    step: Option<String>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let tenant = view.tenant();
    let detail = view.run(run)?;
    let Some(manifest) = detail.summary.manifest_path.as_deref() else {
        bail!("run {} was not loaded from a manifest file; verify it through the embedding API", detail.summary.id);
    };
    let manifest = Path::new(manifest);
    let pipeline = crate::load_pipeline(engine, tenant, manifest)
        .with_context(|| format!("loading the manifest of run {}", detail.summary.id))?;
    let digest = pipeline.manifest_digest().map(ToString::to_string);
    if digest != detail.summary.manifest_digest {
        eprintln!("warning: {} changed since run {}; verifying against it as it is now", manifest.display(), run);
    }
    let mut options = RunOptions::new().tenant(tenant).verify(step);
    if let Some(params) = detail.params.as_object() {
        for (name, value) in params {
            options = options.param(name.clone(), value.clone());
        }
    }
    let report = engine.run(&pipeline, &options)?;
    if as_json {
        crate::print_record(&report)?;
    } else {
        for (name, step) in &report.steps {
            let verdict = match (step.verification, step.status) {
                (Some(Verification::Reproduced), _) => "reproduced".to_owned(),
                (Some(Verification::Differs), _) => {
                    format!("DIFFERS: {}", step.error.as_ref().map(|e| e.kind.to_string()).unwrap_or_default())
                }
                (Some(Verification::NothingToCompare), _) => "executed (no cached result to compare with)".to_owned(),
                (None, StepStatus::Cached) => "reused (not checked)".to_owned(),
                (None, status) => serde_json::to_value(status)?.as_str().unwrap_or_default().to_owned(),
            };
            println!("{name:<24} {verdict}");
        }
    }
    let differs = report.steps.values().any(|step| step.verification == Some(Verification::Differs));
    let failed = report.steps.values().any(|step| step.status == StepStatus::Failed);
    Ok(if differs || failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
