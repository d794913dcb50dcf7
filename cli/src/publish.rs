//! `weir publish`: upload a pipeline's files as blobs and create a version
//! on a server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use weir::{Digest, Pipeline, StepCode};
use weir_server::bundle_path;

use crate::client::{Client, refused};

/// `weir publish`.
#[derive(Args)]
pub(crate) struct PublishArgs {
    /// The pipeline manifest; every file it names must lie beneath its directory.
    manifest: PathBuf,
    /// The server's URL.
    #[arg(long, env = "WEIR_SERVER")]
    server: String,
    /// A bearer token (`weir token create`).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: String,
    /// The version's name (default: the next number).
    #[arg(long)]
    version: Option<String>,
    /// Do not upload the pipeline's input files: each trigger gives them.
    #[arg(long)]
    no_inputs: bool,
    /// Keep the pipeline's default version as it is.
    #[arg(long)]
    no_default: bool,
    /// Print the version as JSON.
    #[arg(long)]
    json: bool,
}

/// Publishes the manifest's pipeline.
pub(crate) fn publish(workspace: &Path, args: PublishArgs) -> anyhow::Result<ExitCode> {
    // Registry packages resolve as for `weir run` (pinned in weir.lock, kept
    // in the workspace, checked against its signing policy).
    let pipeline = Pipeline::from_manifest_with(&args.manifest, &crate::packages(workspace)?)?;
    let manifest = std::fs::canonicalize(&args.manifest).with_context(|| format!("{}", args.manifest.display()))?;
    let root = manifest.parent().unwrap_or(Path::new("/")).to_owned();
    let files = bundle_files(&pipeline, &manifest, &root, !args.no_inputs)?;
    let client = Client::new(&args.server, &args.token)?;
    let mut digests = BTreeMap::new();
    let mut uploaded = 0usize;
    for (relative, path) in &files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let digest = Digest::of(&bytes);
        let blob = format!("/v1/blobs/{digest}");
        let present = client.head(&blob)?;
        if present.status == 404 {
            let reply = client.put(&blob, &bytes)?;
            if !(200..300).contains(&reply.status) {
                return Err(refused(&format!("uploading {}", path.display()), &reply));
            }
            uploaded += 1;
        } else if present.status != 200 {
            return Err(refused(&format!("checking {}", path.display()), &present));
        }
        digests.insert(relative.clone(), digest.to_string());
    }
    let Some(name) = bundle_path(&manifest, &root) else {
        bail!("{}: a published manifest's file name must be UTF-8", manifest.display());
    };
    let mut request = json!({ "manifest": name, "files": digests, "make_default": !args.no_default });
    if let Some(version) = &args.version {
        request["version"] = json!(version);
    }
    let reply = client.post("/v1/pipelines", &request)?;
    if !(200..300).contains(&reply.status) {
        return Err(refused("publishing", &reply));
    }
    let version = reply.json()?;
    let again = if reply.status == 200 { " (this content was already published)" } else { "" };
    eprintln!(
        "published {} version {}{again}: {} file(s), {uploaded} uploaded",
        version["pipeline"].as_str().unwrap_or("?"),
        version["version"].as_str().unwrap_or("?"),
        files.len()
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&version)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Every file the pipeline needs, by its `/`-separated path beneath `root`.
fn bundle_files(
    pipeline: &Pipeline,
    manifest: &Path,
    root: &Path,
    inputs: bool,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut files = BTreeMap::new();
    let mut add = |what: String, path: &Path| -> anyhow::Result<()> {
        let path = std::fs::canonicalize(path).with_context(|| format!("{what}: {}", path.display()))?;
        let Some(relative) = bundle_path(&path, root) else {
            bail!(
                "{what}: {} is not beneath the manifest's directory {}; a published pipeline carries only files beneath it",
                path.display(),
                root.display()
            );
        };
        files.insert(relative, path);
        Ok(())
    };
    add("the manifest".into(), manifest)?;
    for step in pipeline.steps() {
        if let Some(file) = step.defined_in() {
            add(format!("the sub-pipeline of step {}", step.name()), file)?;
        }
        match step.code() {
            StepCode::Wasm(module) => add(format!("steps.{}.module", step.name()), module)?,
            // A registry package is published by reference: the server
            // pulls it as the lock file beside the manifest pins it.
            StepCode::Package(package) if package.kept => {
                let lock = manifest.parent().unwrap_or(Path::new(".")).join(weir::package::LOCK_FILE);
                add(format!("steps.{}.uses (its pin)", step.name()), &lock)?;
            }
            StepCode::Package(package) => {
                let what = format!("steps.{}.uses", step.name());
                for file in walk(&package.source).with_context(|| format!("{what}: {}", package.source.display()))? {
                    add(what.clone(), &file)?;
                }
                let signature = weir::package::signature_path(&package.source);
                if signature.is_file() {
                    add(what.clone(), &signature)?;
                }
            }
            StepCode::Python(_) => bail!(
                "steps.{}.python: a published pipeline cannot carry a Python step yet (docs/python.md); \
                 publish the component instead, as a `module`",
                step.name()
            ),
            _ => {}
        }
    }
    if inputs {
        for (name, path) in pipeline.inputs() {
            for file in walk(path).with_context(|| format!("inputs.{name}: {}", path.display()))? {
                add(format!("inputs.{name}"), &file)?;
            }
        }
    }
    Ok(files)
}

/// `path` itself if it is a file, else every file beneath it.
fn walk(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !std::fs::metadata(path)?.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        files.extend(walk(&entry?.path())?);
    }
    Ok(files)
}
