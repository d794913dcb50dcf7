//! `weir step`: make and read step packages (see docs/packages.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use weir::package::{Package, Packed, StepDescriptor};

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
    /// Print a package's descriptor and digests, after checking every blob
    /// against its digest.
    Inspect {
        /// The package: a tar archive or a directory of an OCI image layout.
        package: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `weir step` command.
pub(crate) fn run(command: StepCommand) -> anyhow::Result<ExitCode> {
    match command {
        StepCommand::Pack { descriptor, output } => {
            let packed = Packed::from_descriptor(&descriptor)?;
            packed.write_archive(&output).with_context(|| format!("writing {}", output.display()))?;
            println!("packed {} as {} ({})", descriptor.display(), output.display(), packed.digest);
        }
        StepCommand::Inspect { package, json } => {
            let opened = Package::open(&package).map_err(anyhow::Error::msg)?;
            // Inspecting a package also says whether its module is intact.
            opened.module_bytes().map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inspection(&opened))?);
            } else {
                print_inspection(&package, &opened);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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

fn print_inspection(path: &Path, package: &Package) {
    println!("package  {}", path.display());
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
