//! Live progress on a terminal: an overall bar of settled steps, and one line
//! per running step with its own progress and latest metric.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use weir::{Event, EventSink, StepStatus};

/// How often a running step's line may change: a guest that reports a
/// metric a million times must not spend its time redrawing the terminal.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// Draws the run's progress from its events.
pub(crate) struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    running: Mutex<HashMap<String, Line>>,
}

/// A running step's line and when it last changed.
struct Line {
    bar: ProgressBar,
    throttle: Throttle,
    has_length: bool,
}

/// Lets an update through at most once per [`REDRAW_EVERY`].
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    /// Whether an update at `now` may be drawn (and if so, it counts as drawn).
    fn admit(&mut self, now: Instant) -> bool {
        if self.last.is_some_and(|last| now.duration_since(last) < REDRAW_EVERY) {
            return false;
        }
        self.last = Some(now);
        true
    }
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

    /// Applies `f` to `step`'s line, unless it changed less than
    /// [`REDRAW_EVERY`] ago: the event is then dropped, costing a lock and a
    /// clock reading.
    fn update(&self, step: &str, f: impl FnOnce(&mut Line)) {
        if let Ok(mut running) = self.running.lock()
            && let Some(line) = running.get_mut(step)
            && line.throttle.admit(Instant::now())
        {
            f(line);
        }
    }
}

impl EventSink for Progress {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::StepStarted { step, .. } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix:<20} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(step.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Ok(mut running) = self.running.lock() {
                    running.insert(step.to_string(), Line { bar, throttle: Throttle::default(), has_length: false });
                }
            }
            Event::Progress { step, done, total, .. } => self.update(step, |line| {
                if !line.has_length {
                    line.bar.set_style(
                        ProgressStyle::with_template("  {spinner} {prefix:<20} {bar:20} {pos}/{len} {wide_msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    line.has_length = true;
                }
                line.bar.set_length(*total);
                line.bar.set_position(*done);
            }),
            Event::Metric { step, name, value, at, .. } => {
                let at = at.map_or_else(String::new, |at| format!(" at {at}"));
                self.update(step, |line| line.bar.set_message(format!("{name}={value:.4}{at}")))
            }
            Event::StepRetrying { step, entry, attempt, attempts, error, delay, .. } => {
                let what = entry.map_or_else(|| format!("`{step}`"), |entry| format!("`{step}` entry `{entry}`"));
                let line = format!(
                    "{what} failed (attempt {attempt} of {attempts}): {error}; retrying in {}",
                    crate::render::format_duration(*delay)
                );
                let _ = self.multi.println(line);
            }
            Event::StepFinished { step, status, .. } => {
                if let Ok(mut running) = self.running.lock()
                    && let Some(line) = running.remove(*step)
                {
                    line.bar.finish_and_clear();
                    self.multi.remove(&line.bar);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_changes_at_most_once_per_interval() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        let admitted = (0..1000u64).filter(|&i| throttle.admit(start + Duration::from_micros(i * 500))).count();
        // 1000 updates over 0.5 s: one at the start and one per 100 ms after.
        assert_eq!(admitted, 5);
    }
}
