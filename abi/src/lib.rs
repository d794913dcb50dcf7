//! # weir-abi: what the engine and its guests agree on
//!
//! The WIT world `weir:step` (in the repository's `wit/`) defines *how* a
//! guest calls the engine; this crate defines *what* the built-in native
//! functions take and return. Both the engine and the guest SDK depend on it,
//! so a payload type is written once. Payloads travel as MessagePack.

use serde::{Deserialize, Serialize};

/// The step contract's paths: where a guest finds its inputs and
/// parameters and writes its outputs.
pub mod contract {
    /// Where inputs are mounted inside the sandbox (read-only), each at `/in/<name>`.
    pub const INPUT_DIR: &str = "/in";
    /// Where outputs are written inside the sandbox, each at `/out/<name>`.
    pub const OUTPUT_DIR: &str = "/out";
    /// The parameters file (JSON), inside [`INPUT_DIR`].
    pub const PARAMS_FILE: &str = ".params.json";
}

/// Name of the built-in matrix product.
pub const GEMM: &str = "gemm";

/// An `f32` matrix operand or result, row-major.
///
/// Large matrices need not pass through guest memory: a [`Matrix::File`]
/// names a file of little-endian `f32` values under the step's `/in` or
/// `/out`, which the engine reads or writes directly.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Matrix {
    /// The values themselves, as a MessagePack array of floats.
    Values(Vec<f32>),
    /// The values as little-endian bytes (a MessagePack `bin`): far cheaper
    /// to encode and decode than an array of floats.
    Packed(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A file of little-endian `f32` values, by its path in the guest
    /// (`/in/...` or `/out/...`).
    File {
        /// The guest path.
        file: String,
    },
}

impl Matrix {
    /// Packs values as little-endian bytes.
    pub fn packed(values: &[f32]) -> Self {
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for value in values {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        Matrix::Packed(bytes)
    }

    /// Decodes packed bytes into values; `None` if the length is not a multiple of 4.
    pub fn unpack(bytes: &[u8]) -> Option<Vec<f32>> {
        if !bytes.len().is_multiple_of(4) {
            return None;
        }
        Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

/// Decodes by the shape of the data (an array, a `bin`, or a map) without
/// buffering it first, as `#[serde(untagged)]` would: matrices are large.
impl<'de> Deserialize<'de> for Matrix {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MatrixVisitor)
    }
}

struct MatrixVisitor;

impl<'de> serde::de::Visitor<'de> for MatrixVisitor {
    type Value = Matrix;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a matrix: an array of floats, packed little-endian bytes, or {\"file\": PATH}")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Matrix, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(value) = seq.next_element::<f32>()? {
            values.push(value);
        }
        Ok(Matrix::Values(values))
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Matrix, E> {
        Ok(Matrix::Packed(bytes.to_vec()))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Matrix, E> {
        Ok(Matrix::Packed(bytes))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Matrix, A::Error> {
        let mut file = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "file" && file.is_none() {
                file = Some(map.next_value::<String>()?);
            } else {
                return Err(serde::de::Error::unknown_field(&key, &["file"]));
            }
        }
        file.map(|file| Matrix::File { file }).ok_or_else(|| serde::de::Error::missing_field("file"))
    }
}

/// `C = op(A) · op(B)`, where `op(A)` is `m × k` and `op(B)` is `k × n`,
/// all row-major. With `trans_a`, `A` is stored as `k × m` (likewise `B`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GemmRequest {
    /// Rows of `op(A)` and of `C`.
    pub m: usize,
    /// Columns of `op(B)` and of `C`.
    pub n: usize,
    /// Columns of `op(A)`, rows of `op(B)`.
    pub k: usize,
    /// The left operand.
    pub a: Matrix,
    /// The right operand.
    pub b: Matrix,
    /// Use the transpose of `A`.
    #[serde(default)]
    pub trans_a: bool,
    /// Use the transpose of `B`.
    #[serde(default)]
    pub trans_b: bool,
    /// Write `C` to this guest path (under `/out`) instead of returning it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c_file: Option<String>,
}

/// The result of [`GemmRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GemmResponse {
    /// `C` (`m × n`): packed if `A` was packed, a file reference if
    /// `c_file` was given, otherwise values.
    pub c: Matrix,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrices_round_trip_through_messagepack_in_every_form() {
        for matrix in
            [Matrix::Values(vec![1.0, -2.5]), Matrix::packed(&[1.0, -2.5]), Matrix::File { file: "/in/a".into() }]
        {
            let bytes = rmp_serde::to_vec_named(&matrix).unwrap();
            assert_eq!(rmp_serde::from_slice::<Matrix>(&bytes).unwrap(), matrix);
        }
        let Matrix::Packed(bytes) = Matrix::packed(&[1.0, -2.5]) else { unreachable!() };
        assert_eq!(Matrix::unpack(&bytes).unwrap(), [1.0, -2.5]);
        assert_eq!(Matrix::unpack(&[0, 0, 0]), None);
    }

    #[test]
    fn malformed_matrices_are_rejected() {
        let bytes = rmp_serde::to_vec_named(&std::collections::BTreeMap::from([("path", "/in/a")])).unwrap();
        let err = rmp_serde::from_slice::<Matrix>(&bytes).unwrap_err().to_string();
        assert!(err.contains("unknown field `path`"), "{err}");
        assert!(rmp_serde::from_slice::<Matrix>(&rmp_serde::to_vec(&"text").unwrap()).is_err());
        assert!(rmp_serde::from_slice::<Matrix>(&rmp_serde::to_vec(&vec!["x"]).unwrap()).is_err());
    }

    #[test]
    fn transposes_default_to_false() {
        let request = GemmRequest {
            m: 1,
            n: 1,
            k: 1,
            a: Matrix::Values(vec![2.0]),
            b: Matrix::Values(vec![3.0]),
            trans_a: false,
            trans_b: false,
            c_file: None,
        };
        #[derive(Serialize)]
        struct Minimal {
            m: usize,
            n: usize,
            k: usize,
            a: Vec<f32>,
            b: Vec<f32>,
        }
        let minimal = Minimal { m: 1, n: 1, k: 1, a: vec![2.0], b: vec![3.0] };
        let decoded: GemmRequest = rmp_serde::from_slice(&rmp_serde::to_vec_named(&minimal).unwrap()).unwrap();
        assert_eq!(decoded, request);
    }
}
