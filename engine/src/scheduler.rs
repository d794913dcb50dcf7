//! The coordinator of a run. It alone owns the run's state: it decides which
//! steps are ready, computes their cache keys, reuses cached results, and
//! dispatches the rest to the worker pool, whose results come back over a
//! channel.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use serde_json::Value;

use crate::cache_key::{Canonical, KEY_FORMAT_VERSION, KeyMaterial};
use crate::engine::EngineInner;
use crate::pipeline::{InputRef, Step};
use crate::report::{Logs, RunReport, RunStatus, StepReport, StepStatus};
use crate::runtime::Program;
use crate::step_exec::{self, Finished, Job};
use crate::{Artifact, Digest, RunOptions};

/// A step ready to be keyed: its program, argv and parameters resolved.
pub(crate) struct PlannedStep<'p> {
    pub step: &'p Step,
    pub program: Arc<Program>,
    pub argv: Vec<String>,
    pub params: Value,
}

/// The state of one run, owned by the coordinating thread.
pub(crate) struct Coordinator<'a> {
    engine: &'a EngineInner,
    options: &'a RunOptions,
    run_id: &'a str,
    plan: Vec<PlannedStep<'a>>,
    pipeline_inputs: BTreeMap<String, Artifact>,
    index: BTreeMap<&'a str, usize>,
    dependents: Vec<Vec<usize>>,
    waiting: Vec<usize>,
    blocked: Vec<bool>,
    outputs: Vec<BTreeMap<String, Artifact>>,
    keys: Vec<Option<Digest>>,
    reports: BTreeMap<String, StepReport>,
}

impl<'a> Coordinator<'a> {
    pub(crate) fn new(
        engine: &'a EngineInner,
        options: &'a RunOptions,
        run_id: &'a str,
        plan: Vec<PlannedStep<'a>>,
        pipeline_inputs: BTreeMap<String, Artifact>,
    ) -> Self {
        let index: BTreeMap<&str, usize> = plan.iter().enumerate().map(|(i, p)| (p.step.name(), i)).collect();
        let mut dependents = vec![Vec::new(); plan.len()];
        let mut waiting = vec![0; plan.len()];
        for (i, planned) in plan.iter().enumerate() {
            for upstream in planned.step.upstream() {
                dependents[index[upstream]].push(i);
                waiting[i] += 1;
            }
        }
        Self {
            engine,
            options,
            run_id,
            blocked: vec![false; plan.len()],
            outputs: vec![BTreeMap::new(); plan.len()],
            keys: vec![None; plan.len()],
            reports: BTreeMap::new(),
            plan,
            pipeline_inputs,
            index,
            dependents,
            waiting,
        }
    }

    /// Runs every step to an outcome and reports the run.
    pub(crate) fn drive(mut self, pipeline: &str) -> RunReport {
        let (sender, receiver) = mpsc::channel::<(usize, Finished)>();
        let mut ready: Vec<usize> = (0..self.plan.len()).filter(|&i| self.waiting[i] == 0).rev().collect();
        self.engine.pool.in_place_scope(|scope| {
            let mut in_flight = 0usize;
            loop {
                while let Some(i) = ready.pop() {
                    if let Some(job) = self.dispatch(i, &mut ready) {
                        let sender = sender.clone();
                        let engine = self.engine;
                        scope.spawn(move |_| {
                            let finished = step_exec::execute(&engine.store, &engine.runtime, &job);
                            // The coordinator outlives every worker of its scope.
                            let _ = sender.send((i, finished));
                        });
                        in_flight += 1;
                    }
                }
                if in_flight == 0 {
                    break;
                }
                let Ok((i, finished)) = receiver.recv() else { break };
                in_flight -= 1;
                self.record(i, finished, &mut ready);
            }
        });
        let status = if self
            .reports
            .values()
            .all(|r| matches!(r.status, StepStatus::Ran | StepStatus::Cached))
        {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        RunReport {
            run_id: self.run_id.to_owned(),
            pipeline: pipeline.to_owned(),
            status,
            steps: self.reports,
        }
    }

    /// Settles step `i` from the cache (or as skipped), or returns the job to execute.
    fn dispatch(&mut self, i: usize, ready: &mut Vec<usize>) -> Option<Job> {
        let started = Instant::now();
        if self.blocked[i] {
            self.settle(i, skipped(), ready);
            return None;
        }
        let inputs = self.inputs_of(i);
        let key = self.key_of(i, &inputs);
        self.keys[i] = Some(key);
        let step = self.plan[i].step;
        if step.reuse()
            && !self.options.forces(step.name())
            && let Some(entry) = self.engine.store.cache_get(&key)
        {
            self.outputs[i] = entry.outputs.clone();
            let report = StepReport {
                status: StepStatus::Cached,
                duration: started.elapsed(),
                outputs: entry.outputs,
                error: None,
                cache_key: Some(key),
                logs: Some(Logs {
                    stdout: entry.stdout,
                    stderr: entry.stderr,
                }),
            };
            self.settle(i, report, ready);
            return None;
        }
        let planned = &self.plan[i];
        Some(Job {
            step: step.name().to_owned(),
            program: planned.program.clone(),
            argv: planned.argv.clone(),
            params: planned.params.clone(),
            inputs,
            outputs: step.outputs().clone(),
            limits: step.limits(),
            key,
            record: step.reuse(),
            run_id: self.run_id.to_owned(),
        })
    }

    /// Records a finished execution.
    fn record(&mut self, i: usize, finished: Finished, ready: &mut Vec<usize>) {
        let (status, outputs, error) = match finished.outputs {
            Ok(outputs) => (StepStatus::Ran, outputs, None),
            Err(error) => (StepStatus::Failed, BTreeMap::new(), Some(error)),
        };
        self.outputs[i] = outputs.clone();
        let report = StepReport {
            status,
            duration: finished.duration,
            outputs,
            error,
            cache_key: self.keys[i],
            logs: finished.logs,
        };
        self.settle(i, report, ready);
    }

    /// Stores a step's report and releases (or blocks) its dependents.
    fn settle(&mut self, i: usize, report: StepReport, ready: &mut Vec<usize>) {
        let succeeded = matches!(report.status, StepStatus::Ran | StepStatus::Cached);
        self.reports.insert(self.plan[i].step.name().to_owned(), report);
        for &next in &self.dependents[i] {
            self.blocked[next] |= !succeeded;
            self.waiting[next] -= 1;
            if self.waiting[next] == 0 {
                ready.push(next);
            }
        }
    }

    /// The artifacts bound to step `i`'s inputs (all upstream steps succeeded).
    fn inputs_of(&self, i: usize) -> BTreeMap<String, Artifact> {
        self.plan[i]
            .step
            .inputs()
            .iter()
            .map(|(name, source)| {
                let artifact = match source {
                    InputRef::Pipeline(input) => self.pipeline_inputs[input],
                    InputRef::Step { step, output } => self.outputs[self.index[step.as_str()]][output],
                };
                (name.clone(), artifact)
            })
            .collect()
    }

    fn key_of(&self, i: usize, inputs: &BTreeMap<String, Artifact>) -> Digest {
        let planned = &self.plan[i];
        KeyMaterial {
            format: KEY_FORMAT_VERSION,
            kind: "wasm",
            module: planned.program.digest,
            args: &planned.argv,
            params: Canonical(&planned.params),
            inputs: inputs
                .iter()
                .map(|(name, artifact)| (name.as_str(), *artifact))
                .collect(),
            outputs: planned.step.outputs(),
            memory_limit: planned.step.limits().memory,
        }
        .key()
    }
}

fn skipped() -> StepReport {
    StepReport {
        status: StepStatus::Skipped,
        duration: std::time::Duration::ZERO,
        outputs: BTreeMap::new(),
        error: None,
        cache_key: None,
        logs: None,
    }
}
