//! The kiln recipe SDK: what a recipe written in Rust depends on.
//!
//! A recipe is a WebAssembly component (`wasm32-wasip2`) that kiln runs with
//! nothing but its target's hashed inputs, a scratch directory and the right
//! to run tools the target declared. This crate wraps the raw contract in
//! `wit/recipe.wit` into plain Rust:
//!
//! * [`params`] deserializes the target's `params` table into your type;
//! * [`input`], [`WORK`] and [`OUT`] name the directories the recipe sees;
//! * [`Command`] runs a declared tool in the host's sandbox;
//! * [`assemble`] has the host hash and write large files made of pieces
//!   (headers it computed, ranges of its inputs), several at once;
//! * [`info!`], [`warn!`] and [`debug!`] log into kiln's output;
//! * [`Error`] and [`Context`] turn failures into a readable build error.
//!
//! A whole recipe:
//!
//! ```ignore
//! use kiln_sdk::{Command, Tool, Result};
//!
//! #[derive(serde::Deserialize)]
//! struct Params { greeting: String }
//!
//! fn build() -> Result<()> {
//!     let p: Params = kiln_sdk::params()?;
//!     std::fs::write(kiln_sdk::OUT.join("greeting.txt"), p.greeting)?;
//!     Ok(())
//! }
//!
//! kiln_sdk::recipe!(build);
//! ```
//!
//! This crate must not grow host-side logic: it only adapts the WIT contract.

pub mod assemble;
mod error;
mod exec;
pub mod platform;

pub use error::{Context, Error, Result};
pub use exec::{Command, Output, Tool};

use std::path::{Path, PathBuf};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "recipe",
        pub_export_macro: true,
        default_bindings_module: "kiln_sdk::bindings",
    });
}

pub use bindings::kiln::recipe::target::{Input, InputKind};

/// Read-write scratch space, empty when the build starts.
pub const WORK: &str = "/work";
/// Where the output goes: what is here when the build succeeds is stored.
pub const OUT: &str = "/out";

/// The directory recipes see as `/work`, as a [`Path`].
pub fn work() -> &'static Path {
    Path::new(WORK)
}

/// The directory recipes see as `/out`, as a [`Path`].
pub fn out() -> &'static Path {
    Path::new(OUT)
}

/// The path of the declared input `name` (`/inputs/<name>`), or an error
/// naming the inputs that do exist.
pub fn input(name: &str) -> Result<PathBuf> {
    let all = inputs();
    if all.iter().any(|i| i.name == name) {
        Ok(Path::new("/inputs").join(name))
    } else {
        let names: Vec<_> = all.iter().map(|i| i.name.as_str()).collect();
        Err(Error::msg(format!(
            "this target has no input '{name}' (declared inputs: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )))
    }
}

/// Every input the target declares, sorted by name.
pub fn inputs() -> Vec<Input> {
    bindings::kiln::recipe::target::inputs()
}

/// The target's name.
pub fn target_name() -> String {
    bindings::kiln::recipe::target::name()
}

/// The Unix mode bits of `path` (under `/inputs`), which WASI cannot report;
/// `None` if it does not exist.
#[cfg(target_arch = "wasm32")]
pub fn file_mode(path: &Path) -> Option<u32> {
    bindings::kiln::recipe::target::file_mode(&path.to_string_lossy())
}

/// The Unix mode bits of `path`; `None` if it does not exist. Natively (a
/// recipe's own `cargo test`) the file system answers directly.
#[cfg(not(target_arch = "wasm32"))]
pub fn file_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// Whether `path` (under `/inputs`) is a file with an executable bit set.
pub fn is_executable(path: &Path) -> bool {
    path.is_file() && file_mode(path).is_some_and(|m| m & 0o111 != 0)
}

/// The sha256 of the file at `path` (under `/inputs`, `/work` or `/out`),
/// computed by the host at native speed: use it for large files.
pub fn sha256_file(path: impl AsRef<Path>) -> Result<[u8; 32]> {
    let path = path.as_ref().to_string_lossy();
    let bytes = bindings::kiln::recipe::digest::sha256_file(&path).map_err(Error::msg)?;
    bytes
        .try_into()
        .map_err(|_| Error::msg(format!("the host's sha256 of {path} is not 32 bytes")))
}

/// The build's SOURCE_DATE_EPOCH, in seconds.
pub fn source_date_epoch() -> u64 {
    bindings::kiln::recipe::target::source_date_epoch()
}

/// The target's `params` table, deserialized into `T`.
///
/// Use `#[serde(deny_unknown_fields)]` on `T` so a typo in kiln.toml is an
/// error rather than a silently ignored setting.
pub fn params<T: serde::de::DeserializeOwned>() -> Result<T> {
    let json = bindings::kiln::recipe::target::params();
    serde_json::from_str(&json).map_err(|e| {
        Error::msg(format!(
            "invalid params for target '{}': {e}",
            target_name()
        ))
    })
}

/// Log levels, re-exported for [`log`].
pub use bindings::kiln::recipe::log::Level;

/// Send `message` to kiln's output and the build log.
pub fn log(level: Level, message: &str) {
    bindings::kiln::recipe::log::log(level, message);
}

/// Log at info level, with `format!` syntax.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log($crate::Level::Info, &format!($($arg)*)) };
}

/// Log at warn level, with `format!` syntax.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log($crate::Level::Warn, &format!($($arg)*)) };
}

/// Log at debug level, with `format!` syntax.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log($crate::Level::Debug, &format!($($arg)*)) };
}

#[doc(hidden)]
pub fn run_build(build: fn() -> Result<()>) -> std::result::Result<(), String> {
    build().map_err(|e| e.to_string())
}

/// Make `build` (a `fn() -> kiln_sdk::Result<()>`) this component's recipe.
#[macro_export]
macro_rules! recipe {
    ($build:path) => {
        struct KilnRecipe;
        impl $crate::bindings::Guest for KilnRecipe {
            fn build() -> ::std::result::Result<(), ::std::string::String> {
                $crate::run_build($build)
            }
        }
        $crate::bindings::export!(KilnRecipe);
    };
}
