//! `assemble`: hashing and writing files laid out from pieces, checked
//! against the disk budget first (glue only; the work is in
//! `runtime::assemble`).

use super::HostState;
use crate::runtime::RecipeError;
use crate::runtime::bindings::kiln::recipe::assemble;
use crate::runtime::bindings::kiln::recipe::types::Error as FsError;

impl assemble::Host for HostState {
    fn sha256(
        &mut self,
        pieces: Vec<assemble::Piece>,
    ) -> wasmtime::Result<Result<(Vec<u8>, u64), FsError>> {
        self.check_deadline()?;
        let r = crate::runtime::assemble::sha256(&self.guest_fs(), &pieces, self.deadline);
        self.stop_result(r.map(|(digest, len)| (digest.to_vec(), len)), 0)
    }

    fn write_files(&mut self, files: Vec<assemble::File>) -> wasmtime::Result<Result<(), FsError>> {
        self.check_deadline()?;
        // The budget is checked before writing, not after: one call could
        // otherwise put any amount on the host's disk first.
        let planned = match crate::runtime::assemble::planned_bytes(&self.guest_fs(), &files) {
            Ok(n) => n,
            Err(e) => return self.stop_result(Err(e), 0),
        };
        let used = self.disk_used(false)?;
        if used.saturating_add(planned) > self.run.limits.disk_bytes {
            return Err(self.trap(RecipeError::DiskLimit {
                target: self.run.target.clone(),
                bytes: used.saturating_add(planned),
                limit: self.run.limits.disk_bytes,
            }));
        }
        let r = crate::runtime::assemble::write_files(&self.guest_fs(), &files, self.deadline);
        self.stop_result(r, used)
    }
}
