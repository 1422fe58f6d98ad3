//! The recipe's error type: a message plus the context it was raised in,
//! and what kind of failure it is, which kiln uses to say what to fix (a
//! kiln.toml setting, a tool, a refused host call). Deliberately small — a
//! recipe's errors are read by people, not matched by code.

use std::fmt;

use crate::bindings::kiln::recipe::types::{BuildError, Error as HostError};

/// A build failure: what went wrong, outermost context first.
///
/// ```
/// use kiln_sdk::{Context, Error, ErrorKind};
/// let e: Error = Err::<(), _>(Error::bad_params("no key `src`"))
///     .context("reading params")
///     .unwrap_err();
/// assert_eq!(e.to_string(), "reading params: no key `src`");
/// assert_eq!(e.kind(), ErrorKind::BadParams);
/// ```
pub struct Error {
    kind: Kind,
    chain: Vec<String>,
}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is; kiln reports each differently.
///
/// ```
/// use kiln_sdk::{Error, ErrorKind};
/// assert_eq!(Error::msg("boom").kind(), ErrorKind::Failed);
/// assert_eq!(Error::tool_failed("exit 1").kind(), ErrorKind::ToolFailed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The target's params or inputs are wrong: kiln says to fix kiln.toml.
    BadParams,
    /// A tool ran and failed.
    ToolFailed,
    /// The host refused a call (a bad path, a denied network).
    Host,
    /// Anything else.
    Failed,
}

enum Kind {
    BadParams,
    ToolFailed,
    Host(HostError),
    Failed,
}

impl Error {
    /// An error with just this message.
    ///
    /// ```
    /// assert_eq!(kiln_sdk::Error::msg("no main package").to_string(), "no main package");
    /// ```
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(Kind::Failed, message)
    }

    /// The target's params or inputs are not what the recipe needs.
    ///
    /// ```
    /// let e = kiln_sdk::Error::bad_params("params.src names no input");
    /// assert_eq!(e.kind(), kiln_sdk::ErrorKind::BadParams);
    /// ```
    pub fn bad_params(message: impl fmt::Display) -> Self {
        Self::new(Kind::BadParams, message)
    }

    /// A tool ran and failed; `message` quotes what it printed.
    ///
    /// ```
    /// let e = kiln_sdk::Error::tool_failed("`go build` exited with code 1");
    /// assert_eq!(e.kind(), kiln_sdk::ErrorKind::ToolFailed);
    /// ```
    pub fn tool_failed(message: impl fmt::Display) -> Self {
        Self::new(Kind::ToolFailed, message)
    }

    /// What kind of failure this is.
    ///
    /// ```
    /// assert_eq!(kiln_sdk::Error::msg("x").kind(), kiln_sdk::ErrorKind::Failed);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self.kind {
            Kind::BadParams => ErrorKind::BadParams,
            Kind::ToolFailed => ErrorKind::ToolFailed,
            Kind::Host(_) => ErrorKind::Host,
            Kind::Failed => ErrorKind::Failed,
        }
    }

    fn new(kind: Kind, message: impl fmt::Display) -> Self {
        Error {
            kind,
            chain: vec![message.to_string()],
        }
    }

    pub(crate) fn host(e: HostError, context: impl fmt::Display) -> Self {
        Error {
            chain: vec![context.to_string(), describe(&e)],
            kind: Kind::Host(e),
        }
    }

    fn wrap(mut self, context: String) -> Self {
        self.chain.insert(0, context);
        self
    }

    /// The error as the contract's `build-error`.
    pub(crate) fn into_build_error(self) -> BuildError {
        let text = self.chain.join(": ");
        match self.kind {
            Kind::BadParams => BuildError::BadParams(text),
            Kind::ToolFailed => BuildError::ToolFailed(text),
            Kind::Failed => BuildError::Failed(text),
            Kind::Host(e) => BuildError::Host(with_text(e, text)),
        }
    }
}

/// A host error as a sentence with its kind.
pub(crate) fn describe(e: &HostError) -> String {
    let (kind, m) = match e {
        HostError::BadPath(m) => ("bad path", m),
        HostError::NotFound(m) => ("not found", m),
        HostError::WrongKind(m) => ("wrong kind of file", m),
        HostError::Invalid(m) => ("invalid request", m),
        HostError::UndeclaredTool(m) => ("undeclared tool", m),
        HostError::NetworkDenied(m) => ("network denied", m),
        HostError::Io(m) => ("I/O error", m),
        HostError::Failed(m) => ("could not run", m),
    };
    format!("{kind}: {m}")
}

/// The same kind of host error with another text.
fn with_text(e: HostError, text: String) -> HostError {
    match e {
        HostError::BadPath(_) => HostError::BadPath(text),
        HostError::NotFound(_) => HostError::NotFound(text),
        HostError::WrongKind(_) => HostError::WrongKind(text),
        HostError::Invalid(_) => HostError::Invalid(text),
        HostError::UndeclaredTool(_) => HostError::UndeclaredTool(text),
        HostError::NetworkDenied(_) => HostError::NetworkDenied(text),
        HostError::Io(_) => HostError::Io(text),
        HostError::Failed(_) => HostError::Failed(text),
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
        Error {
            kind: Kind::Failed,
            chain,
        }
    }
}

/// Add a sentence of context to an error, as `anyhow::Context` does; the
/// error keeps its kind.
///
/// ```
/// use kiln_sdk::Context;
/// let r: kiln_sdk::Result<String> = std::fs::read_to_string("/no/such/file").context("reading the template");
/// assert!(r.unwrap_err().to_string().starts_with("reading the template: "));
/// let none: Option<u32> = None;
/// assert_eq!(none.context("no port").unwrap_err().to_string(), "no port");
/// ```
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

/// Return early with an [`Error`] built by `format!` (as `anyhow::bail!`).
///
/// ```
/// fn check(n: u32) -> kiln_sdk::Result<()> {
///     if n > 3 {
///         kiln_sdk::bail!("{n} platforms is more than 3");
///     }
///     Ok(())
/// }
/// assert_eq!(check(4).unwrap_err().to_string(), "4 platforms is more than 3");
/// ```
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return ::std::result::Result::Err($crate::Error::msg(format!($($arg)*))) };
}

/// Return early with an [`Error`] unless `cond` holds (as `anyhow::ensure!`).
///
/// ```
/// fn check(name: &str) -> kiln_sdk::Result<()> {
///     kiln_sdk::ensure!(!name.contains('/'), "output name {name:?} may not contain '/'");
///     Ok(())
/// }
/// assert!(check("app").is_ok());
/// assert!(check("a/b").unwrap_err().to_string().contains("may not contain"));
/// ```
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::bail!($($arg)*);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_is_printed_outermost_first_and_keeps_the_kind() {
        let r: Result<()> = Err(std::io::Error::other("disk on fire")).context("writing /out/a");
        assert_eq!(r.unwrap_err().to_string(), "writing /out/a: disk on fire");
        let e =
            Error::host(HostError::BadPath("/etc/x".into()), "copying").wrap("packaging".into());
        assert_eq!(e.kind(), ErrorKind::Host);
        match e.into_build_error() {
            BuildError::Host(HostError::BadPath(m)) => {
                assert_eq!(m, "packaging: copying: bad path: /etc/x")
            }
            other => panic!("{other:?}"),
        }
    }
}
