//! Cleaning up steps' scratch directories on a background thread, so neither
//! a worker nor the end of a run waits while the file system deletes them:
//! one whose contents are known is emptied by name and pooled for the next
//! execution (see `scratch`), any other is removed whole.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use cap_std::fs::Dir;

use super::scratch::{POOL_MAX, Scratch, UsedScratch};

/// Directories queued at most; past this a caller cleans up its own, so a
/// burst of short steps cannot pile up scratch faster than it is deleted.
const MAX_QUEUED: usize = 256;

/// A thread that empties or removes the scratch directories handed to it,
/// and the pool of emptied ones. Dropping the janitor waits for the queue to
/// empty and removes the pooled directories, so a store closed normally
/// leaves no scratch behind (one killed leaves it to the next open's sweep).
#[derive(Debug)]
pub(super) struct Janitor {
    /// The store's `tmp/`.
    tmp: Dir,
    worker: Mutex<Option<Worker>>,
    queued: Arc<AtomicUsize>,
    pool: Arc<Mutex<Vec<Scratch>>>,
}

#[derive(Debug)]
struct Worker {
    queue: Sender<UsedScratch>,
    thread: JoinHandle<()>,
}

impl Janitor {
    /// A janitor of the scratch directories in `tmp`.
    pub(super) fn new(tmp: Dir) -> Self {
        Janitor { tmp, worker: Mutex::default(), queued: Arc::default(), pool: Arc::default() }
    }

    /// An emptied scratch directory, if one is pooled.
    pub(super) fn take_pooled(&self) -> Option<Scratch> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }

    /// How many emptied directories are pooled.
    #[cfg(test)]
    pub(super) fn pooled(&self) -> usize {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Queues `used` to be emptied or removed (the thread starts on first
    /// use). Where no thread can be started or the queue is full, cleans it
    /// up now.
    pub(super) fn release(&self, used: UsedScratch) {
        let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        if worker.is_none() {
            *worker = self.tmp.try_clone().ok().and_then(|dir| self.start(dir));
        }
        let queued = match worker.as_ref() {
            Some(worker) if self.queued.load(Ordering::Acquire) < MAX_QUEUED => {
                self.queued.fetch_add(1, Ordering::AcqRel);
                worker.queue.send(used).map_err(|unsent| {
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    unsent.0
                })
            }
            _ => Err(used),
        };
        drop(worker);
        if let Err(used) = queued {
            clean_up(&self.tmp, &self.pool, used);
        }
    }

    fn start(&self, tmp: Dir) -> Option<Worker> {
        let (queue, receiver) = channel::<UsedScratch>();
        let (queued, pool) = (self.queued.clone(), self.pool.clone());
        let thread = std::thread::Builder::new()
            .name("weir-janitor".into())
            .spawn(move || {
                for used in receiver {
                    clean_up(&tmp, &pool, used);
                    queued.fetch_sub(1, Ordering::AcqRel);
                }
            })
            .ok()?;
        Some(Worker { queue, thread })
    }
}

/// Empties `used` into `pool` when its contents are known and the pool has
/// room; removes it otherwise.
fn clean_up(tmp: &Dir, pool: &Mutex<Vec<Scratch>>, used: UsedScratch) {
    let UsedScratch { scratch, leftovers } = used;
    if let Some(leftovers) = leftovers
        && scratch.empty(&leftovers).is_ok()
    {
        let mut pool = pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_MAX {
            pool.push(scratch);
            return;
        }
    }
    remove(tmp, scratch);
}

/// Removes a scratch directory whole. Leftovers are unreachable from any
/// entry; failing to remove one loses nothing.
fn remove(tmp: &Dir, scratch: Scratch) {
    let name = scratch.name().to_owned();
    drop(scratch);
    let _ = tmp.remove_dir_all(name);
}

impl Drop for Janitor {
    fn drop(&mut self) {
        let worker = self.worker.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(Worker { queue, thread }) = worker {
            drop(queue);
            let _ = thread.join();
        }
        for scratch in std::mem::take(&mut *self.pool.lock().unwrap_or_else(PoisonError::into_inner)) {
            remove(&self.tmp, scratch);
        }
    }
}
