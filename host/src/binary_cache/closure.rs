//! What pushing a target shares: its output, the outputs of the targets it
//! was built from, and its downloaded inputs — each with its build record
//! if it has one. Path inputs (the project's own files) and local recipes
//! stay home: the build key already covers them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_core::store::Store;

use crate::record::{self, DepRole, InputKind};

/// Every entry to push for `outputs`, with the bytes of its record.
pub fn closure(store: &Store, outputs: &[PathBuf]) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out: BTreeMap<PathBuf, Option<Vec<u8>>> = BTreeMap::new();
    let mut queue: Vec<PathBuf> = outputs.to_vec();
    while let Some(entry) = queue.pop() {
        if out.contains_key(&entry) {
            continue;
        }
        let bytes = record::read_bytes(store, &entry).ok();
        if let Some(rec) = bytes.as_deref().and_then(|b| record::parse(b).ok()) {
            for dep in rec.deps(store) {
                match dep.role {
                    DepRole::Input(InputKind::Target) => queue.push(dep.entry),
                    DepRole::Input(InputKind::Url | InputKind::Image) => {
                        out.entry(dep.entry).or_insert(None);
                    }
                    DepRole::Input(InputKind::Path) | DepRole::Recipe => {}
                }
            }
        }
        out.insert(entry, bytes);
    }
    out
}
