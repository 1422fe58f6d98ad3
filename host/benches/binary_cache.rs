//! A fresh store building examples/hello's image from a warm binary cache
//! on loopback (nginx, as a team would serve it) against, in the same run:
//!
//! 1. a local cold build of the same image in a fresh store (goal: the
//!    cache is ≥ 10× faster). The toolchain comes from a local file, so
//!    the baseline has no network in it: a real first build, which also
//!    downloads Go, is slower still;
//! 2. `curl` fetching the same files from the same server in one
//!    connection to /dev/null (goal: kiln ≤ 1.3× curl), and — the same
//!    work kiln does — `curl | zstd -d | nix-store --restore` of each NAR.
//!
//! `cargo bench --profile dev --bench binary_cache` (needs nginx-light,
//! curl, zstd and nix-bin; downloads Go 1.27.3 once into a temporary
//! store).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const ROUNDS: usize = 5;

fn kiln(home: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
    let out = Command::new(KILN)
        .args(args)
        .current_dir(dir)
        .env("KILN_HOME", home)
        .env("KILN_CONFIG", home.join("config.toml"))
        .envs(env.iter().copied())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "kiln {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// nginx serving `root` (GET, HEAD and WebDAV PUT) on a free port.
struct Nginx(Child, u16);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx(dir: &Path) -> anyhow::Result<Nginx> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let d = dir.display();
    std::fs::create_dir_all(dir.join("cache"))?;
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  client_max_body_size 0;\n  server {{\n    listen 127.0.0.1:{port};\n    root {d}/cache;\n    location / {{ dav_methods PUT; create_full_put_path on; }}\n  }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let child = Command::new("/usr/sbin/nginx")
        .args(["-e", &format!("{d}/error.log"), "-p"])
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("starting /usr/sbin/nginx (apt-get install nginx-light): {e}")
        })?;
    let server = Nginx(child, port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

/// examples/hello in a new directory, its toolchain read from `wheel`.
fn hello(wheel: &Path) -> anyhow::Result<tempfile::TempDir> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    let dir = tempfile::tempdir()?;
    for f in ["hello.go", "go.mod", "kiln.toml"] {
        let text = std::fs::read_to_string(root.join(f))?;
        let text = match text
            .split("url = \"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        {
            Some(url) if f == "kiln.toml" => {
                text.replace(url, &format!("file://{}", wheel.display()))
            }
            _ => text,
        };
        std::fs::write(dir.path().join(f), text)?;
    }
    Ok(dir)
}

fn main() -> anyhow::Result<()> {
    let toml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/kiln.toml"),
    )?;
    let url = toml
        .split("url = \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a url in examples/hello/kiln.toml");
    // Outside the timing: the wheel, once, as a plain file.
    let seed = tempfile::tempdir()?;
    let seed_home = seed.path().join("home");
    kiln(&seed_home, seed.path(), &["-q", "prefetch", url], &[])?;
    let wheel: PathBuf = std::fs::read_dir(seed_home.join("store"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_file())
        .expect("the downloaded wheel");
    let allow = wheel
        .parent()
        .unwrap_or(Path::new("/"))
        .display()
        .to_string();
    let env = [("KILN_ALLOW_PATH", allow.as_str())];

    // CI pushes to nginx.
    let server_dir = tempfile::tempdir()?;
    let server = nginx(server_dir.path())?;
    let cache = format!("http://127.0.0.1:{}", server.1);
    let ci_home = tempfile::tempdir()?;
    let ci = hello(&wheel)?;
    let key = ci_home.path().join("ci.secret");
    let public = kiln(
        ci_home.path(),
        ci.path(),
        &[
            "cache",
            "keygen",
            "ci-1",
            "--secret-file",
            &key.display().to_string(),
        ],
        &[],
    )?;
    kiln(
        ci_home.path(),
        ci.path(),
        &["-q", "build", "image", "--push"],
        &[
            env[0],
            ("KILN_PUSH_TO", &cache),
            ("KILN_SIGNING_KEY", &key.display().to_string()),
        ],
    )?;

    // What a pull of the image fetches: the image's and hello's narinfo,
    // record, signature and NAR (read from the server's directory).
    let root = server_dir.path().join("cache");
    let mut files = Vec::new();
    let mut nars = Vec::new();
    let mut nar_bytes = 0;
    for entry in std::fs::read_dir(&root)?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(part) = name.strip_suffix(".kiln.json") else {
            continue;
        };
        let info = std::fs::read_to_string(root.join(format!("{part}.narinfo")))?;
        let nar = info
            .lines()
            .find_map(|l| l.strip_prefix("URL: "))
            .expect("a URL line");
        nar_bytes += std::fs::metadata(root.join(nar))?.len();
        nars.push((part.to_string(), format!("{cache}/{nar}")));
        for f in [
            format!("{part}.narinfo"),
            format!("{part}.kiln.json"),
            format!("{part}.kiln.json.sig"),
            nar.to_string(),
        ] {
            files.push(format!("{cache}/{f}"));
        }
    }
    println!(
        "a pull fetches {} files ({} KiB of NAR)",
        files.len(),
        nar_bytes / 1024
    );

    // 2. Fresh stores pulling from the warm cache, and curl of the same files.
    let mut pulls = Vec::new();
    let mut curls = Vec::new();
    let mut restores = Vec::new();
    for round in 0..ROUNDS {
        let home = tempfile::tempdir()?;
        std::fs::write(
            home.path().join("config.toml"),
            format!(
                "[cache]\nsubstituters = [\"{cache}\"]\ntrusted-public-keys = [\"{}\"]\n",
                public.trim()
            ),
        )?;
        let dir = hello(&wheel)?;
        let t = Instant::now();
        let out = kiln(home.path(), dir.path(), &["build", "image"], &env)?;
        let pull = t.elapsed().as_secs_f64();
        anyhow::ensure!(out.contains("from cache"), "not pulled: {out}");
        let mut curl = Command::new("curl");
        curl.arg("-sf");
        for f in &files {
            curl.args(["-o", "/dev/null", f]);
        }
        let t = Instant::now();
        let status = curl.status()?;
        let c = t.elapsed().as_secs_f64();
        anyhow::ensure!(status.success(), "curl failed");
        // The same work with standard tools: fetch the small files, then
        // each NAR through zstd into nix-store --restore.
        let out = tempfile::tempdir()?;
        let mut script = String::from("set -e\ncurl -sf");
        for f in files.iter().filter(|f| !f.ends_with(".nar.zst")) {
            script.push_str(&format!(" -o /dev/null {f}"));
        }
        script.push('\n');
        for (part, nar) in &nars {
            script.push_str(&format!(
                "curl -sf {nar} | zstd -dcq | nix-store --restore {}/{part}\n",
                out.path().display()
            ));
        }
        let t = Instant::now();
        let status = Command::new("sh").args(["-c", &script]).status()?;
        let r = t.elapsed().as_secs_f64();
        anyhow::ensure!(status.success(), "curl | zstd | nix-store --restore failed");
        println!(
            "round {round}: pull {:.1} ms, curl {:.1} ms ({:.2}x), curl|zstd|nix-store --restore {:.1} ms ({:.2}x)",
            pull * 1e3,
            c * 1e3,
            pull / c,
            r * 1e3,
            pull / r
        );
        pulls.push(pull);
        curls.push(c);
        restores.push(r);
    }
    // 1. Local cold builds (after the pulls: their page cache would slow what follows), each in a fresh store.
    let mut cold = Vec::new();
    for round in 0..3 {
        let home = tempfile::tempdir()?;
        let dir = hello(&wheel)?;
        let t = Instant::now();
        kiln(home.path(), dir.path(), &["-q", "build", "image"], &env)?;
        cold.push(t.elapsed().as_secs_f64());
        println!("cold local build round {round}: {:.2} s", cold[round]);
    }

    let (cold, pull, curl) = (median(&cold), median(&pulls), median(&curls));
    println!(
        "warm cache vs cold local build: {:.1} ms vs {:.2} s = {:.0}x faster (goal ≥ 10x)",
        pull * 1e3,
        cold,
        cold / pull
    );
    println!(
        "pull vs curl of the same bytes: {:.1} ms vs {:.1} ms = {:.2}x (goal ≤ 1.3x)",
        pull * 1e3,
        curl * 1e3,
        pull / curl
    );
    println!(
        "pull vs curl | zstd -d | nix-store --restore (the same work): {:.1} ms vs {:.1} ms = {:.2}x",
        pull * 1e3,
        median(&restores) * 1e3,
        pull / median(&restores)
    );
    drop(server);
    Ok(())
}
