//! Any text as a hash (SRI, nix32, hex): a parsed hash prints back to a
//! spelling that parses to the same hash in every encoding.
#![no_main]
use kiln_core::hash::Sha256Hash;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(h) = Sha256Hash::parse(text) {
        for s in [
            h.to_sri(),
            format!("sha256:{}", h.to_nix32()),
            format!("sha256:{}", h.to_hex()),
        ] {
            assert_eq!(Sha256Hash::parse(&s).ok(), Some(h), "{s}");
        }
    }
});
