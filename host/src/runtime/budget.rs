//! What a host call may spend for a recipe: time until the build's
//! deadline, and bytes of its disk budget. Every long loop on the host side
//! (a copy, an assembly, measuring what tools wrote) spends through a
//! [`Budget`] and stops for one of the reasons in [`Stop`]; the host glue
//! turns a stop into the recipe's error or a trap in one place
//! (`HostState::stop_result`).

use std::time::Instant;

use super::bindings::kiln::recipe::types::Error as FsError;

/// The most bytes a loop moves between two looks at the deadline, so a
/// huge (or sparse) file still meets it.
pub(super) const STEP: u64 = 64 << 20;

/// Why a host-side loop stopped.
#[derive(Debug)]
pub(super) enum Stop {
    /// Bad input or an I/O error: the error is for the recipe.
    Failed(FsError),
    /// The build's deadline passed.
    TimedOut,
    /// Going on would pass the disk budget: the bytes counted when it was
    /// passed.
    TooLarge(u64),
}

impl From<FsError> for Stop {
    fn from(e: FsError) -> Self {
        Stop::Failed(e)
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Failed(FsError::Io(e.to_string()))
    }
}

/// Time and bytes left.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    deadline: Instant,
    bytes_left: u64,
    spent: u64,
}

impl Budget {
    /// Until `deadline`, at most `bytes`.
    pub(super) fn new(deadline: Instant, bytes: u64) -> Self {
        Budget {
            deadline,
            bytes_left: bytes,
            spent: 0,
        }
    }

    /// Until `deadline`, bytes uncounted.
    pub(super) fn time(deadline: Instant) -> Self {
        Budget::new(deadline, u64::MAX)
    }

    /// `Err(TimedOut)` once the deadline has passed.
    pub(super) fn check_time(&self) -> Result<(), Stop> {
        if Instant::now() >= self.deadline {
            Err(Stop::TimedOut)
        } else {
            Ok(())
        }
    }

    /// The bytes spent so far.
    pub(super) fn spent(&self) -> u64 {
        self.spent
    }

    /// Spend `bytes` (checking the time first).
    pub(super) fn spend(&mut self, bytes: u64) -> Result<(), Stop> {
        self.check_time()?;
        self.spent = self.spent.saturating_add(bytes);
        self.bytes_left = self
            .bytes_left
            .checked_sub(bytes)
            .ok_or(Stop::TooLarge(self.spent))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn spending_stops_past_the_bytes_or_the_deadline() {
        let later = Instant::now() + Duration::from_secs(60);
        let mut b = Budget::new(later, 10);
        assert!(b.spend(6).is_ok());
        assert!(matches!(b.spend(5), Err(Stop::TooLarge(11))));
        let mut late = Budget::time(Instant::now() - Duration::from_millis(1));
        assert!(matches!(late.spend(1), Err(Stop::TimedOut)));
        assert!(matches!(late.check_time(), Err(Stop::TimedOut)));
        assert!(Budget::time(later).spend(u64::MAX - 1).is_ok());
    }
}
