//! What crosses the boundary between the coordinator and an executor that
//! may be in another process: the job's description and what became of it,
//! as MessagePack frames (JSON for debugging).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::native::Device;
use crate::step_exec::Finished;
use crate::{Artifact, Digest, Limits, OutputKind};

/// The code a job runs, by reference: a process that executes it finds it
/// by this (a module's bytes are in the store under their digest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum CodeRef {
    /// A WebAssembly module or component.
    Module {
        /// The digest of its bytes.
        digest: Digest,
    },
    /// A native step registered under `name`.
    Native {
        /// Its registered name.
        name: String,
        /// Its version.
        version: u32,
    },
}

/// Everything an executor needs to run one step execution, with no host
/// path: artifacts by digest in the workspace's store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobSpec {
    /// The step (for messages and events).
    pub step: String,
    /// The run it belongs to (recorded in the cache entry).
    pub run_id: String,
    /// The tenant whose run it is.
    pub tenant: String,
    /// Its cache key.
    pub key: Digest,
    /// What it runs.
    pub code: CodeRef,
    /// argv, argv\[0\] included.
    pub argv: Vec<String>,
    /// Its parameters, as `/in/.params.json`.
    pub params: serde_json::Value,
    /// Input artifacts by name (`/in/<name>`).
    pub inputs: BTreeMap<String, Artifact>,
    /// Declared outputs (`/out/<name>`).
    pub outputs: BTreeMap<String, OutputKind>,
    /// Its sandbox limits.
    pub limits: Limits,
    /// Whether clocks and randomness are virtual, seeded from `key`.
    pub deterministic: bool,
    /// Native functions it may call.
    pub natives: BTreeSet<String>,
    /// The device it runs on.
    pub device: Device,
    /// The GPUs it asked for (`resources = { gpu = N }`), for an executor
    /// that places jobs on a cluster's GPU nodes.
    #[serde(default)]
    pub gpus: u32,
    /// Where on a Slurm cluster it goes (its step's and pipeline's options).
    #[serde(default)]
    pub slurm: crate::SlurmRequest,
    /// Whether to record the result for reuse.
    pub record: bool,
    /// Whether a result of the same key that another execution records
    /// while this one waits may serve it.
    pub share: bool,
    /// For a tenant with a store quota: its name, and the bytes it had left
    /// when the job was sent (an executor in another process cannot see the
    /// tenant's account; the coordinator charges it when the result comes).
    pub store_budget: Option<(String, u64)>,
}

/// One message of a worker process to its parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Frame {
    /// The step recorded a metric value.
    Metric { name: String, value: f64, at: Option<u64> },
    /// The step reported progress.
    Progress { done: u64, total: u64 },
    /// The step wrote to a log.
    Log { stream: crate::LogStream, text: String },
    /// The job ended; the worker waits for the next.
    Done(Box<Finished>),
    /// The worker stopped the job (it passed its timeout or a quota) and
    /// exits: the guest cannot be interrupted otherwise.
    Abandoned(Box<Finished>),
}

/// The largest frame accepted (a result's metric series can be long).
const MAX_FRAME: usize = 256 << 20;

/// Writes `value` as one frame: its length (4 bytes, big-endian), then its
/// MessagePack encoding.
pub(crate) fn write_frame(to: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    let bytes = rmp_serde::to_vec_named(value).map_err(io::Error::other)?;
    let length = u32::try_from(bytes.len()).map_err(|_| io::Error::other("a frame larger than 4 GiB"))?;
    to.write_all(&length.to_be_bytes())?;
    to.write_all(&bytes)?;
    to.flush()
}

/// Reads one frame; `None` at the end of the stream.
pub(crate) fn read_frame<T: for<'de> Deserialize<'de>>(from: &mut impl Read) -> io::Result<Option<T>> {
    let mut length = [0u8; 4];
    match from.read_exact(&mut length) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_FRAME {
        return Err(io::Error::other(format!("a frame of {length} bytes is larger than {MAX_FRAME}")));
    }
    let mut bytes = vec![0u8; length];
    from.read_exact(&mut bytes)?;
    rmp_serde::from_slice(&bytes).map(Some).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec() -> JobSpec {
        JobSpec {
            step: "train".into(),
            run_id: "run-1".into(),
            tenant: "alice".into(),
            key: Digest::of(b"key"),
            code: CodeRef::Module { digest: Digest::of(b"module") },
            argv: vec!["tool.wasm".into(), "upper".into()],
            params: serde_json::json!({"rate": 0.5, "tags": ["a"]}),
            inputs: [("text".to_owned(), Artifact { kind: OutputKind::File, digest: Digest::of(b"text") })].into(),
            outputs: [("model".to_owned(), OutputKind::Dir)].into(),
            limits: Limits::default(),
            deterministic: true,
            natives: ["gemm".to_owned()].into(),
            device: Device::Gpu { ordinal: 1 },
            gpus: 1,
            slurm: crate::SlurmRequest::default(),
            record: true,
            share: false,
            store_budget: Some(("alice".into(), 1 << 20)),
        }
    }

    #[test]
    fn a_job_round_trips_through_messagepack_and_json() {
        let spec = spec();
        let mut wire = Vec::new();
        write_frame(&mut wire, &spec).unwrap();
        let mut reader = wire.as_slice();
        assert_eq!(read_frame::<JobSpec>(&mut reader).unwrap(), Some(spec.clone()));
        assert_eq!(read_frame::<JobSpec>(&mut reader).unwrap(), None, "then the end of the stream");
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<JobSpec>(&json).unwrap(), spec);
    }

    #[test]
    fn a_truncated_frame_is_an_error_not_the_end() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &spec()).unwrap();
        wire.truncate(wire.len() - 3);
        assert!(read_frame::<JobSpec>(&mut wire.as_slice()).is_err());
    }
}
