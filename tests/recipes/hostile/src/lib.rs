//! A hostile recipe. Each `attack` tries one way out of the recipe sandbox;
//! if the attack *works*, the recipe writes what it got to `/out/escaped` and
//! succeeds, so the test that expects a failure sees the escape.
//!
//! Two benign modes serve the runtime's other tests: `noop` (the load
//! benchmark) and `entropy` (writes what the clocks and randomness say, for
//! the determinism tests).

use kiln_sdk::{Command, Context, Error, FixedOutput, Result, Seed, Tool};
use std::fs;

#[derive(serde::Deserialize)]
struct Params {
    attack: String,
    #[serde(default)]
    port: u16,
    /// For `exec`: a shell script run by `/inputs/tools/bin/sh -c`.
    #[serde(default)]
    script: String,
    /// For `exec`: variables for the tool's environment.
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    /// For `exec`: a tool cache to mount, as `key` and `/cache/<name>`.
    #[serde(default)]
    cache: Option<(String, String)>,
    /// For `exec` with `cache`: seed it with this script's result (run as
    /// `sh -c SCRIPT seed ITEMS…`, its result directory at `/seed`)…
    #[serde(default)]
    seed: Option<String>,
    /// …asking for these items.
    #[serde(default)]
    seed_items: Vec<String>,
    /// For `exec` with `fixed_dir`: the step's fetch-key files.
    #[serde(default)]
    fetch_key: Vec<String>,
    /// For `exec`: make it a fixed-output step filling this directory…
    #[serde(default)]
    fixed_dir: Option<String>,
    /// …pinned by this kiln.toml setting (default `params.pin`).
    #[serde(default)]
    fixed_setting: Option<String>,
    /// For `exec`: run this script after the first (e.g. to read what a
    /// fixed-output step left).
    #[serde(default)]
    then: Option<String>,
    /// For `exec`: after the tool, read this path through plain WASI…
    #[serde(default)]
    wasi_read: Option<String>,
    /// …and write this one (as a recipe writes its buildinfo).
    #[serde(default)]
    wasi_write: Option<String>,
    /// For `digest`: the path to hash; for `log-flood`: messages to send.
    #[serde(default)]
    path: String,
    #[serde(default)]
    count: u32,
}

fn escaped(what: impl AsRef<[u8]>) -> Result<()> {
    fs::write("/out/escaped", what).context("writing /out/escaped")?;
    Ok(())
}

fn build() -> Result<()> {
    let p: Params = kiln_sdk::params()?;
    match p.attack.as_str() {
        "read-passwd" => escaped(fs::read("/etc/passwd").context("reading /etc/passwd")?),
        "list-root" => {
            let names: Vec<String> = fs::read_dir("/")
                .context("listing /")?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            escaped(names.join("\n"))
        }
        "read-env" => {
            let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            if vars.is_empty() {
                return Err(Error::msg("the environment is empty"));
            }
            escaped(vars.join("\n"))
        }
        "tcp-connect" => {
            use wasip2::sockets::{instance_network, network::IpAddressFamily, tcp_create_socket};
            let sock = tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4)
                .map_err(|e| Error::msg(format!("creating a TCP socket: {e:?}")))?;
            let net = instance_network::instance_network();
            let addr = wasip2::sockets::network::IpSocketAddress::Ipv4(
                wasip2::sockets::network::Ipv4SocketAddress {
                    port: p.port,
                    address: (127, 0, 0, 1),
                },
            );
            sock.start_connect(&net, addr)
                .map_err(|e| Error::msg(format!("connecting to 127.0.0.1:{}: {e:?}", p.port)))?;
            sock.subscribe().block();
            sock.finish_connect()
                .map_err(|e| Error::msg(format!("connecting to 127.0.0.1:{}: {e:?}", p.port)))?;
            escaped("connected")
        }
        "write-outside-out" => {
            fs::write("/work/../escape.txt", "x").context("writing /work/../escape.txt")?;
            escaped("wrote outside /out")
        }
        "write-files-big" => {
            // A tool leaves a sparse file of `count` MiB; one write-files
            // call then asks for eight copies of it.
            use kiln_sdk::assemble::{Pieces, write_files};
            Command::new(Tool::new("tools", "bin/sh"))
                .args(["-c", &format!("truncate -s {}M /work/big", p.count)])
                .run()?;
            let mut big = Pieces::new();
            big.range("/work/big", 0, u64::from(p.count) << 20);
            let names: Vec<String> = (0..8).map(|i| format!("/out/copy-{i}")).collect();
            let files: Vec<(&str, &Pieces)> = names.iter().map(|n| (n.as_str(), &big)).collect();
            write_files(&files)?;
            kiln_sdk::info!("write-files returned");
            escaped("wrote eight copies")
        }
        "write-inputs" => {
            fs::write("/inputs/data/planted.txt", "x")
                .context("writing /inputs/data/planted.txt")?;
            escaped("wrote into /inputs")
        }
        "assemble-escapes" => {
            // The host-side file calls must keep to the recipe's directories.
            use kiln_sdk::assemble::{Pieces, write_files};
            let range = |path: &str| {
                let mut p = Pieces::new();
                p.range(path, 0, 1);
                p
            };
            let mut refused = Vec::new();
            for path in ["/etc/passwd", "/inputs/data/../../../../../etc/passwd"] {
                match range(path).sha256() {
                    Ok(_) => return escaped(format!("hashed {path}")),
                    Err(e) => refused.push(format!("read: {e}")),
                }
            }
            let mut bytes = Pieces::new();
            bytes.bytes(b"x");
            for path in ["/inputs/data/planted.txt", "/work/../escape.txt", "/tmp/x"] {
                match write_files(&[(path, &bytes)]) {
                    Ok(()) => return escaped(format!("wrote {path}")),
                    Err(e) => refused.push(format!("write: {e}")),
                }
            }
            Err(Error::msg(refused.join("\n")))
        }
        "files-escapes" => {
            // A tool plants an escaping symlink and a FIFO; the host's file
            // calls must neither follow the one nor block on the other.
            Command::new(Tool::new("tools", "bin/sh"))
                .args([
                    "-c",
                    "ln -s /etc /work/up && mkfifo /work/fifo && echo x > /work/x",
                ])
                .run()?;
            let mut refused = Vec::new();
            let mut attempt = |what: &str, r: Result<()>| match r {
                Ok(()) => Some(what.to_string()),
                Err(e) => {
                    refused.push(format!("{what}: {e}"));
                    None
                }
            };
            let tries = [
                (
                    "copy /work/up/passwd",
                    kiln_sdk::files::copy("/work/up/passwd", "/out/p"),
                ),
                (
                    "copy into /work/up",
                    kiln_sdk::files::copy("/work/x", "/work/up/x"),
                ),
                (
                    "copy a fifo",
                    kiln_sdk::files::copy("/work/fifo", "/out/fifo"),
                ),
                (
                    "chmod /work/up/passwd",
                    kiln_sdk::files::set_mode("/work/up/passwd", 0o777),
                ),
                (
                    "chmod a symlink",
                    kiln_sdk::files::set_mode("/work/up", 0o777),
                ),
                ("setuid", kiln_sdk::files::set_mode("/work/x", 0o4755)),
                ("copy /etc", kiln_sdk::files::copy("/etc/passwd", "/out/p")),
            ];
            for (what, r) in tries {
                if let Some(done) = attempt(what, r) {
                    return escaped(format!("did {done}"));
                }
            }
            Err(Error::msg(refused.join("\n")))
        }
        "loop-forever" => {
            fs::write("/out/partial", "x")?;
            #[expect(clippy::empty_loop, reason = "the attack is the loop")]
            loop {}
        }
        "alloc-8g" => {
            fs::write("/out/partial", "x")?;
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            for _ in 0..128 {
                hoard.push(vec![1u8; 64 << 20]);
            }
            escaped(format!("allocated {} chunks", hoard.len()))
        }
        "undeclared-tool" => {
            Command::new(Tool::new("sh", "bin/sh")).run()?;
            escaped("ran an undeclared tool")
        }
        "dotdot-tool" => {
            Command::new(Tool::new("data", "../../../../bin/sh")).run()?;
            escaped("ran a tool outside its input")
        }
        "panic" => {
            fs::write("/out/partial", "x")?;
            panic!("the hostile recipe panics on purpose")
        }
        "huge-log" => {
            let line = "x".repeat(100 * 1024 * 1024);
            kiln_sdk::log(kiln_sdk::Level::Info, &line);
            escaped("logged 100 MB")
        }
        "exec" => {
            // A hostile *tool*: the script tries its escape inside the tool sandbox.
            let mut cmd = Command::new(Tool::new("tools", "bin/sh"))
                .args(["-c", p.script.as_str()])
                .envs(p.env.clone());
            if let Some(dir) = &p.fixed_dir {
                let setting = p.fixed_setting.as_deref().unwrap_or("params.pin");
                cmd = cmd.fixed_output(
                    FixedOutput::new(dir.as_str(), setting).fetch_key(p.fetch_key.iter().cloned()),
                );
            }
            if let Some((key, path)) = &p.cache {
                cmd = match &p.seed {
                    Some(script) => cmd.cache_seeded(
                        key.as_str(),
                        path.as_str(),
                        &Seed::new(Tool::new("tools", "bin/sh"))
                            .args(["-c", script.as_str(), "seed"])
                            .items(p.seed_items.iter().cloned()),
                    ),
                    None => cmd.cache(key.as_str(), path.as_str()),
                };
            }
            let mut out = cmd.output()?;
            if let Some(then) = &p.then {
                let first = out.stdout_str() + &out.stderr_str();
                out = Command::new(Tool::new("tools", "bin/sh"))
                    .args(["-c", then.as_str()])
                    .output()?;
                out.stderr.extend_from_slice(first.as_bytes());
            }
            // Whatever the tool left at these paths (a FIFO, say), the
            // recipe opens them as it would its own files.
            if let Some(path) = &p.wasi_read {
                let _ = fs::read(path);
            }
            if let Some(path) = &p.wasi_write {
                fs::write(path, "written by the recipe\n").context("writing")?;
            }
            if out.success() {
                escaped(out.stdout)
            } else {
                let status = match out.exit {
                    kiln_sdk::Exit::Code(code) => format!("tool exited with code {code}"),
                    kiln_sdk::Exit::Signal(signal) => {
                        format!("tool was killed by signal {signal}")
                    }
                };
                Err(Error::msg(format!(
                    "{status}: {}{}",
                    out.stdout_str(),
                    out.stderr_str()
                )))
            }
        }
        "exec-all" => {
            // `script` and `then` at once (exec-all); with `fixed_dir`, the
            // first is a fixed-output step, which a batch must refuse.
            let sh = || Command::new(Tool::new("tools", "bin/sh"));
            let mut first = sh().args(["-c", p.script.as_str()]);
            if let Some(dir) = &p.fixed_dir {
                first = first.fixed_output(FixedOutput::new(dir.as_str(), "params.pin"));
            }
            let second = sh().args(["-c", p.then.as_deref().unwrap_or("true")]);
            let outs = Command::run_all(&[first, second])?;
            escaped(
                outs.iter()
                    .map(|o| o.stdout_str())
                    .collect::<Vec<_>>()
                    .concat(),
            )
        }
        "digest" => {
            if !p.script.is_empty() {
                Command::new(Tool::new("tools", "bin/sh"))
                    .args(["-c", p.script.as_str()])
                    .run()?;
            }
            let d = kiln_sdk::files::sha256_file(&p.path)?;
            escaped(format!("{d:?}"))
        }
        "log-flood" => {
            let line = "x".repeat(1024 * 1024 - 1);
            for _ in 0..p.count {
                kiln_sdk::log(kiln_sdk::Level::Debug, &line);
            }
            escaped(format!("logged {} MiB", p.count))
        }
        "empty-log-flood" => {
            // Lines of no bytes: each must still count against the budget.
            for _ in 0..p.count {
                kiln_sdk::log(kiln_sdk::Level::Debug, "");
            }
            escaped(format!("logged {} empty lines", p.count))
        }
        "sparse-output" => {
            // A 10 TiB file that takes no disk: hashing it would take hours.
            let f = fs::File::create("/out/sparse").context("creating /out/sparse")?;
            f.set_len(10 << 40).context("growing /out/sparse")?;
            Ok(())
        }
        "noop" => Ok(()),
        "entropy" => {
            use std::time::{Instant, SystemTime, UNIX_EPOCH};
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| Error::msg(e.to_string()))?;
            let t0 = Instant::now();
            let t1 = Instant::now();
            let random = wasip2::random::random::get_random_bytes(16);
            let insecure = wasip2::random::insecure::get_insecure_random_bytes(16);
            let text = format!(
                "wall={}\nmonotonic_advances={}\nrandom={random:?}\ninsecure={insecure:?}\n",
                wall.as_secs(),
                t1 > t0
            );
            fs::write("/out/entropy.txt", text)?;
            Ok(())
        }
        other => Err(Error::msg(format!("unknown attack '{other}'"))),
    }
}

kiln_sdk::recipe!(build);
