//! The recipe's memory budget, enforced by wasmtime through
//! [`wasmtime::ResourceLimiter`].

/// Caps the recipe's memory *in total* — every linear memory and table it
/// creates counts, not only the largest — and the number of instances,
/// memories and tables, so a component cannot multiply small allocations
/// past the limit. Remembers that the cap was hit, so the trap that follows
/// a failed allocation can be reported as what it is.
pub(super) struct MemoryLimiter {
    limit: usize,
    /// Bytes of linear memory granted so far, all memories together.
    used: usize,
    /// Table elements granted so far, all tables together.
    table_elements: usize,
    hit: bool,
}

/// Instances, memories and tables a recipe may create. A Rust recipe built
/// for wasm32-wasip2 uses a handful of each.
pub(super) const MAX_INSTANCES: usize = 64;
pub(super) const MAX_MEMORIES: usize = 16;
pub(super) const MAX_TABLES: usize = 64;
/// Table elements, all tables together.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl MemoryLimiter {
    pub(super) fn new(limit: usize) -> Self {
        MemoryLimiter {
            limit,
            used: 0,
            table_elements: 0,
            hit: false,
        }
    }

    /// Whether the recipe asked for more memory than its limit.
    pub(super) fn hit(&self) -> bool {
        self.hit
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used - current.min(self.used) + desired;
        if total > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.table_elements - current.min(self.table_elements) + desired;
        if total > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }
    fn instances(&self) -> usize {
        MAX_INSTANCES
    }
    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memory_is_limited_across_all_memories_not_each() {
        let mut l = MemoryLimiter::new(100 << 20);
        // Three memories of 40 MiB each: the third passes the total.
        assert!(l.memory_growing(0, 40 << 20, None).unwrap());
        assert!(l.memory_growing(0, 40 << 20, None).unwrap());
        assert!(!l.memory_growing(0, 40 << 20, None).unwrap());
        assert!(l.hit());
        // Growing one already counted is charged by the difference.
        assert!(l.memory_growing(40 << 20, 60 << 20, None).unwrap());
        assert!(!l.memory_growing(60 << 20, 61 << 20, None).unwrap());
        // Tables likewise, and the counts of each kind are capped.
        assert!(l.table_growing(0, MAX_TABLE_ELEMENTS, None).unwrap());
        assert!(!l.table_growing(0, 1, None).unwrap());
        assert_eq!(
            (l.instances(), l.memories(), l.tables()),
            (MAX_INSTANCES, MAX_MEMORIES, MAX_TABLES)
        );
    }
}
