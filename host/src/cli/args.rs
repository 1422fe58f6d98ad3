//! Every flag of every command, as plain validated values (phase one of
//! argument handling: no I/O here).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kiln_core::hash::HashFormat;

/// kiln: hermetic builds whose recipes are WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Only print errors and results.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build targets of a kiln.toml and link their outputs (`result`, `result-<target>`).
    Build(BuildArgs),
    /// Run one recipe without a kiln.toml: inputs and params from the
    /// command line, the output linked as `result` (a recipe's edit loop,
    /// and what kiln-recipe-test drives).
    Run(RunArgs),
    /// Hash files and trees the way Nix does, or convert between hash spellings.
    #[command(subcommand)]
    Hash(HashCommand),
    /// Download (or read) something, add it to the store, print its hash to paste into kiln.toml.
    Prefetch(PrefetchArgs),
    /// Pin every input declared without a hash in kiln.lock.
    Lock(LockArgs),
    /// Delete store entries that no result link or kiln.lock roots.
    Gc(GcArgs),
    /// Look inside images; make keys to sign them (`kiln push --sign`).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Show what went into outputs: the input closure, provenance, an SBOM, or
    /// what changed between two builds.
    Audit(AuditArgs),
    /// Re-hash store entries and name any that changed since kiln wrote them.
    Verify(VerifyArgs),
    /// Share outputs through a binary cache in Nix's format: make a signing
    /// key, push outputs.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Push an image to an OCI registry: a target built with oci-image, or
    /// a path to one's output (./result).
    Push(PushImageArgs),
    /// Create a recipe crate (Rust) whose own `cargo test` runs it under
    /// kiln, with a kiln.toml that uses it.
    NewRecipe(NewRecipeArgs),
    /// Write a kiln.toml for the Go module in this directory: its main
    /// packages built with a pinned Go, and an image holding them.
    Init(InitArgs),
    /// Run a tool a target pins (its Go toolchain) on the project, in the
    /// sandbox, with the package's directory writable and a network:
    /// `kiln run-tool go -- mod tidy`.
    RunTool(RunToolArgs),
    /// Ask the target graph: what a target depends on, what depends on
    /// it, what a change affects (from kiln.toml alone; nothing is built).
    #[command(subcommand)]
    Query(QueryCommand),
    /// Draw the target graph (Graphviz DOT, Mermaid or JSON).
    Graph(GraphArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print kiln's manual page (roff): `kiln man > kiln.1`.
    Man,
}

#[derive(Debug, Args)]
pub struct NewRecipeArgs {
    /// The crate's name (lowercase, digits, '-' and '_').
    pub name: String,
    /// Where to create it [default: ./NAME].
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// The recipes/ directory of a kiln source tree, holding the SDK and
    /// kiln-recipe-test [default: the tree this kiln was built from].
    #[arg(long, value_name = "DIR")]
    pub sdk: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The Go toolchain archive to pin (unpacked, it holds bin/go).
    #[arg(long, value_name = "URL", default_value = crate::recipes::GO_TOOLCHAIN_URL)]
    pub go_url: String,
    /// Its unpacked NAR hash.
    #[arg(long, value_name = "HASH", default_value = crate::recipes::GO_TOOLCHAIN_HASH)]
    pub go_hash: String,
}

#[derive(Debug, Args)]
pub struct PushImageArgs {
    /// The image: a target of the kiln.toml (as last built), or a path to
    /// an oci-image output such as ./result.
    pub image: String,
    /// Where to: REGISTRY/REPOSITORY[:TAG]; without a tag, the image's own
    /// (params.tag, or one derived from its content).
    pub reference: String,
    /// Allow plain HTTP to a registry that is not on this machine.
    #[arg(long)]
    pub insecure: bool,
    /// Also write the pushed digest to FILE.
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<PathBuf>,
    /// Sign the pushed digest with this key (`kiln image keygen`) in
    /// cosign's format, and attach the image's SLSA provenance and SPDX
    /// SBOM as signed in-toto attestations.
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    #[command(flatten)]
    pub file: FileArg,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Make an Ed25519 signing key in Nix's format: the secret goes to
    /// FILE (mode 0600), the public key (for trusted-public-keys) to stdout.
    Keygen {
        /// The key's name, conventionally the cache's host and a number
        /// (`cache.example.org-1`).
        name: String,
        /// Where to write the secret key.
        #[arg(long, value_name = "FILE")]
        secret_file: PathBuf,
    },
    /// Upload targets' outputs, their dependencies' outputs and their
    /// downloaded inputs, signed, skipping what the cache has.
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Targets of the kiln.toml, as last built (`kiln build` first), or
    /// paths into the store such as ./result [default: all targets].
    pub targets: Vec<String>,
    #[command(flatten)]
    pub file: FileArg,
    /// The cache to push to [default: push-to of the user's config, or
    /// $KILN_PUSH_TO].
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// The secret key to sign with [default: signing-key of the user's
    /// config, or $KILN_SIGNING_KEY].
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    #[command(flatten)]
    pub key: KeyArgs,
}

/// Which binary caches to use. The user's choice: these flags, the
/// environment or the user's config (`~/.config/kiln/config.toml`), never
/// kiln.toml.
#[derive(Debug, Args, Default)]
pub struct SubstituteArgs {
    /// Look outputs up in this binary cache before building (repeatable;
    /// added before the configured ones).
    #[arg(long = "substituter", value_name = "URL")]
    pub substituters: Vec<String>,
    /// Trust signatures by this key (`name:base64`, repeatable).
    #[arg(long = "trusted-public-key", value_name = "KEY")]
    pub trusted_public_keys: Vec<String>,
    /// Use no binary cache: build everything here.
    #[arg(long)]
    pub no_substitute: bool,
    /// Also use the binary caches and keys kiln.toml's [cache] suggests
    /// (a key you trust decides what an output is).
    #[arg(long)]
    pub accept_project_caches: bool,
}

/// Where tool steps run: a Remote Execution API v2 engine. From flags, the
/// environment or the user's config (`[remote]`), never kiln.toml.
#[derive(Debug, Args, Default)]
pub struct RemoteArgs {
    /// Run tool steps on this REAPI engine (`grpc://HOST:PORT`,
    /// `grpcs://HOST:PORT`); the recipe and fixed-output steps stay here.
    #[arg(long, value_name = "URL", env = "KILN_REMOTE_EXECUTOR")]
    pub remote_executor: Option<String>,
    /// The engine's instance name.
    #[arg(long, value_name = "NAME", env = "KILN_REMOTE_INSTANCE")]
    pub remote_instance: Option<String>,
    /// When the engine cannot be reached at start, warn and run steps here.
    #[arg(long)]
    pub remote_fallback: bool,
    /// Run steps here, but take their results from this REAPI engine's
    /// action cache when it has them (`grpc://HOST:PORT`).
    #[arg(long, value_name = "URL", env = "KILN_REMOTE_CACHE")]
    pub remote_cache: Option<String>,
    /// With --remote-cache: also write the results of steps run here to it.
    #[arg(long)]
    pub remote_upload: bool,
    /// Run every step here, whatever the config says.
    #[arg(long, conflicts_with_all = ["remote_executor", "remote_cache"])]
    pub no_remote: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Targets of the kiln.toml, result links or store paths [default: every
    /// target of the kiln.toml].
    #[arg(value_name = "TARGET|PATH")]
    pub what: Vec<String>,
    #[command(flatten)]
    pub file: FileArg,
    /// Print JSON instead of a tree.
    #[arg(long)]
    pub json: bool,
    /// Write an in-toto Statement with SLSA provenance v1 for the outputs to FILE.
    #[arg(long, value_name = "FILE")]
    pub provenance: Option<PathBuf>,
    /// Write an SPDX 2.3 JSON SBOM of the Go modules in the outputs to FILE.
    #[arg(long, value_name = "FILE")]
    pub sbom: Option<PathBuf>,
    /// Compare two builds' input closures: `kiln audit --diff OLD NEW`.
    #[arg(long, conflicts_with_all = ["provenance", "sbom"])]
    pub diff: bool,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Store entries or result links [default: every store entry].
    pub paths: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Show an image's config, layers (digest, size) and file tree, as dive does.
    Inspect {
        /// A docker-archive tarball (image.tar) or an OCI layout directory (oci/).
        path: PathBuf,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Make an ECDSA P-256 key for `kiln push --sign`: the secret (PKCS#8
    /// PEM, mode 0600) goes to FILE, the public key (PEM, what `cosign
    /// verify --key` reads) to stdout.
    Keygen {
        #[arg(long, value_name = "FILE")]
        secret_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// Every target the given ones depend on, transitively, dependencies first.
    Deps(QueryArgs),
    /// Every target of the workspace that depends on the given ones, transitively.
    Rdeps(QueryArgs),
    /// The targets whose inputs changed between a git revision and the
    /// working tree, and everything that depends on them: what CI must
    /// rebuild and push.
    Affected {
        /// The revision to compare with (a commit, branch or tag).
        #[arg(long, value_name = "REV")]
        since: String,
        #[command(flatten)]
        file: ProjectArg,
        /// One JSON array of {target, because}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Targets or patterns (`services/api:image`, `:image`, `./...`).
    #[arg(required = true)]
    pub targets: Vec<String>,
    #[command(flatten)]
    pub file: ProjectArg,
    /// One JSON array of addresses.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Targets or patterns to draw with their dependencies [default: ./...].
    pub targets: Vec<String>,
    #[command(flatten)]
    pub file: FileArg,
    #[arg(long, value_enum, default_value = "dot")]
    pub format: crate::query::GraphFormat,
    /// Draw kiln.toml alone: no store lookup, so no state (up to date, out
    /// of date) and no input hashes.
    #[arg(long)]
    pub no_status: bool,
    /// The key settings to judge "up to date" by (those of the build).
    #[command(flatten)]
    pub key: KeyArgs,
}

/// Which kiln.toml, for commands that only read it.
#[derive(Debug, Args)]
pub struct ProjectArg {
    /// The kiln.toml to use [default: the one here or above].
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// Where the kiln.toml is.
#[derive(Debug, Args)]
pub struct FileArg {
    /// The kiln.toml to use [default: the one here or above].
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Let kiln.toml read `path` inputs, custom recipes and `file://` URLs
    /// under DIR, outside its project directory (repeatable; the
    /// environment variable takes a `:`-separated list).
    #[arg(
        long = "allow-path",
        value_name = "DIR",
        env = "KILN_ALLOW_PATH",
        value_delimiter = ':'
    )]
    pub allow_paths: Vec<PathBuf>,
    #[command(flatten)]
    pub fetch: FetchArgs,
}

/// Where kiln's own downloads may go beyond the address rule.
#[derive(Debug, Args, Default)]
pub struct FetchArgs {
    /// Let kiln download `url` inputs from ADDR (an address or range such
    /// as 127.0.0.1 or 10.20.0.0/16) although it is loopback, link-local
    /// or this host's own: a mirror you trust (repeatable; the environment
    /// variable takes a `,`-separated list). kiln.toml cannot say this.
    #[arg(
        long = "allow-fetch-from",
        value_name = "ADDR",
        env = "KILN_ALLOW_FETCH_FROM",
        value_delimiter = ','
    )]
    pub allow_fetch_from: Vec<crate::addresses::Cidr>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Targets or patterns to build: `image`, `services/api:image`,
    /// `./...` (everything at or below this directory), `services/...`
    /// [default: ./...].
    pub targets: Vec<String>,
    #[command(flatten)]
    pub file: FileArg,
    /// Fail instead of writing kiln.lock (for CI).
    #[arg(long)]
    pub locked: bool,
    /// After building, push the targets' outputs to the configured cache
    /// (as `kiln cache push` does).
    #[arg(long)]
    pub push: bool,
    /// Build, then build again whenever kiln.toml, a custom recipe or a
    /// `path` input of the targets changes (until Ctrl-C); one line per
    /// build with its time.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub flags: BuildFlags,
}

/// `kiln run`: one recipe, its inputs and params from the command line.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The recipe: a WebAssembly component exporting `build`
    /// (kiln:recipe@0.3.0), or a WASI command whose `main` is the build.
    pub recipe: PathBuf,
    /// An input, as a path the recipe sees at /inputs/NAME (repeatable).
    #[arg(short = 'i', long = "input", value_name = "NAME=PATH")]
    pub inputs: Vec<String>,
    /// The params table, as JSON (or @FILE to read it from a file).
    #[arg(short = 'p', long, value_name = "JSON", default_value = "{}")]
    pub params: String,
    /// The target's name, as the recipe is told [default: the recipe file's stem].
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub flags: BuildFlags,
}

/// What every build takes, from `kiln build` or `kiln run`.
#[derive(Debug, Args)]
pub struct BuildFlags {
    /// Name of the result link (`NAME`, or `NAME-<target>` for several targets).
    #[arg(short = 'o', long = "out-link", value_name = "NAME")]
    pub out_link: Option<String>,
    /// Do not create result links.
    #[arg(long)]
    pub no_link: bool,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Wall-clock limit for each target's recipe and tools (e.g. 90s, 10m, 2h).
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    pub timeout: Duration,
    /// Memory limit for each recipe (e.g. 512M, 2G).
    #[arg(long, value_parser = parse_size, default_value = "2G")]
    pub memory: usize,
    /// Memory limit for each tool run: all the processes of its sandbox
    /// together (where kiln can make a memory cgroup: root, cgroup v1), and
    /// each process's address space always (e.g. 4G). Default: three
    /// quarters of this machine's memory.
    #[arg(long, value_parser = parse_size)]
    pub tool_memory: Option<usize>,
    /// Disk budget for each target: /work and /out together, at apparent
    /// size (e.g. 10G).
    #[arg(long, value_parser = parse_size, default_value = "64G")]
    pub disk: usize,
    /// Run fixed-output steps that kiln.toml does not pin yet, with network,
    /// and report the hash to pin (nothing they fetch is used). The step's
    /// recipe and tools then reach the network with the target's inputs:
    /// use it on projects you trust.
    #[arg(long)]
    pub fetch_unpinned: bool,
    /// Build with empty tool caches (Go's build cache, say), as a fresh
    /// machine would; the kept caches are left as they are.
    #[arg(long)]
    pub no_cache: bool,
    /// The largest download an input may bring (e.g. 500M, 16G).
    #[arg(long, value_parser = parse_size, default_value = "16G")]
    pub max_download: usize,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write what the build did to FILE as Chrome trace-event JSON (open
    /// it in Perfetto or chrome://tracing): a process per target, a thread
    /// per worker, a slice per tool step.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Write an HTML page of what the build did to FILE (with no FILE, a
    /// new file under $KILN_HOME/timings, whose path is printed): a lane
    /// per worker with each recipe and tool step, the critical path, and
    /// each step's wall and CPU time, peak memory and tool caches. With
    /// --watch, after every build.
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub timings: Option<Option<PathBuf>>,
    /// Build the targets again in a fresh sandbox and compare bit for bit
    /// with the stored outputs; on a difference, name the files and keep the
    /// second output for inspection.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub substitute: SubstituteArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// How many recipes may run at once [default: the number of CPUs].
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
}

/// What a target's build key includes besides kiln.toml and its inputs.
/// `kiln build` takes them; commands that look a built target up (`audit`,
/// `push`, `cache push`) take the values it was built with.
#[derive(Debug, Clone, Copy, Args)]
pub struct KeyArgs {
    /// `hermetic` runs every tool in a Linux sandbox; `off` runs them on the
    /// host and marks the output not hermetic.
    #[arg(long, value_enum, default_value_t = SandboxArg::Hermetic)]
    pub sandbox: SandboxArg,
    /// SOURCE_DATE_EPOCH: the time recipes and tools see.
    #[arg(long, default_value_t = 1)]
    pub source_date_epoch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SandboxArg {
    Hermetic,
    Off,
}

impl From<SandboxArg> for crate::sandbox::SandboxMode {
    fn from(s: SandboxArg) -> Self {
        match s {
            SandboxArg::Hermetic => crate::sandbox::SandboxMode::Hermetic,
            SandboxArg::Off => crate::sandbox::SandboxMode::Off,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum HashCommand {
    /// The NAR hash of a file or directory (`nix hash path`, `nix-hash --type sha256`).
    ///
    /// A directory's hash is remembered in $KILN_HOME with a fingerprint of
    /// every entry's stat data; an unchanged tree is not read again.
    Path {
        path: PathBuf,
        #[arg(long, value_enum, default_value_t = FormatArg::Sri)]
        format: FormatArg,
        /// Read every file even if the tree looks unchanged (skip the stat
        /// cache, which remembers each file's stat data and hash).
        #[arg(long, alias = "no-cache")]
        no_stat_cache: bool,
    },
    /// The flat hash of a file's bytes (`nix hash file`, `sha256sum`).
    File {
        path: PathBuf,
        #[arg(long, value_enum, default_value_t = FormatArg::Sri)]
        format: FormatArg,
    },
    /// Spell a hash another way (accepts sha256-<base64>, sha256:<nix32>, sha256:<hex>).
    Convert {
        #[arg(long, value_enum)]
        to: FormatArg,
        hash: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Sri,
    Nix32,
    Hex,
}

impl From<FormatArg> for HashFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Sri => HashFormat::Sri,
            FormatArg::Nix32 => HashFormat::Nix32,
            FormatArg::Hex => HashFormat::Hex,
        }
    }
}

#[derive(Debug, Args)]
pub struct PrefetchArgs {
    /// A URL (http, https, file) or a local path.
    pub source: String,
    /// Unpack an archive (tar, tar.gz, tar.xz, tar.zst, zip) and hash the tree.
    #[arg(long)]
    pub unpack: bool,
    /// Name of the store entry [default: the URL's or path's last component].
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, value_enum, default_value_t = FormatArg::Sri)]
    pub format: FormatArg,
    /// The largest download to accept (e.g. 500M, 16G).
    #[arg(long, value_parser = parse_size, default_value = "16G")]
    pub max_download: usize,
    #[command(flatten)]
    pub fetch: FetchArgs,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub file: FileArg,
    /// Re-pin: every input, or only INPUT (in every target).
    #[arg(long, value_name = "INPUT", num_args = 0..=1, default_missing_value = "")]
    pub update: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunToolArgs {
    #[command(flatten)]
    pub file: FileArg,
    /// The target whose input holds the tool [default: the one target
    /// with an input named INPUT].
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// The input holding the tool, and its path inside the input
    /// [default: bin/INPUT or INPUT/bin/INPUT].
    #[arg(value_name = "INPUT[:PATH]")]
    pub tool: String,
    /// A file the tool may change, relative to the current directory
    /// (repeatable); the rest of the package is read-only to it.
    #[arg(long = "write", value_name = "FILE", default_values_t = ["go.mod".to_string(), "go.sum".to_string()])]
    pub writes: Vec<String>,
    /// The tool's arguments, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Directories to search for result links and kiln.lock files [default: .].
    #[arg(long = "root", value_name = "DIR")]
    pub roots: Vec<PathBuf>,
    /// Say what would be deleted without deleting.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete a target's tool caches unused for this long (e.g. 7d, 30d).
    #[arg(long, value_parser = parse_duration, default_value = "30d")]
    pub cache_max_age: Duration,
    /// Then delete the least recently used tool caches until all of them
    /// together fit in this size (e.g. 2G).
    #[arg(long, value_parser = parse_size, default_value = "10G")]
    pub cache_max_size: usize,
}

/// `90`, `90s`, `10m`, `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("'{s}' is not a duration (write e.g. 90s, 10m, 2h, 1h30m)");
    // A bare number is seconds; anything else is humantime's grammar.
    let d = match t.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(t).map_err(|_| bad())?,
    };
    if d.is_zero() {
        return Err(format!("'{s}': the duration must be positive"));
    }
    if d > MAX_DURATION {
        return Err(format!(
            "'{s}' is longer than kiln's limit of {}",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(d)
}

/// The longest time limit kiln takes: a deadline past it could overflow.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// `1048576`, `512K`, `512M`, `2G`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1usize << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: usize = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (write e.g. 512M, 2G)"))?;
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("'{s}' is not a usable size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration(" 90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in [
            "soon",
            "0s",
            "inf",
            "1e30s",
            "-5s",
            "NaN",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(
            parse_duration("400days")
                .unwrap_err()
                .contains("longer than")
        );
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
