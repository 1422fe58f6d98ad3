//! What pushing a target shares: its output, the outputs of the targets it
//! was built from, and its downloaded inputs — each with its build record
//! if it has one. Path inputs (the project's own files) stay home: the
//! build key already covers them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_core::store::Store;

use crate::builder::record::{self, InputKind};

/// Every entry to push for `outputs`, with the bytes of its record.
pub fn closure(store: &Store, outputs: &[PathBuf]) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out: BTreeMap<PathBuf, Option<Vec<u8>>> = BTreeMap::new();
    let mut queue: Vec<PathBuf> = outputs.to_vec();
    while let Some(entry) = queue.pop() {
        if out.contains_key(&entry) {
            continue;
        }
        let bytes = kiln_core::sidefile::read(
            &store.record_path(&entry),
            kiln_core::sidefile::Links::Refuse,
            kiln_core::sidefile::limits::RECORD,
        )
        .ok();
        if let Ok(rec) = record::read(store, &entry) {
            for input in &rec.inputs {
                match input.kind {
                    InputKind::Target => {
                        if let Some(name) = &input.entry {
                            queue.push(store.entries_dir().join(name));
                        }
                    }
                    InputKind::Url => {
                        if let Some(e) = store.find_by_hash(&input.hash) {
                            out.entry(e).or_insert(None);
                        }
                    }
                    InputKind::Path => {}
                }
            }
        }
        out.insert(entry, bytes);
    }
    out
}
