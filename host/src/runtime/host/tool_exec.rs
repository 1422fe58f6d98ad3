//! `tool-exec`: running declared tools (glue only; the work is in `exec`
//! and `fixed_output`; caches in `tool_caches`).

use super::HostState;
use crate::runtime::bindings::kiln::recipe::tool_exec;

impl tool_exec::Host for HostState {
    fn exec(
        &mut self,
        cmd: tool_exec::Command,
    ) -> wasmtime::Result<Result<tool_exec::Output, tool_exec::Error>> {
        self.exec_one(cmd)
    }

    fn exec_all(
        &mut self,
        cmds: Vec<tool_exec::Command>,
    ) -> wasmtime::Result<Vec<Result<tool_exec::Output, tool_exec::Error>>> {
        self.exec_batch(cmds)
    }

    fn cache_wants_seed(&mut self, key: String, path: String) -> wasmtime::Result<bool> {
        Ok(self.seed_would_be_used(&key, &path))
    }
}
