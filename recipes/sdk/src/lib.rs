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
//! ```no_run
//! use kiln_sdk::{Command, Result, Tool};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Params {
//!     greeting: String,
//! }
//!
//! fn build() -> Result<()> {
//!     let p: Params = kiln_sdk::params()?;
//!     std::fs::write(kiln_sdk::out().join("greeting.txt"), &p.greeting)?;
//!     // Package the `src` input as it is, modes and all, without reading
//!     // it through the recipe's memory.
//!     kiln_sdk::files::copy(kiln_sdk::input("src")?, "/out/src")?;
//!     let n = Command::new(Tool::new("tools", "bin/sh"))
//!         .args(["-c", "ls /out/src | wc -l"])
//!         .run()?;
//!     kiln_sdk::info!("{} files", n.stdout_str().trim());
//!     Ok(())
//! }
//!
//! kiln_sdk::recipe!(build);
//! ```
//!
//! The examples in this documentation run as doctests inside kiln itself:
//! kiln's test suite compiles them for wasm32-wasip2 and runs each with
//! `kiln run` (a `src` input holding `hello.txt` and an executable
//! `bin/hello`, a `tools` input holding busybox as `bin/sh`, and params
//! `{"greeting": "Hello"}`), so what they show is what the host does.
//! A native `cargo test` reports the examples that call the host as
//! ignored (they are marked `ignore-linux`): only kiln can answer them.
//!
//! This crate must not grow host-side logic: it only adapts the WIT contract.

pub mod assemble;
mod error;
mod exec;
pub mod files;
pub mod platform;
pub mod version;

pub use error::{Context, Error, ErrorKind, Result};
pub use exec::{Command, Exit, FixedOutput, Output, Seed, Tool, cache_wants_seed};

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
///
/// ```ignore-linux
/// assert!(std::path::Path::new(kiln_sdk::WORK).is_dir());
/// ```
pub const WORK: &str = "/work";
/// Where the output goes: what is here when the build succeeds is stored.
///
/// ```ignore-linux
/// std::fs::write(format!("{}/version", kiln_sdk::OUT), "1\n").unwrap();
/// ```
pub const OUT: &str = "/out";

/// The directory recipes see as `/work`, as a [`Path`].
///
/// ```ignore-linux
/// std::fs::write(kiln_sdk::work().join("scratch.txt"), "x").unwrap();
/// ```
pub fn work() -> &'static Path {
    Path::new(WORK)
}

/// The directory recipes see as `/out`, as a [`Path`].
///
/// ```ignore-linux
/// std::fs::create_dir(kiln_sdk::out().join("bin")).unwrap();
/// ```
pub fn out() -> &'static Path {
    Path::new(OUT)
}

/// The path of the declared input `name` (`/inputs/<name>`), or a
/// bad-params error naming the inputs that do exist.
///
/// ```ignore-linux
/// let src = kiln_sdk::input("src").unwrap();
/// assert_eq!(src, std::path::Path::new("/inputs/src"));
/// let e = kiln_sdk::input("nope").unwrap_err();
/// assert_eq!(e.kind(), kiln_sdk::ErrorKind::BadParams);
/// assert!(e.to_string().contains("declared inputs: src, tools"), "{e}");
/// ```
pub fn input(name: &str) -> Result<PathBuf> {
    let all = inputs();
    if all.iter().any(|i| i.name == name) {
        Ok(Path::new("/inputs").join(name))
    } else {
        let names: Vec<_> = all.iter().map(|i| i.name.as_str()).collect();
        Err(Error::bad_params(format!(
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
///
/// ```ignore-linux
/// let inputs = kiln_sdk::inputs();
/// assert_eq!(inputs[0].name, "src");
/// assert!(matches!(inputs[0].kind, kiln_sdk::InputKind::Directory));
/// assert!(inputs[0].hash.starts_with("sha256-"));
/// ```
pub fn inputs() -> Vec<Input> {
    bindings::kiln::recipe::target::inputs()
}

/// The target's name.
///
/// ```ignore-linux
/// assert!(!kiln_sdk::target_name().is_empty());
/// ```
pub fn target_name() -> String {
    bindings::kiln::recipe::target::name()
}

/// The build's SOURCE_DATE_EPOCH, in seconds: the time to stamp into
/// archives and images.
///
/// ```ignore-linux
/// // `kiln build --source-date-epoch N` sets it; 0 by default.
/// let t = kiln_sdk::source_date_epoch();
/// assert!(t < 4_000_000_000);
/// ```
pub fn source_date_epoch() -> u64 {
    bindings::kiln::recipe::target::source_date_epoch()
}

/// The target's `params` table, deserialized into `T`; a mismatch is a
/// bad-params error, which kiln reports as a kiln.toml setting to fix.
///
/// Use `#[serde(deny_unknown_fields)]` on `T` so a typo in kiln.toml is an
/// error rather than a silently ignored setting.
///
/// ```ignore-linux
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Params {
///     greeting: String,
/// }
/// let p: Params = kiln_sdk::params().unwrap();
/// assert_eq!(p.greeting, "Hello");
///
/// #[derive(Debug, serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Other {
///     colour: String,
/// }
/// let e = kiln_sdk::params::<Other>().unwrap_err();
/// assert_eq!(e.kind(), kiln_sdk::ErrorKind::BadParams);
/// ```
pub fn params<T: serde::de::DeserializeOwned>() -> Result<T> {
    let json = bindings::kiln::recipe::target::params();
    serde_json::from_str(&json).map_err(|e| Error::bad_params(format!("invalid params: {e}")))
}

/// Log levels, re-exported for [`log`].
pub use bindings::kiln::recipe::log::Level;

/// Send `message` to kiln's output and the build log.
///
/// ```ignore-linux
/// kiln_sdk::log(kiln_sdk::Level::Info, "compiling 3 packages");
/// ```
pub fn log(level: Level, message: &str) {
    bindings::kiln::recipe::log::log(level, message);
}

/// Log at info level, with `format!` syntax.
///
/// ```ignore-linux
/// kiln_sdk::info!("built {} binaries", 2);
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log($crate::Level::Info, &format!($($arg)*)) };
}

/// Log at warn level, with `format!` syntax.
///
/// ```ignore-linux
/// kiln_sdk::warn!("{} has no tests", "cmd/hello");
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log($crate::Level::Warn, &format!($($arg)*)) };
}

/// Log at debug level, with `format!` syntax (shown with `kiln -v`).
///
/// ```ignore-linux
/// kiln_sdk::debug!("GOFLAGS={}", "-trimpath");
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log($crate::Level::Debug, &format!($($arg)*)) };
}

#[doc(hidden)]
pub fn run_build(
    build: fn() -> Result<()>,
) -> std::result::Result<(), bindings::kiln::recipe::types::BuildError> {
    build().map_err(Error::into_build_error)
}

/// Make `build` (a `fn() -> kiln_sdk::Result<()>`) this component's recipe.
///
/// ```no_run
/// fn build() -> kiln_sdk::Result<()> {
///     std::fs::write("/out/hello.txt", "hello\n")?;
///     Ok(())
/// }
/// kiln_sdk::recipe!(build);
/// ```
#[macro_export]
macro_rules! recipe {
    ($build:path) => {
        struct KilnRecipe;
        impl $crate::bindings::Guest for KilnRecipe {
            fn build()
            -> ::std::result::Result<(), $crate::bindings::kiln::recipe::types::BuildError> {
                $crate::run_build($build)
            }
        }
        $crate::bindings::export!(KilnRecipe);
    };
}
