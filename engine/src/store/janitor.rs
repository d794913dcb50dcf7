//! Removing steps' scratch directories on a background thread, so neither a
//! worker nor the end of a run waits while the file system deletes them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use cap_std::fs::Dir;

/// Directories queued at most; past this a caller removes its own, so a
/// burst of short steps cannot pile up scratch faster than it is deleted.
const MAX_QUEUED: usize = 256;

/// A thread that removes directories of `tmp/` handed to it. Dropping the
/// janitor waits for the queue to empty, so a store closed normally leaves
/// no scratch behind (one killed leaves it to the next open's sweep).
#[derive(Debug, Default)]
pub(super) struct Janitor {
    worker: Mutex<Option<Worker>>,
    queued: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Worker {
    queue: Sender<String>,
    thread: JoinHandle<()>,
}

impl Janitor {
    /// Queues `name`, a directory of `tmp`, for removal (its thread starts
    /// on first use). Where no thread can be started or the queue is full,
    /// removes it now.
    pub(super) fn remove(&self, tmp: &Dir, name: String) {
        let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        if worker.is_none() {
            *worker = tmp.try_clone().ok().and_then(|dir| self.start(dir));
        }
        let queued = match worker.as_ref() {
            Some(worker) if self.queued.load(Ordering::Acquire) < MAX_QUEUED => {
                self.queued.fetch_add(1, Ordering::AcqRel);
                worker.queue.send(name).map_err(|unsent| {
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    unsent.0
                })
            }
            _ => Err(name),
        };
        drop(worker);
        if let Err(name) = queued {
            // Leftovers are unreachable from any entry; failing to remove one loses nothing.
            let _ = tmp.remove_dir_all(name);
        }
    }

    fn start(&self, tmp: Dir) -> Option<Worker> {
        let (queue, receiver) = channel::<String>();
        let queued = self.queued.clone();
        let thread = std::thread::Builder::new()
            .name("weir-janitor".into())
            .spawn(move || {
                for name in receiver {
                    let _ = tmp.remove_dir_all(&name);
                    queued.fetch_sub(1, Ordering::AcqRel);
                }
            })
            .ok()?;
        Some(Worker { queue, thread })
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        let worker = self.worker.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(Worker { queue, thread }) = worker {
            drop(queue);
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_directories_are_gone_once_the_janitor_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).unwrap();
        let janitor = Janitor::default();
        for i in 0..MAX_QUEUED + 10 {
            let name = format!("step-{i}");
            tmp.create_dir_all(format!("{name}/out")).unwrap();
            tmp.write(format!("{name}/out/file"), b"x").unwrap();
            janitor.remove(&tmp, name);
        }
        drop(janitor);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
