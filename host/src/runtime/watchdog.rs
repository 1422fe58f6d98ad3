//! The last bound on a recipe's time: a thread that ends kiln when a run
//! outlives its deadline by [`GRACE`].
//!
//! wasmtime's epoch deadline interrupts a recipe only while it runs wasm;
//! a host call that blocks (an open or read the kernel never finishes)
//! cannot be interrupted from outside. kiln removes what could make its
//! own calls block (FIFOs and sockets tools leave, special files as side
//! files), and this watchdog is what holds if something was missed:
//! `--timeout` bounds the build whatever a recipe, tool or test does.
//!
//! When it fires, it kills every tool process group still running and
//! exits the process with status 1 after one line on stderr. It never
//! fires for a run that finishes: dropping the [`Watchdog`] disarms it.

use std::sync::mpsc;
use std::time::Duration;

/// How long past its deadline a run may still be unwinding (a tool being
/// killed, an output being measured) before kiln is stopped.
pub const GRACE: Duration = Duration::from_secs(30);

/// Armed for one run; disarmed when dropped.
#[derive(Debug)]
pub struct Watchdog {
    _disarm: mpsc::Sender<()>,
}

impl Watchdog {
    /// Stop kiln if the run for `target` is still going `limit + GRACE`
    /// from now.
    pub fn arm(target: &str, limit: Duration) -> Watchdog {
        let target = target.escape_debug().to_string();
        Self::arm_with(limit.saturating_add(GRACE), move || {
            crate::sandbox::kill_running();
            eprintln!(
                "error: target '{target}' was still running {}s past its time limit of {}s: kiln was blocked where the limit cannot interrupt it; stopped (raise it with --timeout if the work is legitimate)",
                GRACE.as_secs(),
                limit.as_secs()
            );
            std::process::exit(1);
        })
    }

    /// Run `fire` on a thread after `after`, unless disarmed first.
    fn arm_with(after: Duration, fire: impl FnOnce() + Send + 'static) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            // Disarmed: the sender was dropped (Disconnected). Only a
            // timeout means the run is still going.
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(after) {
                fire();
            }
        });
        Watchdog { _disarm: tx }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn it_fires_only_for_a_run_still_going() {
        let fired = Arc::new(AtomicBool::new(false));
        let f = fired.clone();
        let dog = Watchdog::arm_with(Duration::from_millis(50), move || {
            f.store(true, Ordering::SeqCst)
        });
        std::thread::sleep(Duration::from_millis(500));
        assert!(fired.load(Ordering::SeqCst), "a late run was not stopped");
        drop(dog);

        let fired = Arc::new(AtomicBool::new(false));
        let f = fired.clone();
        let dog = Watchdog::arm_with(Duration::from_millis(200), move || {
            f.store(true, Ordering::SeqCst)
        });
        drop(dog);
        std::thread::sleep(Duration::from_millis(500));
        assert!(!fired.load(Ordering::SeqCst), "a finished run was stopped");
    }
}
