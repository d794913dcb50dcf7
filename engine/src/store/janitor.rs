//! Removing steps' scratch directories on a background thread, so a worker
//! is free for the next step while the file system deletes the last one's.

use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use cap_std::fs::Dir;

/// A thread that removes directories of `tmp/` handed to it, and a count of
/// those not yet removed.
#[derive(Debug)]
pub(super) struct Janitor {
    queue: Mutex<Option<Sender<String>>>,
    pending: Arc<(Mutex<usize>, Condvar)>,
}

impl Janitor {
    /// A janitor for the directories of `tmp`; its thread starts on first use.
    pub(super) fn new() -> Self {
        Self { queue: Mutex::new(None), pending: Arc::new((Mutex::new(0), Condvar::new())) }
    }

    /// Queues `name`, a directory of `tmp`, for removal. Where no thread can
    /// be started, removes it now.
    pub(super) fn remove(&self, tmp: &Dir, name: String) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.is_none() {
            *queue = tmp.try_clone().ok().and_then(|dir| self.start(dir));
        }
        let Some(sender) = queue.as_ref() else {
            let _ = tmp.remove_dir_all(&name);
            return;
        };
        *self.pending.0.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        if let Err(unsent) = sender.send(name) {
            self.settled();
            let _ = tmp.remove_dir_all(unsent.0);
        }
    }

    /// Waits until every queued directory is removed.
    pub(super) fn wait(&self) {
        let (count, changed) = &*self.pending;
        let mut count = count.lock().unwrap_or_else(PoisonError::into_inner);
        while *count > 0 {
            count = changed.wait(count).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn start(&self, tmp: Dir) -> Option<Sender<String>> {
        let (sender, receiver) = channel::<String>();
        let pending = self.pending.clone();
        std::thread::Builder::new()
            .name("weir-janitor".into())
            .spawn(move || {
                for name in receiver {
                    // Leftovers are unreachable from any entry; failing to remove one loses nothing.
                    let _ = tmp.remove_dir_all(&name);
                    let (count, changed) = &*pending;
                    *count.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
                    changed.notify_all();
                }
            })
            .ok()?;
        Some(sender)
    }

    fn settled(&self) {
        let (count, changed) = &*self.pending;
        *count.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        changed.notify_all();
    }
}
