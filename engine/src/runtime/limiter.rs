//! Bounding a guest's memories and tables, and noticing when it hit the bound.
//! Tables count against the memory limit like memories do: each element
//! takes host memory, and a guest must not hold more than its limit says.

use wasmtime::ResourceLimiter;

/// Tables, memories and instances a guest may create (components create
/// several core instances; plain modules one).
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 64;
/// Elements a single table may hold.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Host bytes one table element takes (a pointer-sized reference).
const TABLE_ELEMENT_BYTES: usize = 8;

/// Caps the total host memory of all a guest's memories and tables.
pub(crate) struct MemoryLimiter {
    limit: usize,
    used: usize,
    hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        Self { limit: usize::try_from(limit).unwrap_or(usize::MAX), used: 0, hit: false }
    }

    /// Bytes the limit leaves beyond what the guest holds: what native
    /// calls made for it may allocate.
    pub(crate) fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used) as u64
    }

    /// Grows the guest's holdings by `bytes`, unless that passes the limit.
    fn grow(&mut self, bytes: usize) -> bool {
        let grown = self.used.saturating_add(bytes);
        if grown > self.limit {
            self.hit = true;
            return false;
        }
        self.used = grown;
        true
    }

    /// Whether a growth was refused because of the limit.
    pub(crate) fn hit(&self) -> bool {
        self.hit
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow(desired.saturating_sub(current)))
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let added = desired.saturating_sub(current).saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(desired <= MAX_TABLE_ELEMENTS && self.grow(added))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_memories_share_one_limit() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 512 << 10, None).unwrap());
        assert_eq!(limiter.remaining(), 512 << 10);
        assert!(limiter.table_growing(0, 1 << 15, None).unwrap(), "256 KiB of table fits");
        assert!(!limiter.table_growing(1 << 15, 1 << 17, None).unwrap(), "768 KiB more does not");
        assert!(limiter.hit());
        assert_eq!(limiter.remaining(), 256 << 10);
    }
}
