//! `files` and `types`: modes and copies inside `/work` and `/out` (glue
//! only; the work is in `runtime::guest_fs` and `runtime::copy`).

use super::HostState;
use crate::runtime::bindings::kiln::recipe::types::Error as FsError;
use crate::runtime::bindings::kiln::recipe::{files, types};

impl types::Host for HostState {}

impl files::Host for HostState {
    fn mode(&mut self, path: String) -> wasmtime::Result<Result<u32, FsError>> {
        self.check_deadline()?;
        Ok(self.guest_fs().mode(&path))
    }

    fn set_mode(&mut self, path: String, mode: u32) -> wasmtime::Result<Result<(), FsError>> {
        self.check_deadline()?;
        Ok(self.guest_fs().set_mode(&path, mode))
    }

    fn copy(&mut self, src: String, dst: String) -> wasmtime::Result<Result<(), FsError>> {
        self.check_deadline()?;
        let used = self.disk_used(false)?;
        let budget = self.run.limits.disk_bytes.saturating_sub(used);
        let r = crate::runtime::copy::copy(&self.guest_fs(), &src, &dst, budget, self.deadline);
        self.stop_result(r, used)
    }
}
