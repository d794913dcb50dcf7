//! How a command's engine executes steps: the options `weir run` and
//! `weir sweep` share.

use std::path::Path;

use clap::Args;
use weir::Engine;

use crate::config;

/// `--jobs`, `--gpus` and `--executor`.
#[derive(Args)]
pub(crate) struct EngineArgs {
    /// How many steps may execute at once (default: the number of cores; at most 256).
    /// On `--executor slurm`: how many tasks of a job array run at once, and
    /// how many other jobs are queued at once (default there: 256).
    #[arg(long, short = 'j', allow_negative_numbers = true, value_parser = parse_jobs)]
    jobs: Option<usize>,
    /// GPU slots: how many steps that ask for a GPU may run at once
    /// (default: the number of GPUs detected).
    #[arg(long, value_name = "N")]
    gpus: Option<usize>,
    /// Where steps execute: `local` (threads of this process), `process`
    /// (child `weir worker` processes; a timeout kills the process, so code
    /// under a timeout runs without interruption checks) or `slurm` (batch
    /// jobs on a Slurm cluster whose nodes see the workspace; options in
    /// `config.toml`'s `[executor.slurm]`). Default: the workspace's
    /// `config.toml`, else `local`.
    #[arg(long, value_name = "EXECUTOR")]
    executor: Option<String>,
}

impl EngineArgs {
    /// The engine of `workspace` these options ask for.
    pub(crate) fn open(&self, workspace: &Path) -> anyhow::Result<Engine> {
        let setting = config::WorkspaceConfig::load(workspace)?.executor;
        let in_file =
            |why: String| anyhow::anyhow!("{}: executor: {why}", workspace.join(config::CONFIG_FILE).display());
        let mut executor = match (&self.executor, setting.as_ref().and_then(config::ExecutorSetting::kind)) {
            (Some(name), _) => name.parse().map_err(|why: String| anyhow::anyhow!("--executor: {why}"))?,
            (None, Some(name)) => name.parse().map_err(in_file)?,
            (None, None) => weir::ExecutorKind::Local,
        };
        if let (weir::ExecutorKind::Slurm(options), Some(table)) =
            (&mut executor, setting.as_ref().and_then(config::ExecutorSetting::slurm))
        {
            *options = table.apply(options.clone()).map_err(in_file)?;
        }
        let mut builder = Engine::builder().workspace(workspace).executor(executor);
        if let Some(jobs) = self.jobs {
            builder = builder.jobs(jobs);
        }
        if let Some(gpus) = self.gpus {
            builder = builder.gpu_slots(gpus);
        }
        crate::open_engine(workspace, builder)
    }
}

/// Reads `--jobs`: 1 to [`weir::MAX_JOBS`].
pub(crate) fn parse_jobs(text: &str) -> Result<usize, String> {
    let jobs: i64 = text.trim().parse().map_err(|_| format!("`{text}` is not a whole number"))?;
    usize::try_from(jobs)
        .ok()
        .filter(|jobs| (1..=weir::MAX_JOBS).contains(jobs))
        .ok_or_else(|| format!("{jobs} steps at once: give a number from 1 to {}", weir::MAX_JOBS))
}
