//! The cache key of a step execution: BLAKE3 over one explicit, canonically
//! serialized struct of everything that can change the step's result.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::{Artifact, Digest, OutputKind};

/// Bump when the key material or its encoding changes; old entries then miss.
pub(crate) const KEY_FORMAT_VERSION: u32 = 2;

/// What a step executes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum CodeKey {
    /// A WebAssembly module or component, by the digest of its bytes.
    Wasm {
        /// The module's digest.
        module: Digest,
    },
    /// A Python step, by the digest of its bundle (its sources, its
    /// requirements files and what weir builds it with): its builds are not
    /// reproducible byte for byte.
    Python {
        /// The bundle's digest.
        bundle: Digest,
    },
    /// A registered native step.
    Native {
        /// Its registered name.
        name: String,
        /// Its version.
        version: u32,
    },
}

/// Everything that determines a step's outputs.
///
/// The timeout, fuel, stack and output quotas are deliberately absent: they
/// decide whether a step finishes, not what a finished step wrote. The memory
/// limit is present, because a guest can observe it (a failed `memory.grow`)
/// and adapt.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeyMaterial<'a> {
    /// [`KEY_FORMAT_VERSION`].
    pub format: u32,
    /// The code the step runs.
    pub code: &'a CodeKey,
    /// argv after argv\[0\], with parameters substituted.
    pub args: &'a [String],
    /// The step's resolved parameters, objects serialized with sorted keys.
    pub params: Canonical<'a>,
    /// Input artifacts by input name.
    pub inputs: BTreeMap<&'a str, Artifact>,
    /// Declared outputs.
    pub outputs: &'a BTreeMap<String, OutputKind>,
    /// Memory limit in bytes.
    pub memory_limit: u64,
    /// Native functions the step may call, with their versions.
    pub natives: BTreeMap<&'a str, u32>,
    /// Whether clocks and randomness are virtual (left out when not, so keys
    /// of ordinary steps are unchanged).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deterministic: bool,
    /// The tenant, for all but the default tenant: entries of different
    /// tenants never share a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<&'a str>,
}

impl KeyMaterial<'_> {
    /// The cache key: BLAKE3 of the MessagePack encoding of this struct.
    pub(crate) fn key(&self) -> Digest {
        let bytes = rmp_serde::to_vec(self).expect("serializing key material to memory cannot fail");
        Digest::of(&bytes)
    }
}

/// Key material as the run history keeps it for `weir explain`: the
/// material, and the parameters it leaves out.
#[derive(Debug, Serialize)]
pub(crate) struct RecordedMaterial<'a> {
    /// What the key was computed from.
    #[serde(flatten)]
    pub material: KeyMaterial<'a>,
    /// The step's ignored parameters (`ignored_params`).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub ignored_params: &'a BTreeSet<String>,
}

/// Key material read back from the history (`weir explain` compares two
/// executions' material field by field). Fields absent from older records
/// read as empty.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct RecordedKey {
    pub format: u32,
    pub code: Option<CodeKey>,
    pub args: Vec<String>,
    pub params: serde_json::Map<String, Value>,
    pub inputs: BTreeMap<String, Artifact>,
    pub outputs: BTreeMap<String, OutputKind>,
    pub memory_limit: u64,
    pub natives: BTreeMap<String, u32>,
    pub deterministic: bool,
    pub tenant: Option<String>,
    pub ignored_params: Vec<String>,
}

impl RecordedKey {
    /// The material of a history record (its JSON), or the empty material
    /// when there is none or it cannot be read.
    pub(crate) fn of(json: Option<&str>) -> Self {
        json.and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default()
    }
}

/// A JSON value whose objects serialize with keys in sorted order, whatever
/// map type `serde_json` was built with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Canonical<'a>(pub &'a Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let sorted: BTreeMap<&String, Canonical<'_>> = map.iter().map(|(k, v)| (k, Canonical(v))).collect();
                sorted.serialize(serializer)
            }
            Value::Array(items) => serializer.collect_seq(items.iter().map(Canonical)),
            other => other.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    static MODULE: std::sync::LazyLock<CodeKey> =
        std::sync::LazyLock::new(|| CodeKey::Wasm { module: Digest::of(b"module") });

    fn material<'a>(
        args: &'a [String],
        params: &'a Value,
        outputs: &'a BTreeMap<String, OutputKind>,
    ) -> KeyMaterial<'a> {
        KeyMaterial {
            format: KEY_FORMAT_VERSION,
            code: &MODULE,
            args,
            params: Canonical(params),
            inputs: [("text", Artifact { kind: OutputKind::File, digest: Digest::of(b"hello\n") })].into(),
            outputs,
            memory_limit: 64 << 20,
            natives: [("gemm", 1)].into(),
            deterministic: false,
            tenant: None,
        }
    }

    /// Pins the key of fixed material: a change here invalidates every cache
    /// in the field, so it must be deliberate (and bump KEY_FORMAT_VERSION).
    #[test]
    fn golden_key() {
        let args = vec!["upper".to_owned(), "hello".to_owned()];
        let params = json!({"word": "hello", "n": 3, "rate": 0.5, "tags": ["a", "b"]});
        let outputs = [("result".to_owned(), OutputKind::File)].into();
        assert_eq!(
            material(&args, &params, &outputs).key().to_string(),
            "blake3:dac412c2fc22188a729d3ba5ab41c3dede4544ab17394b2da57b75c4760cf708"
        );
    }

    #[test]
    fn golden_key_of_a_native_step() {
        let args = vec!["matmul".to_owned()];
        let params = json!({"m": 2, "n": 2, "k": 2});
        let outputs = [("c".to_owned(), OutputKind::File)].into();
        let matmul = CodeKey::Native { name: "matmul".into(), version: 1 };
        let material = KeyMaterial { code: &matmul, natives: BTreeMap::new(), ..material(&args, &params, &outputs) };
        assert_eq!(
            material.key().to_string(),
            "blake3:7b88ce97fba2d9d73ea8e109459c2054796286254ad6a76e7064c04b32955ac7"
        );
    }

    #[test]
    fn key_ignores_param_order_but_not_values_or_types() {
        let args = vec![];
        let outputs = [("result".to_owned(), OutputKind::File)].into();
        let a = json!({"x": 1, "y": {"b": 2, "a": 1}});
        let b: Value = serde_json::from_str(r#"{"y": {"a": 1, "b": 2}, "x": 1}"#).unwrap();
        let key = |params: &Value| material(&args, params, &outputs).key();
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&json!({"x": 2, "y": {"b": 2, "a": 1}})));
        assert_ne!(key(&a), key(&json!({"x": 1.0, "y": {"b": 2, "a": 1}})));
    }

    #[test]
    fn every_field_changes_the_key() {
        let args = vec!["a".to_owned()];
        let params = json!({});
        let outputs: BTreeMap<String, OutputKind> = [("r".to_owned(), OutputKind::File)].into();
        let base = material(&args, &params, &outputs);
        let (other, native) =
            (CodeKey::Wasm { module: Digest::of(b"other") }, CodeKey::Native { name: "module".into(), version: 1 });
        let other_args = vec!["b".to_owned()];
        let other_outputs: BTreeMap<String, OutputKind> = [("r".to_owned(), OutputKind::Dir)].into();
        let variants = [
            KeyMaterial { code: &other, ..base.clone() },
            KeyMaterial { code: &native, ..base.clone() },
            KeyMaterial { natives: [("gemm", 2)].into(), ..base.clone() },
            KeyMaterial { natives: BTreeMap::new(), ..base.clone() },
            KeyMaterial { deterministic: true, ..base.clone() },
            KeyMaterial { tenant: Some("alice"), ..base.clone() },
            KeyMaterial { tenant: Some("bob"), ..base.clone() },
            KeyMaterial { args: &other_args, ..base.clone() },
            KeyMaterial { outputs: &other_outputs, ..base.clone() },
            KeyMaterial { memory_limit: 1, ..base.clone() },
            KeyMaterial { format: KEY_FORMAT_VERSION + 1, ..base.clone() },
            KeyMaterial { inputs: BTreeMap::new(), ..base.clone() },
        ];
        for variant in variants {
            assert_ne!(variant.key(), base.key(), "{variant:?}");
        }
    }
}
