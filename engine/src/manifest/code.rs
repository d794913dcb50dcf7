//! How a manifest step names its code: each kind of code owns its keys
//! (`module`, `crate` and `bin`, `python` and `requirements`, `uses`,
//! `native`) and turns them into the step's [`StepCode`]. Adding a way to write a step's code is a type here (or a
//! file beside this one) and its line in [`KINDS`].

use std::path::Path;

use super::{rust_crate, syntax};
use crate::StepCode;
use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::package::{Package, StepDescriptor, is_reference};

/// Where a step's code fields are read: the manifest's directory, and how
/// the pipeline reaches host files.
pub(super) struct Site<'a> {
    pub base: &'a Path,
    pub reach: super::Reach<'a>,
}

/// A step's code, and the descriptor of the package it comes from when the
/// step `uses` one that has a descriptor.
pub(super) struct Code {
    pub step: StepCode,
    pub package: Option<StepDescriptor>,
}

impl From<StepCode> for Code {
    fn from(step: StepCode) -> Self {
        Code { step, package: None }
    }
}

/// A way of writing a step's code in a manifest.
trait CodeKind: Sync {
    /// The key that selects it.
    fn key(&self) -> &'static str;
    /// What its value is, for the message listing the kinds.
    fn describes(&self) -> &'static str;
    /// The other keys it reads.
    fn extra_keys(&self) -> &'static [&'static str] {
        &[]
    }
    /// The step's code from `fields` (its selecting key, and maybe others).
    fn code(&self, fields: &toml::Table, site: &Site<'_>) -> Result<Code, ValidationError>;
}

/// Every kind, in the order the manifest documentation lists them.
const KINDS: [&dyn CodeKind; 5] = [&Module, &RustCrate, &Python, &Uses, &Native];

/// Takes the code fields of every kind out of a step's table.
pub(super) fn take_fields(table: &mut toml::Table) -> toml::Table {
    let keys = KINDS.iter().flat_map(|kind| std::iter::once(kind.key()).chain(kind.extra_keys().iter().copied()));
    keys.filter_map(|key| table.remove(key).map(|value| (key.to_owned(), value))).collect()
}

/// The step's code, from the fields [`take_fields`] took: exactly one kind's
/// key must be there, and no other kind's keys.
pub(super) fn step_code(fields: &toml::Table, site: &Site<'_>) -> Result<Code, ValidationError> {
    let mut chosen = KINDS.iter().filter(|kind| fields.contains_key(kind.key()));
    let (Some(kind), None) = (chosen.next(), chosen.next()) else {
        let listed: Vec<String> = KINDS.iter().map(|kind| format!("`{}` ({})", kind.key(), kind.describes())).collect();
        return Err(syntax(format!(
            "a step needs exactly one of {} and `pipeline` (a sub-pipeline)",
            listed.join(", ")
        )));
    };
    if let Some(stray) = fields.keys().find(|key| *key != kind.key() && !kind.extra_keys().contains(&key.as_str())) {
        let owner = KINDS.iter().find(|other| other.extra_keys().contains(&stray.as_str())).map_or("", |o| o.key());
        return Err(
            syntax(format!("`{stray}` belongs with `{owner}`, and this step has `{}`", kind.key())).in_field(stray)
        );
    }
    kind.code(fields, site)
}

/// The text of string field `key`, or an error at it.
fn text<'t>(fields: &'t toml::Table, key: &str) -> Result<&'t str, ValidationError> {
    fields[key].as_str().ok_or_else(|| syntax(format!("`{key}` must be a string")).in_field(key))
}

/// `module = "PATH"`: a WASI module or component.
struct Module;

impl CodeKind for Module {
    fn key(&self) -> &'static str {
        "module"
    }

    fn describes(&self) -> &'static str {
        "a WASI program"
    }

    fn code(&self, fields: &toml::Table, site: &Site<'_>) -> Result<Code, ValidationError> {
        let module = site.base.join(text(fields, "module")?);
        site.reach.files.check(&module).map_err(|why| ValidationError::new(Kind::Forbidden(why)).in_field("module"))?;
        Ok(StepCode::Wasm(module).into())
    }
}

/// `crate = "DIR"` (and `bin`): a Rust crate weir builds into a module.
struct RustCrate;

impl CodeKind for RustCrate {
    fn key(&self) -> &'static str {
        "crate"
    }

    fn describes(&self) -> &'static str {
        "a Rust crate weir builds"
    }

    fn extra_keys(&self) -> &'static [&'static str] {
        &["bin"]
    }

    fn code(&self, fields: &toml::Table, site: &Site<'_>) -> Result<Code, ValidationError> {
        if site.reach.files.confined() {
            let why = "building a crate runs its build scripts on the host, which only the operator may do; \
                       name a built `module` instead";
            return Err(ValidationError::new(Kind::Forbidden(why.to_owned())).in_field("crate"));
        }
        let dir = site.base.join(text(fields, "crate")?);
        let bin = fields.contains_key("bin").then(|| text(fields, "bin")).transpose()?;
        let module = rust_crate::built_module(&dir, bin)
            .map_err(|why| ValidationError::new(Kind::BuildFailed(why)).in_field("crate"))?;
        Ok(StepCode::Wasm(module).into())
    }
}

/// `python = "SCRIPT"` (and `requirements`): a Python script weir builds
/// into a component.
struct Python;

impl CodeKind for Python {
    fn key(&self) -> &'static str {
        "python"
    }

    fn describes(&self) -> &'static str {
        "a Python script weir builds"
    }

    fn extra_keys(&self) -> &'static [&'static str] {
        &["requirements"]
    }

    fn code(&self, fields: &toml::Table, site: &Site<'_>) -> Result<Code, ValidationError> {
        if site.reach.files.confined() {
            let why = crate::kinds::python::FORBIDDEN_TO_TENANTS.to_owned();
            return Err(ValidationError::new(Kind::Forbidden(why)).in_field("python"));
        }
        let script = site.base.join(text(fields, "python")?);
        let requirements = match fields.get("requirements") {
            None => Vec::new(),
            Some(toml::Value::String(path)) => vec![site.base.join(path)],
            Some(toml::Value::Array(paths)) => paths
                .iter()
                .map(|path| path.as_str().map(|path| site.base.join(path)))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| syntax("`requirements` must be a list of paths".to_owned()).in_field("requirements"))?,
            Some(_) => {
                return Err(syntax("`requirements` must be a list of paths".to_owned()).in_field("requirements"));
            }
        };
        Ok(StepCode::Python(crate::PythonScript { script, requirements }).into())
    }
}

/// `uses = "PACKAGE"`: a step package, as an image layout (a tar archive or
/// a directory).
struct Uses;

impl CodeKind for Uses {
    fn key(&self) -> &'static str {
        "uses"
    }

    fn describes(&self) -> &'static str {
        "a step package"
    }

    /// A path (to an existing file or directory) is read where it is; else a
    /// registry reference is resolved through the workspace's packages.
    fn code(&self, fields: &toml::Table, site: &Site<'_>) -> Result<Code, ValidationError> {
        let failed = |why: String| ValidationError::new(Kind::Package(why)).in_field("uses");
        let uses = text(fields, "uses")?;
        let local = site.base.join(uses);
        let (package, kept) = if is_reference(uses) && !site.reach.files.kind(&local).is_ok_and(|kind| kind.is_some()) {
            let packages = site.reach.packages.ok_or_else(|| {
                failed(format!(
                    "{uses} is a registry package, and this pipeline was loaded without a workspace's packages \
                     (Pipeline::from_manifest_with)"
                ))
            })?;
            let (kept, digest) = packages.resolve(uses, site.reach.lock_dir).map_err(failed)?;
            let package = Package::open(&kept).map_err(failed)?;
            if package.digest != digest {
                return Err(failed(format!("{} holds {}, not {digest}", kept.display(), package.digest)));
            }
            packages.check_trust(&package, uses, Some(uses), site.reach.files).map_err(failed)?;
            (package, true)
        } else {
            site.reach
                .files
                .check(&local)
                .map_err(|why| ValidationError::new(Kind::Forbidden(why)).in_field("uses"))?;
            let package = Package::open_with(&local, site.reach.files).map_err(failed)?;
            if let Some(packages) = site.reach.packages {
                packages.check_trust(&package, uses, None, site.reach.files).map_err(failed)?;
            }
            (package, false)
        };
        Ok(Code {
            step: StepCode::Package(package.code(kept)),
            package: package.descriptor.map(|(descriptor, _)| descriptor),
        })
    }
}

/// `native = "NAME"`: a native step registered with the engine.
struct Native;

impl CodeKind for Native {
    fn key(&self) -> &'static str {
        "native"
    }

    fn describes(&self) -> &'static str {
        "a native step"
    }

    fn code(&self, fields: &toml::Table, _: &Site<'_>) -> Result<Code, ValidationError> {
        Ok(StepCode::Native(text(fields, "native")?.to_owned()).into())
    }
}
