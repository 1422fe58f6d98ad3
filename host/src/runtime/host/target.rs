//! `target`: what the recipe is asked to build (glue only).

use super::HostState;
use crate::runtime::bindings::kiln::recipe::target;

impl target::Host for HostState {
    fn name(&mut self) -> wasmtime::Result<String> {
        Ok(self.run.target.clone())
    }

    fn params(&mut self) -> wasmtime::Result<String> {
        Ok(self.run.params_json.clone())
    }

    fn inputs(&mut self) -> wasmtime::Result<Vec<target::Input>> {
        let mut v: Vec<_> = self
            .run
            .inputs
            .iter()
            .map(|i| target::Input {
                name: i.name.clone(),
                hash: i.hash.clone(),
                kind: if i.is_dir {
                    target::InputKind::Directory
                } else {
                    target::InputKind::File
                },
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    fn source_date_epoch(&mut self) -> wasmtime::Result<u64> {
        Ok(self.run.source_date_epoch)
    }
}
