//! Bounding a guest's memories and tables, and noticing when it hit the bound.

use wasmtime::ResourceLimiter;

/// Tables, memories and instances a guest may create (components create
/// several core instances; plain modules one).
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 64;
/// Elements a single table may hold.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Caps the total linear memory of all a guest's memories.
pub(crate) struct MemoryLimiter {
    limit: usize,
    used: usize,
    hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        Self { limit: usize::try_from(limit).unwrap_or(usize::MAX), used: 0, hit: false }
    }

    /// Whether a growth was refused because of the limit.
    pub(crate) fn hit(&self) -> bool {
        self.hit
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let grown = self.used.saturating_add(desired.saturating_sub(current));
        if grown > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.used = grown;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
