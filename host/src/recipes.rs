//! The standard recipes, compiled to wasm32-wasip2 by `build.rs` and
//! embedded, so one `kiln` binary carries them.

include!(concat!(env!("OUT_DIR"), "/recipes.rs"));

/// The wasm of the standard recipe `name`, if there is one.
pub fn standard(name: &str) -> Option<&'static [u8]> {
    STANDARD.iter().find(|(n, _)| *n == name).map(|(_, w)| *w)
}

/// The names of all standard recipes.
pub fn standard_names() -> Vec<&'static str> {
    STANDARD.iter().map(|(n, _)| *n).collect()
}
