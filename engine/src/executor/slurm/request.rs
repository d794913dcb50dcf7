//! Where on a Slurm cluster a job goes: the options a workspace, a pipeline
//! (`[executor.slurm]` in its manifest) or a step (`slurm = { … }`) may set.
//! A step's own options win over its pipeline's, which win over the
//! workspace's. None of them is part of a step's cache key: where a step
//! ran does not change what it computed.

use serde::{Deserialize, Serialize};

/// The Slurm options of a job that a pipeline or step may choose; each
/// unset one takes the next outer level's (and, when none sets it, the
/// cluster's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmRequest {
    /// `--partition`: the partition (queue) the job is submitted to.
    pub partition: Option<String>,
    /// `--account`: the account the job is charged to.
    pub account: Option<String>,
    /// `--qos`: the job's quality of service.
    pub qos: Option<String>,
    /// `--constraint`: the node features the job requires (`a100&ib`).
    pub constraint: Option<String>,
}

/// The longest option value accepted (Slurm's own names are far shorter).
const MAX_VALUE: usize = 256;

impl SlurmRequest {
    fn fields(&self) -> [(&'static str, &Option<String>); 4] {
        [
            ("partition", &self.partition),
            ("account", &self.account),
            ("qos", &self.qos),
            ("constraint", &self.constraint),
        ]
    }

    /// These options, each unset one taken from `outer`.
    pub fn over(&self, outer: &SlurmRequest) -> SlurmRequest {
        let pick = |inner: &Option<String>, outer: &Option<String>| inner.clone().or_else(|| outer.clone());
        SlurmRequest {
            partition: pick(&self.partition, &outer.partition),
            account: pick(&self.account, &outer.account),
            qos: pick(&self.qos, &outer.qos),
            constraint: pick(&self.constraint, &outer.constraint),
        }
    }

    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        self.fields().iter().all(|(_, value)| value.is_none())
    }

    /// Checks every value: the option it is wrong in and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (field, value) in self.fields() {
            let Some(value) = value else { continue };
            let why = if value.is_empty() {
                "is empty: leave it out to take the cluster's default".to_owned()
            } else if value.len() > MAX_VALUE {
                format!("is longer than {MAX_VALUE} bytes")
            } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                "holds whitespace or a control character, which no Slurm name has".to_owned()
            } else {
                continue;
            };
            return Err((field, format!("the Slurm {field} `{}` {why}", value.escape_debug())));
        }
        Ok(())
    }

    /// The `sbatch` flags of the options set.
    pub(crate) fn args(&self) -> Vec<String> {
        self.fields()
            .iter()
            .filter_map(|(flag, value)| value.as_ref().map(|value| format!("--{flag}={value}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(partition: Option<&str>, qos: Option<&str>) -> SlurmRequest {
        SlurmRequest { partition: partition.map(Into::into), qos: qos.map(Into::into), ..SlurmRequest::default() }
    }

    #[test]
    fn inner_options_win_and_unset_ones_fall_through() {
        let step = request(Some("gpu"), None);
        let pipeline = request(Some("cpu"), Some("high"));
        let both = step.over(&pipeline);
        assert_eq!(both, request(Some("gpu"), Some("high")));
        assert_eq!(both.args(), ["--partition=gpu", "--qos=high"]);
        assert!(SlurmRequest::default().is_empty() && !both.is_empty());
    }

    #[test]
    fn bad_values_name_their_option() {
        assert_eq!(request(Some(""), None).check().unwrap_err().0, "partition");
        let (field, why) = request(None, Some("hi gh")).check().unwrap_err();
        assert_eq!(field, "qos");
        assert!(why.contains("`hi gh`") && why.contains("whitespace"), "{why}");
        assert!(request(Some("gpu-a100"), Some("normal")).check().is_ok());
    }
}
