//! The `kiln` command line: parses argv and env, calls the library, prints.
//!
//! Arguments are parsed in two phases: clap turns argv into plain validated
//! values (no I/O), then each command opens what it needs. Errors reach the
//! user once, in [`main`], with their context chain; exit codes: 0 success,
//! 1 a build or command failed, 2 bad usage.

/// A line on stdout for text that may hold untrusted parts (names,
/// messages, anything a recipe, tool, server or kiln.toml chose): shown
/// through [`crate::terminal::safe`]. Every line the CLI prints goes
/// through these three, or `jsonln!` for JSON. A write error (a closed
/// pipe) returns from the command with the `io::Error` in its chain.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(&format!("{}\n", $crate::terminal::safe(&format!($($arg)*))))?
    };
}

/// `outln!` without the newline.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(&$crate::terminal::safe(&format!($($arg)*)))?
    };
}

/// `eprintln!` through [`crate::terminal::safe`].
macro_rules! errln {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::terminal::safe(&format!($($arg)*)))
    };
}

/// A value as pretty JSON on stdout: valid JSON, with the characters
/// serde_json leaves raw that a terminal obeys (DEL, C1, bidi) escaped.
macro_rules! jsonln {
    ($value:expr) => {
        $crate::cli::write_stdout(&format!(
            "{}\n",
            $crate::terminal::safe_json(&serde_json::to_string_pretty($value)?)
        ))?
    };
}

mod args;
mod commands;
mod console;
mod open;
mod options;
mod project;
mod user_config;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Parser;

pub use args::Cli;

/// Where kiln keeps its store ([`kiln_core::store::Store::default_root`]).
pub fn kiln_home() -> anyhow::Result<PathBuf> {
    kiln_core::store::Store::default_root().ok_or_else(|| {
        anyhow::anyhow!(
            "neither KILN_HOME nor HOME is set; set KILN_HOME to where kiln may keep its store"
        )
    })
}

/// Whether progress bars may be drawn (stderr is a terminal and not `-q`).
fn progress_enabled(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// Write `text` to stdout (what `outln!`, `out!` and `jsonln!` expand to).
pub fn write_stdout(text: &str) -> Result<(), StdoutError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(StdoutError)
}

/// Writing to stdout failed: when it is a closed pipe, the reader went away.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to stdout: {0}")]
pub struct StdoutError(std::io::Error);

/// Run kiln with the process's argv; returns the exit code.
pub fn main() -> i32 {
    // Nothing kiln inherited past stdio may reach a process it starts.
    if let Err(e) = crate::descriptors::seal_inherited() {
        errln!("error: cannot mark inherited file descriptors close-on-exec: {e}");
        return 1;
    }
    if let Err(e) = crate::interrupt::install() {
        errln!("error: cannot catch Ctrl-C: {e}");
        return 1;
    }
    let cli = Cli::parse();
    let result = commands::run(cli);
    crate::sandbox::remove_build_cgroups();
    match result {
        Ok(()) => 0,
        // `kiln audit | head`: the reader went away. Stop quietly with the
        // status a process killed by SIGPIPE has.
        Err(e) if reader_went_away(&e) => 141,
        Err(e) if crate::interrupt::interrupted() => {
            errln!("kiln: interrupted: {e}");
            crate::interrupt::EXIT_STATUS
        }
        Err(e) => {
            errln!("error: {e}");
            for cause in e.chain().skip(1) {
                errln!("  caused by: {cause}");
            }
            1
        }
    }
}

/// Whether `e` is, anywhere in its chain, a write to stdout that found the
/// pipe closed (a broken pipe elsewhere, to a server say, is an error).
fn reader_went_away(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<StdoutError>()
            .is_some_and(|StdoutError(io)| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
