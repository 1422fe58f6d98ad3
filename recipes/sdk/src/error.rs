//! The recipe's error type: a message plus the context it was raised in,
//! printed by kiln as the build failure. Deliberately small — a recipe's
//! errors are read by people, not matched by code.

use std::fmt;

/// A build failure: what went wrong, outermost context first.
pub struct Error {
    chain: Vec<String>,
}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with just this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error {
            chain: vec![message.to_string()],
        }
    }

    fn wrap(mut self, context: String) -> Self {
        self.chain.insert(0, context);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.chain.join(": "))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        let mut chain = vec![e.to_string()];
        let mut source = e.source();
        while let Some(s) = source {
            chain.push(s.to_string());
            source = s.source();
        }
        Error { chain }
    }
}

/// Add a sentence of context to an error, as `anyhow::Context` does.
pub trait Context<T> {
    /// Wrap the error with `context`.
    fn context(self, context: impl fmt::Display) -> Result<T>;
    /// Wrap the error with the context `f` returns, computed only on error.
    fn with_context<C: fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().wrap(context.to_string()))
    }
    fn with_context<C: fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().wrap(f().to_string()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.ok_or_else(|| Error::msg(context))
    }
    fn with_context<C: fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| Error::msg(f()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_is_printed_outermost_first() {
        let r: Result<()> = Err(std::io::Error::other("disk on fire")).context("writing /out/a");
        assert_eq!(r.unwrap_err().to_string(), "writing /out/a: disk on fire");
    }
}
