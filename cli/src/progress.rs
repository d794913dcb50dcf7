//! Live progress on a terminal: an overall bar of settled steps, and one line
//! per running step with its own progress and latest metric.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use weir::{Event, EventSink, StepStatus};

/// Draws the run's progress from its events.
pub(crate) struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    running: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress {
    pub(crate) fn new(steps: usize) -> Self {
        let multi = MultiProgress::new();
        let overall = multi.add(ProgressBar::new(steps as u64));
        overall.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} steps settled  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self { multi, overall, running: Mutex::new(HashMap::new()) }
    }

    /// Removes the display (before the summary is printed).
    pub(crate) fn clear(&self) {
        let _ = self.multi.clear();
    }

    fn with_bar(&self, step: &str, f: impl FnOnce(&ProgressBar)) {
        if let Ok(running) = self.running.lock()
            && let Some(bar) = running.get(step)
        {
            f(bar);
        }
    }
}

impl EventSink for Progress {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::StepStarted { step } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix:<20} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(step.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Ok(mut running) = self.running.lock() {
                    running.insert(step.to_string(), bar);
                }
            }
            Event::Progress { step, done, total } => self.with_bar(step, |bar| {
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix:<20} {bar:20} {pos}/{len} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_length(*total);
                bar.set_position(*done);
            }),
            Event::Metric { step, name, value } => {
                self.with_bar(step, |bar| bar.set_message(format!("{name}={value:.4}")))
            }
            Event::StepFinished { step, status } => {
                if let Ok(mut running) = self.running.lock()
                    && let Some(bar) = running.remove(*step)
                {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                self.overall.inc(1);
                if *status == StepStatus::Failed {
                    self.overall.set_message(format!("`{step}` failed"));
                }
            }
            _ => {}
        }
    }
}
