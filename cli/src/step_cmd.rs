//! `weir step`: make and read step packages (see docs/packages.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use weir::package::{LOCK_FILE, Package, Packed, StepDescriptor, is_reference, signature_path};

use crate::registry::{self, Registry, RegistryArgs};

/// What `weir step` does.
#[derive(Subcommand)]
pub(crate) enum StepCommand {
    /// Pack the step a descriptor (step.toml) describes, with its module,
    /// into a tar archive of an OCI image layout.
    Pack {
        /// The step descriptor.
        descriptor: PathBuf,
        /// Where to write the archive.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Push a package to an OCI registry: a descriptor (packed first), a
    /// tar archive or a layout directory.
    Push {
        /// The package, or the step.toml to pack.
        package: PathBuf,
        /// Where to push it: REGISTRY/REPOSITORY:TAG.
        reference: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Pull a package from an OCI registry into a tar archive of an image
    /// layout, every blob checked against its digest.
    Pull {
        /// REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST.
        reference: String,
        /// Where to write the archive.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Sign a package with a minisign secret key (`weir key generate`): a
    /// registry reference gets the signature pushed beside it (tag
    /// sha256-DIGEST.sig), an archive or layout gets PATH.minisig.
    Sign {
        /// REGISTRY/REPOSITORY:TAG (or @sha256:DIGEST), or a package's path.
        package: String,
        /// The secret key file.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Print a package's descriptor and digests, after checking every blob
    /// against its digest.
    Inspect {
        /// The package: a tar archive or a directory of an OCI image layout,
        /// or REGISTRY/REPOSITORY:TAG (pulled, with its signature if it has
        /// one, and not kept).
        package: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// Packs the step `descriptor` describes; a Python step is built (with
/// componentize-py, cached in the workspace's store) first.
fn pack(descriptor: &Path, workspace: &Path) -> anyhow::Result<Packed> {
    let text = std::fs::read_to_string(descriptor).with_context(|| format!("reading {}", descriptor.display()))?;
    if StepDescriptor::parse(&text, descriptor)?.python.is_some() {
        return Ok(crate::open_engine(workspace, weir::Engine::builder())?.pack_step(descriptor)?);
    }
    Ok(Packed::from_descriptor(descriptor)?)
}

/// Runs a `weir step` command in `workspace` (where Python steps are built).
pub(crate) fn run(command: StepCommand, workspace: &Path) -> anyhow::Result<ExitCode> {
    match command {
        StepCommand::Pack { descriptor, output } => {
            let packed = pack(&descriptor, workspace)?;
            packed.write_archive(&output).with_context(|| format!("writing {}", output.display()))?;
            println!("packed {} as {} ({})", descriptor.display(), output.display(), packed.digest);
        }
        StepCommand::Push { package, reference, registry } => {
            let packed = if package.extension().is_some_and(|ext| ext == "toml") {
                pack(&package, workspace)?
            } else {
                Package::open(&package).and_then(|opened| opened.to_packed()).map_err(anyhow::Error::msg)?
            };
            let parsed = registry::reference(&reference)?;
            let digest = Registry::new(&parsed, &registry)?.push(&packed, &parsed)?;
            println!("pushed {} as {reference} ({digest})", package.display());
        }
        StepCommand::Pull { reference, output, registry } => {
            let parsed = registry::reference(&reference)?;
            let packed = Registry::new(&parsed, &registry)?.pull(&parsed)?;
            packed.write_archive(&output).with_context(|| format!("writing {}", output.display()))?;
            Package::open(&output).map_err(anyhow::Error::msg)?;
            println!("pulled {reference} ({}) into {}", packed.digest, output.display());
        }
        StepCommand::Sign { package, key, registry } => sign(&package, &key, &registry)?,
        StepCommand::Inspect { package, json, registry } => {
            let path = Path::new(&package);
            if !is_reference(&package) || path.exists() {
                return inspect(&package, path, json);
            }
            let pulled = tempfile::tempdir().context("making a directory for the pulled package")?;
            let archive = pulled.path().join("package.tar");
            let parsed = registry::reference(&package)?;
            let client = Registry::new(&parsed, &registry)?;
            let packed = client.pull(&parsed)?;
            packed.write_archive(&archive).with_context(|| format!("writing {}", archive.display()))?;
            if let Some(signature) = client.pull_signature(&parsed, &packed.digest)? {
                std::fs::write(signature_path(&archive), signature).context("writing the pulled signature")?;
            }
            return inspect(&package, &archive, json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the package at `path` (named `name`): its descriptor, digests and
/// signer, after checking every blob against its digest.
fn inspect(name: &str, path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let opened = Package::open(path).map_err(anyhow::Error::msg)?;
    // Inspecting a package also says whether its module is intact.
    opened.module_bytes().map_err(anyhow::Error::msg)?;
    let signer = signer(path)?;
    if json {
        let mut inspected = inspection(&opened);
        inspected["signature"] = serde_json::json!(signer);
        println!("{}", serde_json::to_string_pretty(&inspected)?);
    } else {
        print_inspection(name, &opened);
        if let Some(signer) = signer {
            println!("signed   {signer}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir step sign`: signs the package `package` names with `key`.
fn sign(package: &str, key: &Path, registry: &RegistryArgs) -> anyhow::Result<()> {
    let path = Path::new(package);
    if is_reference(package) && !path.exists() {
        let parsed = registry::reference(package)?;
        let client = Registry::new(&parsed, registry)?;
        let subject = client.manifest(&parsed)?;
        let (signature, key_id) = crate::signing::sign(key, &subject.digest, package)?;
        let digest = subject.digest.clone();
        let tag = client.push_signature(&parsed, subject, &signature)?;
        println!("signed {package} ({digest}) with key {key_id}: pushed as tag {tag}");
    } else {
        let opened = Package::open(path).map_err(anyhow::Error::msg)?;
        let (signature, key_id) = crate::signing::sign(key, &opened.digest, package)?;
        let out = signature_path(path);
        std::fs::write(&out, signature).with_context(|| format!("writing {}", out.display()))?;
        println!("signed {package} ({}) with key {key_id}: {}", opened.digest, out.display());
    }
    Ok(())
}

/// Who signed the package at `path`, as its signature file beside it says
/// (not checked: the workspace's policy checks signatures when a pipeline
/// uses the package); `None` when it has none.
fn signer(path: &Path) -> anyhow::Result<Option<String>> {
    let file = signature_path(path);
    let Ok(text) = std::fs::read_to_string(&file) else { return Ok(None) };
    let signature = minisign::SignatureBox::from_string(&text)
        .map_err(|err| anyhow::anyhow!("{} is not a minisign signature: {err}", file.display()))?;
    let comment = signature.untrusted_comment().unwrap_or_default();
    Ok(Some(comment.trim_start_matches("untrusted comment:").trim().to_owned()))
}

/// The JSON `weir step inspect --json` prints.
fn inspection(package: &Package) -> serde_json::Value {
    serde_json::json!({
        "digest": package.digest,
        "module": package.module,
        "manifest": package.manifest,
        "descriptor": package.descriptor.as_ref().map(|(_, text)| text),
    })
}

fn print_inspection(name: &str, package: &Package) {
    println!("package  {name}");
    println!("digest   {}", package.digest);
    println!("module   {} ({} bytes)", package.module.digest, package.module.size);
    let Some((descriptor, _)) = &package.descriptor else {
        println!("no weir descriptor: a step using it gives its args, inputs and outputs itself");
        return;
    };
    print_descriptor(descriptor);
}

fn print_descriptor(descriptor: &StepDescriptor) {
    println!("step     {} {}", descriptor.name, descriptor.version);
    if let Some(description) = &descriptor.description {
        println!("         {description}");
    }
    println!("args     {}", descriptor.args.join(" "));
    for (table, entries) in [("inputs", &descriptor.inputs), ("outputs", &descriptor.outputs)] {
        let entries: Vec<String> = entries.iter().map(|(name, kind)| format!("{name} ({kind})")).collect();
        println!("{table:<8} {}", if entries.is_empty() { "none".to_owned() } else { entries.join(", ") });
    }
    for (name, spec) in &descriptor.params {
        let default = spec.default.as_ref().map_or_else(|| "required".to_owned(), |value| format!("default {value}"));
        let description = spec.description.as_deref().map(|text| format!(": {text}")).unwrap_or_default();
        println!("param    {name} ({}, {default}){description}", spec.kind.name());
    }
    if !descriptor.natives.is_empty() {
        println!("natives  {}", descriptor.natives.join(", "));
    }
    if descriptor.resources.gpu > 0 {
        println!("gpu      {}", descriptor.resources.gpu);
    }
}

/// `weir update MANIFEST`: every tag the pipeline uses resolved again, and
/// its lock file rewritten; prints the pins that changed.
pub(crate) fn update(engine: &weir::Engine, tenant: &str, manifest: &Path) -> anyhow::Result<ExitCode> {
    let lock = manifest.parent().unwrap_or(Path::new(".")).join(LOCK_FILE);
    let pins = |text: &str| -> BTreeMap<String, String> {
        let table: toml::Table = text.parse().unwrap_or_default();
        let packages = table.get("packages").and_then(toml::Value::as_table).cloned().unwrap_or_default();
        packages.into_iter().map(|(reference, digest)| (reference, digest.as_str().unwrap_or("").to_owned())).collect()
    };
    let before = pins(&std::fs::read_to_string(&lock).unwrap_or_default());
    let packages = crate::packages(engine.store().root())?.updating();
    crate::load_pipeline_with(engine, tenant, manifest, &packages)?;
    let after = pins(&std::fs::read_to_string(&lock).unwrap_or_default());
    let mut changed = false;
    for reference in before.keys().chain(after.keys()).collect::<std::collections::BTreeSet<_>>() {
        match (before.get(reference), after.get(reference)) {
            (Some(old), Some(new)) if old == new => {}
            (old, new) => {
                changed = true;
                println!(
                    "{reference}: {} -> {}",
                    old.map_or("(new)", String::as_str),
                    new.map_or("(unused)", String::as_str)
                );
            }
        }
    }
    if !changed {
        println!("{}: every package is pinned to what its tag names", lock.display());
    }
    Ok(ExitCode::SUCCESS)
}
