//! The workspace's tenants file (`tenants.toml`), as admins change it over
//! the API: one tenant's table is set, the rest of the file (other tenants,
//! the operator's comments and layout) is kept as written, and the engine
//! applies the new quota at once.
//!
//! A change is checked exactly as the file is when the engine starts (the
//! whole file, as it will be, is loaded by [`weir::TenantQuota::from_file`]),
//! then written beside the file and renamed over it: a refused change
//! leaves file and engine as they were.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use weir::Engine;

use crate::ServerError;

/// A size or count: bytes as an integer, or text such as `"2GiB"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Quantity {
    /// A plain number (at most 2^63 − 1: TOML's integers are 64-bit signed).
    Number(i64),
    /// A number with a unit, e.g. `"256MiB"`.
    Text(String),
}

/// The largest limits a tenant's steps may ask for (unset: unbounded).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    /// Memory of one step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Wall-clock time of one step, e.g. `"10m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Fuel (instructions, roughly) of one step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<Quantity>,
    /// Stack of one step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<Quantity>,
    /// Bytes one step may write under `/out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Quantity>,
    /// Files one step may write under `/out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Quantity>,
    /// Bytes of log one step may write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Quantity>,
}

/// A tenant's quotas, as its table in `tenants.toml` has them; a field left
/// out bounds nothing (a root left out is `WORKSPACE/tenants/NAME`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Steps of the tenant that may execute at once, across its runs (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub concurrent_steps: Option<i32>,
    /// Memory limits its executing steps may add up to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Bytes of inputs, outputs and logs it may hold in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<Quantity>,
    /// The only directory on the server its files may be in (relative: to the workspace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// The largest limits its steps may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "table")]
    pub limits: Option<TenantLimits>,
}

/// `T` from a table (a JSON object), never from an array of its fields,
/// which serde's derived structs would also take.
fn table<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    let Some(fields) = Option::<serde_json::Map<String, serde_json::Value>>::deserialize(deserializer)? else {
        return Ok(None);
    };
    T::deserialize(serde_json::Value::Object(fields)).map(Some).map_err(serde::de::Error::custom)
}

/// Why a tenant could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum TenantsError {
    /// No tenant of that name.
    #[error("tenant `{0}` not found")]
    NotFound(String),
    /// The change is refused; `field` is the request's field at fault.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field (`memory`, `limits.timeout`, `name`).
        field: String,
        /// Why.
        reason: String,
    },
    /// The file or the engine failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// The tenants file, changed by one request at a time.
#[derive(Debug)]
pub struct TenantsFile {
    path: PathBuf,
    writing: Mutex<()>,
}

impl TenantsFile {
    /// The tenants file at `path` (it need not exist yet).
    pub fn new(path: PathBuf) -> TenantsFile {
        TenantsFile { path, writing: Mutex::new(()) }
    }

    /// Every tenant of the file, by name.
    pub fn list(&self) -> Result<BTreeMap<String, TenantSpec>, ServerError> {
        let text = self.read()?;
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            tenants: BTreeMap<String, TenantSpec>,
        }
        let file: File = toml::from_str(&text).map_err(|err| self.corrupt(err))?;
        Ok(file.tenants)
    }

    /// Tenant `name`'s quotas.
    pub fn get(&self, name: &str) -> Result<TenantSpec, TenantsError> {
        self.list()?.remove(name).ok_or_else(|| TenantsError::NotFound(name.to_owned()))
    }

    /// Sets tenant `name`'s table to `spec` (adding the tenant when it is
    /// new), checks the file as the engine loads it, applies the quota to
    /// `engine` and replaces the file. Returns whether the tenant is new.
    pub fn put(&self, engine: &Engine, name: &str, spec: &TenantSpec) -> Result<bool, TenantsError> {
        if let Some(root) = &spec.root {
            let dir = self.path.parent().unwrap_or(Path::new(".")).join(root);
            if !dir.is_dir() {
                let reason = format!("{} is not a directory on the server (create it first)", dir.display());
                return Err(TenantsError::Invalid { field: "root".to_owned(), reason });
            }
        }
        let _one_at_a_time = self.writing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let text = self.read()?;
        let mut document: toml_edit::DocumentMut = text.parse().map_err(|err| self.corrupt(err))?;
        let tenants = document.entry("tenants").or_insert_with(|| {
            let mut table = toml_edit::Table::new();
            table.set_implicit(true);
            toml_edit::Item::Table(table)
        });
        let tenants = tenants.as_table_mut().ok_or_else(|| self.corrupt("`tenants` is not a table"))?;
        let created = !tenants.contains_key(name);
        let table = tenants.entry(name).or_insert_with(toml_edit::table);
        let table = table.as_table_mut().ok_or_else(|| self.corrupt(format!("`tenants.{name}` is not a table")))?;
        write_spec(table, spec);

        let staged = self.path.with_extension(format!("toml.{}.tmp", std::process::id()));
        let written = std::fs::write(&staged, document.to_string());
        written.map_err(|err| ServerError::io(format!("writing {}", staged.display()), err))?;
        let applied = self.check_and_apply(&staged, engine, name);
        let renamed = applied.and_then(|()| {
            std::fs::rename(&staged, &self.path)
                .map_err(|err| ServerError::io(format!("replacing {}", self.path.display()), err).into())
        });
        if renamed.is_err() {
            // Best effort: a leftover staged file is harmless and replaced next time.
            let _ = std::fs::remove_file(&staged);
        }
        renamed.map(|()| created)
    }

    /// Loads the staged file as the engine would at start and registers
    /// `name`'s quota from it.
    fn check_and_apply(&self, staged: &Path, engine: &Engine, name: &str) -> Result<(), TenantsError> {
        let mut quotas = weir::TenantQuota::from_file(staged).map_err(|err| {
            let location = err.location();
            if location.step.as_deref().is_some_and(|table| table != format!("tenants.{name}")) {
                // Another tenant's table is wrong: the file was edited badly by hand.
                return TenantsError::Server(self.corrupt(err.to_string().replace(&staged.display().to_string(), "")));
            }
            let field = location.field.clone().unwrap_or_else(|| "body".to_owned());
            TenantsError::Invalid { field, reason: err.kind().to_string() }
        })?;
        let quota = quotas.remove(name).ok_or_else(|| TenantsError::NotFound(name.to_owned()))?;
        engine.set_tenant(name, quota).map_err(|err| match err {
            weir::Error::Config { reason, .. } => {
                let field = if reason.contains("concurrent_steps") { "concurrent_steps" } else { "root" };
                TenantsError::Invalid { field: field.to_owned(), reason }
            }
            other => TenantsError::Server(other.into()),
        })
    }

    fn read(&self) -> Result<String, ServerError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(err) => Err(ServerError::io(format!("reading {}", self.path.display()), err)),
        }
    }

    fn corrupt(&self, why: impl std::fmt::Display) -> ServerError {
        let why = std::io::Error::other(format!("not a tenants file: {why}"));
        ServerError::io(self.path.display().to_string(), why)
    }
}

/// Sets `table`'s keys to `spec`: a field given is written, one left out is
/// removed; comments on the keys kept stay.
fn write_spec(table: &mut toml_edit::Table, spec: &TenantSpec) {
    set(table, "concurrent_steps", spec.concurrent_steps.map(|steps| toml_edit::Value::from(i64::from(steps))));
    set(table, "memory", spec.memory.as_ref().map(value_of));
    set(table, "store", spec.store.as_ref().map(value_of));
    set(table, "root", spec.root.as_deref().map(toml_edit::Value::from));
    let limits = spec.limits.as_ref().filter(|limits| **limits != TenantLimits::default()).map(|limits| {
        let mut inline = toml_edit::InlineTable::new();
        let fields = [
            ("memory", limits.memory.as_ref().map(value_of)),
            ("timeout", limits.timeout.as_deref().map(toml_edit::Value::from)),
            ("fuel", limits.fuel.as_ref().map(value_of)),
            ("stack", limits.stack.as_ref().map(value_of)),
            ("output", limits.output.as_ref().map(value_of)),
            ("files", limits.files.as_ref().map(value_of)),
            ("log", limits.log.as_ref().map(value_of)),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                inline.insert(key, value);
            }
        }
        toml_edit::Value::InlineTable(inline)
    });
    set(table, "limits", limits);
}

fn set(table: &mut toml_edit::Table, key: &str, value: Option<toml_edit::Value>) {
    match value {
        Some(value) => match table.get_mut(key).and_then(toml_edit::Item::as_value_mut) {
            // Keeps the comment and spacing around the old value.
            Some(old) => {
                let decor = old.decor().clone();
                *old = value;
                *old.decor_mut() = decor;
            }
            None => {
                table.insert(key, toml_edit::value(value));
            }
        },
        None => {
            table.remove(key);
        }
    }
}

/// A quantity as TOML.
fn value_of(quantity: &Quantity) -> toml_edit::Value {
    match quantity {
        Quantity::Number(number) => toml_edit::Value::from(*number),
        Quantity::Text(text) => toml_edit::Value::from(text.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(dir: &Path) -> Engine {
        Engine::builder().workspace(dir.join("ws")).build().unwrap()
    }

    #[test]
    fn a_put_keeps_the_rest_of_the_file_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let path = dir.path().join("ws/tenants.toml");
        let original = "# Quotas of the team.\n[tenants.alice]\nconcurrent_steps = 2 # two GPUs\nmemory = \"1GiB\"\n\n# Bob trains.\n[tenants.bob]\nstore = \"1GiB\"\n";
        std::fs::write(&path, original).unwrap();
        let file = TenantsFile::new(path.clone());

        let spec = TenantSpec {
            concurrent_steps: Some(4),
            limits: Some(TenantLimits { timeout: Some("1m".into()), ..TenantLimits::default() }),
            ..TenantSpec::default()
        };
        assert!(!file.put(&engine, "alice", &spec).unwrap(), "alice existed");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# Quotas of the team.\n[tenants.alice]\nconcurrent_steps = 4 # two GPUs\n"),
            "{text}"
        );
        assert!(!text.contains("memory"), "a field left out is removed: {text}");
        assert!(text.contains("# Bob trains.\n[tenants.bob]\nstore = \"1GiB\"\n"), "{text}");
        assert_eq!(file.get("alice").unwrap(), spec);
        assert_eq!(engine.tenant_quota("alice").unwrap().concurrent_steps, 4);

        assert!(file.put(&engine, "carol", &TenantSpec::default()).unwrap(), "carol is new");
        assert_eq!(file.list().unwrap().keys().collect::<Vec<_>>(), ["alice", "bob", "carol"]);
    }

    #[test]
    fn a_refused_put_changes_neither_file_nor_engine() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let path = dir.path().join("ws/tenants.toml");
        let file = TenantsFile::new(path.clone());
        file.put(&engine, "alice", &TenantSpec { concurrent_steps: Some(2), ..TenantSpec::default() }).unwrap();
        let before = std::fs::read_to_string(&path).unwrap();

        let cases = [
            (TenantSpec { memory: Some(Quantity::Text("lots".into())), ..TenantSpec::default() }, "memory"),
            (TenantSpec { concurrent_steps: Some(0), ..TenantSpec::default() }, "concurrent_steps"),
            (TenantSpec { root: Some("objects".into()), ..TenantSpec::default() }, "root"),
            (
                TenantSpec {
                    limits: Some(TenantLimits { timeout: Some("soon".into()), ..TenantLimits::default() }),
                    ..TenantSpec::default()
                },
                "limits.timeout",
            ),
        ];
        for (spec, field) in cases {
            match file.put(&engine, "alice", &spec) {
                Err(TenantsError::Invalid { field: named, .. }) => assert_eq!(named, field, "{spec:?}"),
                other => panic!("{spec:?}: {other:?}"),
            }
            assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
            assert_eq!(engine.tenant_quota("alice").unwrap().concurrent_steps, 2);
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("ws"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| name.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
