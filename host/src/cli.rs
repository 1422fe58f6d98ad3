//! The `kiln` command line: parses argv and env, calls the library, prints.
//!
//! Arguments are parsed in two phases: clap turns argv into plain validated
//! values (no I/O), then each command opens what it needs. Errors reach the
//! user once, in [`main`], with their context chain; exit codes: 0 success,
//! 1 a build or command failed, 2 bad usage.

/// `println!` for text that may hold untrusted parts (names, messages,
/// anything a recipe, tool, server or kiln.toml chose): shown through
/// [`crate::terminal::safe`]. Every line the CLI prints goes through these
/// three, or `jsonln!` for JSON.
macro_rules! outln {
    ($($arg:tt)*) => {
        println!("{}", $crate::terminal::safe(&format!($($arg)*)))
    };
}

/// `print!` through [`crate::terminal::safe`].
macro_rules! out {
    ($($arg:tt)*) => {
        print!("{}", $crate::terminal::safe(&format!($($arg)*)))
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
        println!(
            "{}",
            $crate::terminal::safe_json(&serde_json::to_string_pretty($value)?)
        )
    };
}

mod args;
mod cache_config;
mod commands;

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

/// Run kiln with the process's argv; returns the exit code.
pub fn main() -> i32 {
    quiet_on_closed_stdout();
    // Nothing kiln inherited past stdio may reach a process it starts.
    if let Err(e) = crate::descriptors::seal_inherited() {
        errln!("error: cannot mark inherited file descriptors close-on-exec: {e}");
        return 1;
    }
    let cli = Cli::parse();
    let result = commands::run(cli);
    crate::sandbox::remove_build_cgroups();
    match result {
        Ok(()) => 0,
        Err(e) => {
            errln!("error: {e}");
            for cause in e.chain().skip(1) {
                errln!("  caused by: {cause}");
            }
            1
        }
    }
}

/// `kiln audit | head`: when the reader goes away, stop quietly with the
/// status a process killed by SIGPIPE has (141), instead of a panic message.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload_as_str().unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
