//! Running declared tools through the host's `tool-exec` capability, with a
//! builder shaped like `std::process::Command`.

use crate::bindings::kiln::recipe::tool_exec::{self, Error as ExecError};
use crate::error::{Error, Result};

/// An executable inside a declared input: `Tool::new("go", "bin/go")` is
/// `/inputs/go/bin/go`.
#[derive(Debug, Clone)]
pub struct Tool {
    input: String,
    path: String,
}

impl Tool {
    /// The executable at `path` inside the declared input `input`.
    pub fn new(input: impl Into<String>, path: impl Into<String>) -> Self {
        Tool {
            input: input.into(),
            path: path.into(),
        }
    }

    /// Where the sandbox shows this tool: `/inputs/<input>/<path>`.
    pub fn sandbox_path(&self) -> String {
        format!("/inputs/{}/{}", self.input, self.path)
    }
}

/// A process to run in the host's sandbox.
#[derive(Debug, Clone)]
pub struct Command {
    tool: Tool,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: String,
    network: bool,
    fixed_output: Option<tool_exec::FixedOutput>,
    caches: Vec<tool_exec::Cache>,
    fetch_key: Vec<String>,
}

/// What a finished process left behind.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code, `None` when killed by a signal.
    pub exit_code: Option<i32>,
    /// Captured stdout (capped at 4 MiB by the host).
    pub stdout: Vec<u8>,
    /// Captured stderr (capped at 4 MiB by the host).
    pub stderr: Vec<u8>,
}

impl Output {
    /// True when the process exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// stdout as text (lossy).
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (lossy).
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl Command {
    /// A command that runs `tool` in `/work` with no arguments.
    pub fn new(tool: Tool) -> Self {
        Command {
            tool,
            args: Vec::new(),
            env: Vec::new(),
            cwd: String::new(),
            network: false,
            fixed_output: None,
            caches: Vec::new(),
            fetch_key: Vec::new(),
        }
    }

    /// Add one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Add several arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set several environment variables.
    pub fn envs<'a, I: IntoIterator<Item = &'a (String, String)>>(mut self, vars: I) -> Self {
        self.env.extend(vars.into_iter().cloned());
        self
    }

    /// Set an environment variable (the environment starts out cleared).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Run in this directory: a path inside `/work`.
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = dir.into();
        self
    }

    /// Ask for network access (only granted to fixed-output targets).
    pub fn network(mut self, allow: bool) -> Self {
        self.network = allow;
        self
    }

    /// Make this a fixed-output step: the command fills the fresh directory
    /// `dir` (under `/work`; the host creates it) with network access, and
    /// the host keeps `dir` only if its hash equals the one kiln.toml pins at
    /// `setting` (`output_hash` or `params.<key>`, e.g.
    /// `params.vendor_hash`). The recipe never passes the hash itself: the
    /// host reads it from kiln.toml, and without it the step gets no network.
    pub fn fixed_output(mut self, dir: impl Into<String>, setting: impl Into<String>) -> Self {
        self.fixed_output = Some(tool_exec::FixedOutput {
            dir: dir.into(),
            setting: setting.into(),
        });
        self
    }

    /// Mount a host-kept cache read-write at `path` (`/cache/<name>`) for
    /// this command: what it leaves there is there for the next build of
    /// the same target (not for other targets or projects). `key` says what
    /// the content depends on besides the target (toolchain, platform…): a
    /// different key, a different cache. A cache must only save time, never
    /// change an output: `kiln build --check` rebuilds with empty ones.
    ///
    /// ```no_run
    /// # use kiln_sdk::{Command, Tool};
    /// let go = Tool::new("go", "bin/go");
    /// Command::new(go)
    ///     .args(["build", "./..."])
    ///     .env("GOCACHE", "/cache/go-build")
    ///     .cache("go1.27 linux/amd64", "/cache/go-build")
    ///     .run()?;
    /// # Ok::<(), kiln_sdk::Error>(())
    /// ```
    pub fn cache(mut self, key: impl Into<String>, path: impl Into<String>) -> Self {
        self.caches.push(tool_exec::Cache {
            key: key.into(),
            path: path.into(),
        });
        self
    }

    /// For a fixed-output step: the files (under `/work` or `/inputs`) that,
    /// with the pin, decide what it fetches (go.mod and go.sum for Go). An
    /// earlier build's result for the same pin and files is then reused
    /// without running the step; a changed file runs it again.
    pub fn fetch_key<I: IntoIterator<Item = S>, S: Into<String>>(mut self, files: I) -> Self {
        self.fetch_key.extend(files.into_iter().map(Into::into));
        self
    }

    fn wire(&self) -> (tool_exec::Command, tool_exec::ExecOptions) {
        let cmd = tool_exec::Command {
            tool: tool_exec::Tool {
                input: self.tool.input.clone(),
                path: self.tool.path.clone(),
            },
            args: self.args.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            network: self.network,
            fixed_output: self.fixed_output.clone(),
        };
        let options = tool_exec::ExecOptions {
            caches: self.caches.clone(),
            fetch_key: self.fetch_key.clone(),
        };
        (cmd, options)
    }

    /// Run several commands at once, each in its own sandbox, and return
    /// their outputs in order, as [`Command::run`] would (a non-zero exit
    /// is an error quoting its stderr). For work that splits, such as one
    /// build per platform; fixed-output steps cannot be batched.
    ///
    /// ```no_run
    /// use kiln_sdk::{Command, Tool};
    /// let go = Tool::new("go", "bin/go");
    /// let builds: Vec<Command> = ["amd64", "arm64"]
    ///     .iter()
    ///     .map(|arch| Command::new(go.clone()).args(["build", "./..."]).env("GOARCH", *arch))
    ///     .collect();
    /// let outputs = Command::run_all(&builds)?;
    /// # Ok::<(), kiln_sdk::Error>(())
    /// ```
    pub fn run_all(cmds: &[Command]) -> Result<Vec<Output>> {
        let wire: Vec<(tool_exec::Command, tool_exec::ExecOptions)> =
            cmds.iter().map(Command::wire).collect();
        let results = tool_exec::exec_all(&wire);
        cmds.iter()
            .zip(results)
            .map(|(c, r)| {
                let out = r.map_err(|e| Error::msg(format!("{}: {}", c.display(), describe(e))))?;
                c.checked(Output {
                    exit_code: out.exit_code,
                    stdout: out.stdout,
                    stderr: out.stderr,
                })
            })
            .collect()
    }

    /// Run the process and return its output whatever its exit code.
    pub fn output(&self) -> Result<Output> {
        let (cmd, options) = self.wire();
        let out = if options.caches.is_empty() && options.fetch_key.is_empty() {
            tool_exec::exec(&cmd)
        } else {
            tool_exec::exec_with(&cmd, &options)
        }
        .map_err(|e| Error::msg(format!("{}: {}", self.display(), describe(e))))?;
        Ok(Output {
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// Run the process; a non-zero exit is an error that quotes its stderr.
    pub fn run(&self) -> Result<Output> {
        let out = self.output()?;
        self.checked(out)
    }

    /// `out`, or an error quoting its stderr if it did not succeed.
    fn checked(&self, out: Output) -> Result<Output> {
        if out.success() {
            return Ok(out);
        }
        let status = match out.exit_code {
            Some(code) => format!("exited with code {code}"),
            None => "was killed by a signal".to_string(),
        };
        let mut stderr = out.stderr_str();
        if stderr.trim().is_empty() {
            stderr = out.stdout_str();
        }
        Err(Error::msg(format!(
            "`{}` {status}:\n{}",
            self.display(),
            tail(&stderr, 8192)
        )))
    }

    fn display(&self) -> String {
        let mut s = self.tool.sandbox_path();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

fn describe(e: ExecError) -> String {
    match e {
        ExecError::UndeclaredTool(m) => format!("undeclared tool: {m}"),
        ExecError::BadToolPath(m) => format!("bad tool path: {m}"),
        ExecError::BadCwd(m) => format!("bad working directory: {m}"),
        ExecError::NetworkDenied(m) => format!("network denied: {m}"),
        ExecError::TimedOut(m) => format!("timed out: {m}"),
        ExecError::Failed(m) => format!("could not run: {m}"),
    }
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
