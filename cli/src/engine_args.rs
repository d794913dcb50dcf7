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
    #[arg(long, short = 'j', allow_negative_numbers = true, value_parser = parse_jobs)]
    jobs: Option<usize>,
    /// GPU slots: how many steps that ask for a GPU may run at once
    /// (default: the number of GPUs detected).
    #[arg(long, value_name = "N")]
    gpus: Option<usize>,
    /// Where steps execute: `local` (threads of this process) or `process`
    /// (child `weir worker` processes; a timeout kills the process, so code
    /// under a timeout runs without interruption checks). Default: the
    /// workspace's `config.toml`, else `local`.
    #[arg(long, value_name = "EXECUTOR")]
    executor: Option<String>,
}

impl EngineArgs {
    /// The engine of `workspace` these options ask for.
    pub(crate) fn open(&self, workspace: &Path) -> anyhow::Result<Engine> {
        let executor = match &self.executor {
            Some(name) => name.parse().map_err(|why: String| anyhow::anyhow!("--executor: {why}"))?,
            None => match config::WorkspaceConfig::load(workspace)?.executor {
                Some(name) => name.parse().map_err(|why: String| {
                    anyhow::anyhow!("{}: executor: {why}", workspace.join(config::CONFIG_FILE).display())
                })?,
                None => weir::ExecutorKind::Local,
            },
        };
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
