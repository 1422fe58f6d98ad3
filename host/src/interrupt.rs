//! Ctrl-C (SIGINT) and SIGTERM. The first stops the run cleanly: running
//! tools are killed with everything they started, no new tool, download or
//! host call starts, and the errors that follow unwind the build, so this
//! run's staging directories are removed; kiln then says so and exits 130.
//! A second one exits at once (staging left for `kiln gc`).
//!
//! signal-hook's handler only wakes a thread (a self-pipe, async-signal
//! safe); that thread does the rest. Handlers reset on exec and the signal
//! mask is untouched, so tools start with the default dispositions.

use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The exit status of a run stopped by a signal it was asked to stop on.
pub const EXIT_STATUS: i32 = 130;

/// How long kiln may take to stop cleanly after the first signal.
const GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What an interrupted step reports: the run stops.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted (Ctrl-C): stopped before it finished")]
pub struct Interrupted;

/// Whether the user asked kiln to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once the user asked kiln to stop.
pub fn check() -> Result<(), Interrupted> {
    if interrupted() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// Catch SIGINT and SIGTERM for the rest of the process.
pub fn install() -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("kiln-interrupt".into())
        .spawn(move || {
            for (seen, _) in signals.forever().enumerate() {
                INTERRUPTED.store(true, Ordering::SeqCst);
                crate::sandbox::kill_running();
                if seen == 0 {
                    eprintln!(
                        "\nkiln: interrupted; stopping running tools and removing this run's staging (press Ctrl-C again to quit at once)"
                    );
                    // Where nothing checks the flag (waiting for a lock,
                    // hashing a large tree, a recipe computing in wasm),
                    // kiln still stops, a little later.
                    std::thread::spawn(|| {
                        std::thread::sleep(GRACE);
                        crate::sandbox::kill_running();
                        eprintln!(
                            "kiln: still busy {}s after Ctrl-C; quit (staging left behind is removed by `kiln gc`)",
                            GRACE.as_secs()
                        );
                        std::process::exit(EXIT_STATUS);
                    });
                } else {
                    eprintln!("kiln: quit; staging left behind is removed by `kiln gc`");
                    std::process::exit(EXIT_STATUS);
                }
            }
        })?;
    Ok(())
}
