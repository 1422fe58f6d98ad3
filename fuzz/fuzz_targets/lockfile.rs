//! Any text as a kiln.lock.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = kiln_core::lockfile::Lockfile::parse("kiln.lock", text);
});
