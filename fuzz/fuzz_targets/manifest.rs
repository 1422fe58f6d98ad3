//! Any text as a kiln.toml: an error names a location, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = kiln_core::manifest::parse_manifest(std::path::Path::new("/p/kiln.toml"), text);
});
