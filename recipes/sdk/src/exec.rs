//! Running declared tools through the host's `tool-exec` capability, with a
//! builder shaped like `std::process::Command`.

use crate::bindings::kiln::recipe::tool_exec;
use crate::error::{Error, Result};

/// An executable inside a declared input: `Tool::new("go", "bin/go")` is
/// `/inputs/go/bin/go`.
///
/// ```
/// let sh = kiln_sdk::Tool::new("tools", "bin/sh");
/// assert_eq!(sh.sandbox_path(), "/inputs/tools/bin/sh");
/// ```
#[derive(Debug, Clone)]
pub struct Tool {
    input: String,
    path: String,
}

impl Tool {
    /// The executable at `path` inside the declared input `input`.
    ///
    /// ```
    /// let go = kiln_sdk::Tool::new("go", "bin/go");
    /// assert_eq!(go.sandbox_path(), "/inputs/go/bin/go");
    /// ```
    pub fn new(input: impl Into<String>, path: impl Into<String>) -> Self {
        Tool {
            input: input.into(),
            path: path.into(),
        }
    }

    /// Where the sandbox shows this tool: `/inputs/<input>/<path>`.
    ///
    /// ```
    /// assert_eq!(kiln_sdk::Tool::new("tools", "bin/sh").sandbox_path(), "/inputs/tools/bin/sh");
    /// ```
    pub fn sandbox_path(&self) -> String {
        format!("/inputs/{}/{}", self.input, self.path)
    }

    fn wire(&self) -> tool_exec::Tool {
        tool_exec::Tool {
            input: self.input.clone(),
            path: self.path.clone(),
        }
    }
}

/// Set `key` in `env`, replacing an earlier value.
fn set_env(env: &mut Vec<(String, String)>, key: String, value: String) {
    env.retain(|(k, _)| *k != key);
    env.push((key, value));
}

/// A process to run in the host's sandbox.
///
/// ```ignore-linux
/// use kiln_sdk::{Command, Tool};
/// let out = Command::new(Tool::new("tools", "bin/sh"))
///     .args(["-c", "echo $GREETING from $PWD"])
///     .env("GREETING", "hello")
///     .cwd("/work")
///     .run()
///     .unwrap();
/// assert_eq!(out.stdout_str(), "hello from /work\n");
/// ```
#[derive(Debug, Clone)]
pub struct Command {
    tool: Tool,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
    fixed_output: Option<FixedOutput>,
    caches: Vec<tool_exec::Cache>,
}

/// What makes a command a fixed-output step ([`Command::fixed_output`]):
/// the directory it fills, the kiln.toml setting that pins its hash, and
/// optionally the files that decide what it fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedOutput {
    dir: String,
    setting: String,
    fetch_key: Vec<String>,
}

impl FixedOutput {
    /// Fill `dir` (under `/work`; the host creates it), kept only if its
    /// hash equals the one kiln.toml pins at `setting` (`output_hash` or
    /// `params.<key>`, e.g. `params.vendor_hash`).
    pub fn new(dir: impl Into<String>, setting: impl Into<String>) -> Self {
        FixedOutput {
            dir: dir.into(),
            setting: setting.into(),
            fetch_key: Vec::new(),
        }
    }

    /// The files (under `/work` or `/inputs`) that, with the pin, decide
    /// what the step fetches (go.mod and go.sum for Go). An earlier build's
    /// result for the same pin and files is then reused without running
    /// the step; a changed file runs it again.
    ///
    /// ```ignore-linux
    /// use kiln_sdk::{Command, FixedOutput, Tool};
    /// std::fs::write("/work/deps.lock", "a 1.0\n").unwrap();
    /// // Still refused: the doctests' target pins nothing. With a pin, an
    /// // unchanged deps.lock would reuse the last fetch without running it.
    /// let e = Command::new(Tool::new("tools", "bin/sh"))
    ///     .args(["-c", "echo fetched > /work/deps/x"])
    ///     .fixed_output(
    ///         FixedOutput::new("/work/deps", "params.deps_hash").fetch_key(["/work/deps.lock"]),
    ///     )
    ///     .run()
    ///     .unwrap_err();
    /// assert!(e.to_string().contains("network denied"), "{e}");
    /// ```
    pub fn fetch_key<I: IntoIterator<Item = S>, S: Into<String>>(mut self, files: I) -> Self {
        self.fetch_key.extend(files.into_iter().map(Into::into));
        self
    }
}

/// Work shared by every project on the machine that seeds a kept cache
/// ([`Command::cache_seeded`]): the host runs `tool` with `args`, then the
/// items, in a sandbox that sees only the tool's input, with the result
/// directory at `/seed`; it keeps the result, keyed by the tool and
/// `args`/`env`, and copies it into the cache before the command runs. It
/// runs the tool again only for items the kept result lacks.
///
/// ```
/// use kiln_sdk::{Seed, Tool};
/// let std = Seed::new(Tool::new("go", "bin/go"))
///     .args(["build"])
///     .env("GOCACHE", "/seed")
///     .items(["fmt", "net/http"]);
/// assert_eq!(std.items_len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Seed {
    tool: Tool,
    args: Vec<String>,
    items: Vec<String>,
    env: Vec<(String, String)>,
}

impl Seed {
    /// A seed computed by `tool` (in a declared input, the only one it sees).
    pub fn new(tool: Tool) -> Self {
        Seed {
            tool,
            args: Vec::new(),
            items: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Arguments before the items.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// What to make, one argument each (never starting with `-`).
    pub fn items<I: IntoIterator<Item = S>, S: Into<String>>(mut self, items: I) -> Self {
        self.items.extend(items.into_iter().map(Into::into));
        self
    }

    /// One environment variable (a later value for a name replaces it).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        set_env(&mut self.env, key.into(), value.into());
        self
    }

    /// How many items it asks for.
    pub fn items_len(&self) -> usize {
        self.items.len()
    }

    fn wire(&self) -> tool_exec::Seed {
        tool_exec::Seed {
            tool: self.tool.wire(),
            args: self.args.clone(),
            items: self.items.clone(),
            env: self.env.clone(),
        }
    }
}

/// Whether a [`Seed`] given to the cache `key` at `path` (as
/// [`Command::cache`] names it) would be used: the cache is kept on this
/// machine (not `--no-cache`, `--check` or remote steps) and holds nothing
/// yet. Ask before spending a step on listing what to seed it with.
pub fn cache_wants_seed(key: &str, path: &str) -> bool {
    tool_exec::cache_wants_seed(key, path)
}

/// How a finished process ended.
///
/// ```
/// use kiln_sdk::Exit;
/// assert_ne!(Exit::Code(9), Exit::Signal(9));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(u32),
}

/// What a finished process left behind.
///
/// ```ignore-linux
/// use kiln_sdk::{Command, Exit, Tool};
/// let out = Command::new(Tool::new("tools", "bin/sh"))
///     .args(["-c", "echo oops >&2; exit 3"])
///     .output()
///     .unwrap();
/// assert_eq!(out.exit, Exit::Code(3));
/// assert!(!out.success());
/// assert_eq!(out.stderr_str(), "oops\n");
/// assert!(!out.stderr_truncated);
/// let killed = Command::new(Tool::new("tools", "bin/sh"))
///     .args(["-c", "kill -9 $$"])
///     .output()
///     .unwrap();
/// assert_eq!(killed.exit, Exit::Signal(9));
/// ```
#[derive(Debug, Clone)]
pub struct Output {
    /// How the process ended.
    pub exit: Exit,
    /// Captured stdout (capped at 4 MiB by the host).
    pub stdout: Vec<u8>,
    /// Captured stderr (capped at 4 MiB by the host).
    pub stderr: Vec<u8>,
    /// True when stdout was longer than the cap and cut.
    pub stdout_truncated: bool,
    /// True when stderr was longer than the cap and cut.
    pub stderr_truncated: bool,
}

impl Output {
    /// True when the process exited with code 0.
    ///
    /// ```ignore-linux
    /// let out = kiln_sdk::Command::new(kiln_sdk::Tool::new("tools", "bin/sh"))
    ///     .args(["-c", "true"])
    ///     .output()
    ///     .unwrap();
    /// assert!(out.success());
    /// ```
    pub fn success(&self) -> bool {
        self.exit == Exit::Code(0)
    }

    /// stdout as text (lossy).
    ///
    /// ```ignore-linux
    /// let out = kiln_sdk::Command::new(kiln_sdk::Tool::new("tools", "bin/sh"))
    ///     .args(["-c", "printf 42"])
    ///     .run()
    ///     .unwrap();
    /// assert_eq!(out.stdout_str(), "42");
    /// ```
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (lossy).
    ///
    /// ```ignore-linux
    /// let out = kiln_sdk::Command::new(kiln_sdk::Tool::new("tools", "bin/sh"))
    ///     .args(["-c", "printf warn >&2"])
    ///     .run()
    ///     .unwrap();
    /// assert_eq!(out.stderr_str(), "warn");
    /// ```
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn from_wire(out: tool_exec::Output) -> Self {
        Output {
            exit: match out.exit {
                tool_exec::Exit::Code(c) => Exit::Code(c),
                tool_exec::Exit::Signal(s) => Exit::Signal(s),
            },
            stdout: out.stdout,
            stderr: out.stderr,
            stdout_truncated: out.stdout_truncated,
            stderr_truncated: out.stderr_truncated,
        }
    }
}

impl Command {
    /// A command that runs `tool` in `/work` with no arguments.
    ///
    /// ```ignore-linux
    /// use kiln_sdk::{Command, Tool};
    /// let out = Command::new(Tool::new("tools", "bin/sh")).arg("-c").arg("pwd").run().unwrap();
    /// assert_eq!(out.stdout_str(), "/work\n");
    /// ```
    pub fn new(tool: Tool) -> Self {
        Command {
            tool,
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            fixed_output: None,
            caches: Vec::new(),
        }
    }

    /// Add one argument.
    ///
    /// ```ignore-linux
    /// use kiln_sdk::{Command, Tool};
    /// let out = Command::new(Tool::new("tools", "bin/sh")).arg("-c").arg("echo one").run().unwrap();
    /// assert_eq!(out.stdout_str(), "one\n");
    /// ```
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Add several arguments.
    ///
    /// ```ignore-linux
    /// use kiln_sdk::{Command, Tool};
    /// let words = vec!["a".to_string(), "b".to_string()];
    /// let out = Command::new(Tool::new("tools", "bin/sh"))
    ///     .args(["-c", "echo $0 $1"])
    ///     .args(words)
    ///     .run()
    ///     .unwrap();
    /// assert_eq!(out.stdout_str(), "a b\n");
    /// ```
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set several environment variables; a later value for the same name
    /// wins.
    ///
    /// ```ignore-linux
    /// use kiln_sdk::{Command, Tool};
    /// let vars = [("A", "1"), ("B", "2"), ("A", "3")];
    /// let out = Command::new(Tool::new("tools", "bin/sh"))
    ///     .args(["-c", "echo $A$B"])
    ///     .envs(vars)
    ///     .run()
    ///     .unwrap();
    /// assert_eq!(out.stdout_str(), "32\n");
    /// ```
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Set an environment variable (the environment starts out cleared,
    /// holding only `PATH`, `HOME`, `TMPDIR`, `TZ`, `LC_ALL` and
    /// `SOURCE_DATE_EPOCH`; a name set here replaces the default).
    ///
    /// ```ignore-linux
    /// use kiln_sdk::{Command, Tool};
    /// let out = Command::new(Tool::new("tools", "bin/sh"))
    ///     .args(["-c", "echo $TZ $CGO_ENABLED"])
    ///     .env("CGO_ENABLED", "0")
    ///     .run()
    ///     .unwrap();
    /// assert_eq!(out.stdout_str(), "UTC 0\n");
    /// ```
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        set_env(&mut self.env, key.into(), value.into());
        self
    }

    /// Run in this directory: a path inside `/work` (absolute, or relative
    /// to `/work`); `/work` itself without it.
    ///
    /// ```ignore-linux
    /// use kiln_sdk::{Command, Tool};
    /// std::fs::create_dir_all("/work/module").unwrap();
    /// let out = Command::new(Tool::new("tools", "bin/sh"))
    ///     .args(["-c", "pwd"])
    ///     .cwd("module")
    ///     .run()
    ///     .unwrap();
    /// assert_eq!(out.stdout_str(), "/work/module\n");
    /// ```
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Make this a fixed-output step: the command fills the fresh directory
    /// `dir` (under `/work`; the host creates it) with network access, and
    /// the host keeps `dir` only if its hash equals the one kiln.toml pins at
    /// `setting` (`output_hash` or `params.<key>`, e.g.
    /// `params.vendor_hash`). The recipe never passes the hash itself: the
    /// host reads it from kiln.toml, and without it the step gets no network.
    ///
    /// ```ignore-linux
    /// use kiln_sdk::{Command, ErrorKind, FixedOutput, Tool};
    /// // The doctests' target pins nothing, so the step is refused.
    /// let e = Command::new(Tool::new("tools", "bin/sh"))
    ///     .args(["-c", "echo fetched > /work/deps/x"])
    ///     .fixed_output(FixedOutput::new("/work/deps", "params.deps_hash"))
    ///     .run()
    ///     .unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::Host);
    /// assert!(e.to_string().contains("network denied: params.deps_hash is not set"), "{e}");
    /// ```
    pub fn fixed_output(mut self, step: FixedOutput) -> Self {
        self.fixed_output = Some(step);
        self
    }

    /// Mount a host-kept cache read-write at `path` (`/cache/<name>`) for
    /// this command: what it leaves there is there for the next build of
    /// the same target (not for other targets or projects). `key` says what
    /// the content depends on besides the target (toolchain, platform…): a
    /// different key, a different cache. A cache must only save time, never
    /// change an output: `kiln build --check` rebuilds with empty ones.
    ///
    /// ```ignore-linux
    /// use kiln_sdk::{Command, Tool};
    /// let sh = Command::new(Tool::new("tools", "bin/sh"))
    ///     .cache("busybox", "/cache/counter");
    /// sh.clone().args(["-c", "echo run >> /cache/counter/runs"]).run().unwrap();
    /// let out = sh.args(["-c", "cat /cache/counter/runs"]).run().unwrap();
    /// assert!(out.stdout_str().starts_with("run\n"));
    /// ```
    pub fn cache(mut self, key: impl Into<String>, path: impl Into<String>) -> Self {
        self.caches.push(tool_exec::Cache {
            key: key.into(),
            path: path.into(),
            seed: None,
        });
        self
    }

    /// [`Command::cache`], seeded before the command runs with `seed`'s
    /// result, shared by every project on the machine that asks for the
    /// same computation (see [`Seed`]). `--no-cache`, `--check` and remote
    /// steps get the cache empty, unseeded; a seed that fails leaves it
    /// as it was.
    pub fn cache_seeded(
        mut self,
        key: impl Into<String>,
        path: impl Into<String>,
        seed: &Seed,
    ) -> Self {
        self.caches.push(tool_exec::Cache {
            key: key.into(),
            path: path.into(),
            seed: Some(seed.wire()),
        });
        self
    }

    fn wire(&self) -> tool_exec::Command {
        tool_exec::Command {
            tool: self.tool.wire(),
            args: self.args.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            caches: self.caches.clone(),
            fixed_output: self.fixed_output.as_ref().map(|fo| tool_exec::FixedOutput {
                dir: fo.dir.clone(),
                setting: fo.setting.clone(),
                fetch_key: fo.fetch_key.clone(),
            }),
        }
    }

    /// Run several commands at once, each in its own sandbox, and return
    /// their outputs in order, as [`Command::run`] would (a non-zero exit
    /// is an error quoting its stderr). For work that splits, such as one
    /// build per platform; fixed-output steps cannot be batched.
    ///
    /// ```ignore-linux
    /// use kiln_sdk::{Command, Tool};
    /// let sh = Tool::new("tools", "bin/sh");
    /// let builds: Vec<Command> = ["amd64", "arm64"]
    ///     .iter()
    ///     .map(|arch| Command::new(sh.clone()).args(["-c", "echo $GOARCH"]).env("GOARCH", *arch))
    ///     .collect();
    /// let outputs = Command::run_all(&builds).unwrap();
    /// assert_eq!(outputs[1].stdout_str(), "arm64\n");
    /// ```
    pub fn run_all(cmds: &[Command]) -> Result<Vec<Output>> {
        let wire: Vec<tool_exec::Command> = cmds.iter().map(Command::wire).collect();
        let results = tool_exec::exec_all(&wire);
        cmds.iter()
            .zip(results)
            .map(|(c, r)| {
                let out = r.map_err(|e| Error::host(e, c.display()))?;
                c.checked(Output::from_wire(out))
            })
            .collect()
    }

    /// Run the process and return its output whatever its exit code.
    ///
    /// ```ignore-linux
    /// use kiln_sdk::{Command, Exit, Tool};
    /// let out = Command::new(Tool::new("tools", "bin/sh")).args(["-c", "exit 7"]).output().unwrap();
    /// assert_eq!(out.exit, Exit::Code(7));
    /// ```
    pub fn output(&self) -> Result<Output> {
        let out = tool_exec::exec(&self.wire()).map_err(|e| Error::host(e, self.display()))?;
        Ok(Output::from_wire(out))
    }

    /// Run the process; a non-zero exit is a tool-failed error that quotes
    /// its stderr.
    ///
    /// ```ignore-linux
    /// use kiln_sdk::{Command, ErrorKind, Tool};
    /// let e = Command::new(Tool::new("tools", "bin/sh"))
    ///     .args(["-c", "echo 'no Go files' >&2; exit 1"])
    ///     .run()
    ///     .unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::ToolFailed);
    /// assert!(e.to_string().contains("exited with code 1:\nno Go files"), "{e}");
    /// ```
    pub fn run(&self) -> Result<Output> {
        let out = self.output()?;
        self.checked(out)
    }

    /// `out`, or an error quoting its stderr if it did not succeed.
    fn checked(&self, out: Output) -> Result<Output> {
        if out.success() {
            return Ok(out);
        }
        let status = match out.exit {
            Exit::Code(code) => format!("exited with code {code}"),
            Exit::Signal(signal) => format!("was killed by signal {signal}"),
        };
        let mut stderr = out.stderr_str();
        if stderr.trim().is_empty() {
            stderr = out.stdout_str();
        }
        Err(Error::tool_failed(format!(
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
