//! `log`: the recipe's log lines, bounded, recorded and reported.

use super::{HostState, LOG_MESSAGE_LIMIT};
use crate::record::LogLine;
use crate::report::{Event, Level};
use crate::runtime::RecipeError;
use crate::runtime::bindings::kiln::recipe::log;

/// What one log line costs at the least, against the build's log budget.
const LOG_LINE_OVERHEAD: usize = 64;

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.check_deadline()?;
        if message.len() > LOG_MESSAGE_LIMIT {
            return Err(self.trap(RecipeError::LogTooLong {
                target: self.run.target.clone(),
                len: message.len(),
                limit: LOG_MESSAGE_LIMIT,
            }));
        }
        // Each line counts at least what keeping it costs, so empty lines
        // cannot be logged without end.
        self.log_bytes = self
            .log_bytes
            .saturating_add(message.len().max(LOG_LINE_OVERHEAD));
        if self.log_bytes > self.run.limits.log_bytes {
            return Err(self.trap(RecipeError::LogLimit {
                target: self.run.target.clone(),
                limit: self.run.limits.log_bytes,
            }));
        }
        let level = match level {
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.run.reporter.send(Event::Log {
            target: self.run.target.clone(),
            level,
            message: message.clone(),
        });
        self.report().log.push(LogLine {
            source: level.into(),
            message,
        });
        Ok(())
    }
}
