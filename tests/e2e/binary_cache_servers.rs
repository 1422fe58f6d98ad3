//! Binary caches on real servers started on loopback: nginx with WebDAV
//! PUT (Debian's nginx-light) and an S3 server (PyPI's moto), both
//! installed by `.ci/deps`; and Debian's `nix` listing and verifying what
//! kiln wrote. The servers are started per test and stopped after it.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::binary_cache::{copy_of, keygen, output, random_project};
use crate::support::{Server, free_port, hello_project, run, wait_for};

/// nginx serving `root` with WebDAV PUT, in the foreground as this user
/// (so its one process can write the root).
fn nginx() -> Server {
    nginx_with(None)
}

/// nginx as [`nginx`], with PUT allowed only to `login:password` if given.
fn nginx_with(auth: Option<(&str, &str)>) -> Server {
    let nginx = Path::new("/usr/sbin/nginx");
    assert!(
        nginx.exists(),
        "these tests need nginx: apt-get install nginx-light (.ci/deps does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log {d}/logs/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  client_max_body_size 0;\n  server {{\n    listen 127.0.0.1:{port};\n    root {root};\n    location / {{\n      dav_methods PUT;\n      create_full_put_path on;\n      dav_access user:rw group:r all:r;\n    }}\n  }}\n}}\n",
        root = root.display()
    );
    let conf = match auth {
        None => conf,
        Some((login, password)) => {
            let users = dir.path().join("users");
            std::fs::write(&users, format!("{login}:{{PLAIN}}{password}\n")).unwrap();
            conf.replace(
                "      dav_methods PUT;",
                &format!(
                    "      limit_except GET HEAD {{ auth_basic \"kiln\"; auth_basic_user_file {}; }}\n      dav_methods PUT;",
                    users.display()
                ),
            )
        }
    };
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut child = Command::new(nginx)
        .args(["-e", &format!("{d}/logs/error.log"), "-p"])
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .spawn()
        .expect("starting nginx");
    wait_for(port, &mut child, "nginx");
    Server {
        child,
        port,
        _dir: dir,
    }
}

/// moto's S3 server with an empty bucket `kiln-cache`.
fn s3_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m moto.server (pip install 'moto[server]'; .ci/deps does)");
    wait_for(port, &mut child, "moto");
    let r = run(Command::new("curl")
        .args([
            "-sf",
            "-X",
            "PUT",
            &format!("http://127.0.0.1:{port}/kiln-cache"),
        ])
        .output()
        .unwrap());
    assert_eq!(r.code, 0, "creating the bucket: {}", r.stderr);
    Server {
        child,
        port,
        _dir: dir,
    }
}

/// `nix …` with experimental commands on and its own state under `home`.
fn nix(home: &Path, args: &[&str]) -> crate::support::Run {
    run(Command::new("nix")
        .args(["--extra-experimental-features", "nix-command"])
        .args(args)
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("NIX_CONF_DIR", home)
        .env("NIX_STATE_DIR", home.join("state"))
        .env("NIX_LOG_DIR", home.join("log"))
        .output()
        .expect("nix (Debian: nix-bin; .ci/deps installs it)"))
}

#[test]
fn hello_pushed_to_nginx_builds_on_a_fresh_machine_without_go_and_nix_verifies_it() {
    let server = nginx();
    let url = format!("http://127.0.0.1:{}", server.port);
    // CI builds examples/hello's image and pushes it.
    let ci = hello_project();
    let (secret, public) = keygen(&ci, "ci-1");
    let r = ci
        .command(&["build", "image", "--push"])
        .env("KILN_PUSH_TO", &url)
        .env("KILN_SIGNING_KEY", &secret)
        .output()
        .unwrap();
    let r = run(r).ok();
    assert!(r.stderr.contains("pushed"), "{}", r.stderr);

    // A laptop with only the cache settings: no Go in its store afterwards,
    // so nothing ran; the image is the same bytes.
    let laptop = hello_project();
    std::fs::write(
        laptop.home.path().join("config.toml"),
        format!("[cache]\nsubstituters = [\"{url}\"]\ntrusted-public-keys = [\"{public}\"]\n"),
    )
    .unwrap();
    let r = laptop.kiln(&["build", "image"]).ok();
    assert!(
        r.stdout.contains(&format!("(from cache {url})")),
        "{}",
        r.stdout
    );
    let image = |p: &crate::support::Project| std::fs::read(p.path("result/image.tar")).unwrap();
    assert!(image(&laptop) == image(&ci), "bit-identical image.tar");
    let entries = laptop.store_entries();
    assert!(
        !entries.iter().any(|e| e.ends_with("-go")),
        "the toolchain was never needed: {entries:?}"
    );
    // Provenance works on the pulled output: its record came along.
    laptop.kiln(&["audit", "image"]).ok();

    // Nix reads the cache kiln wrote: lists the entry, checks its
    // signature with the same public key, and its NAR hash.
    let target = std::fs::canonicalize(laptop.path("result")).unwrap();
    let base = target.file_name().unwrap().to_string_lossy().into_owned();
    let store_path = format!("/nix/store/{base}");
    let home = tempfile::tempdir().unwrap();
    let listed = nix(
        home.path(),
        &["path-info", "--store", &url, "--json", &store_path],
    );
    assert_eq!(listed.code, 0, "nix path-info: {}", listed.stderr);
    assert!(listed.stdout.contains(&store_path), "{}", listed.stdout);
    let verify = |key: &str| {
        nix(
            home.path(),
            &[
                "store",
                "verify",
                "--store",
                &url,
                "--trusted-public-keys",
                key,
                &store_path,
            ],
        )
    };
    let verified = verify(&public);
    assert_eq!(verified.code, 0, "nix store verify: {}", verified.stderr);
    // …and refuses it under a key it does not trust.
    let (_, other) = keygen(&laptop, "other-1");
    let untrusted = verify(&other);
    assert_ne!(untrusted.code, 0, "nix must refuse an untrusted signature");

    // An edit on the laptop builds here, but its toolchain comes from the
    // cache (shared by content hash) rather than from its URL.
    laptop.write(
        "hello.go",
        &std::fs::read_to_string(laptop.path("hello.go"))
            .unwrap()
            .replace("built by kiln", "built on a laptop"),
    );
    let r = laptop.kiln(&["build", "hello"]).ok();
    assert!(
        r.stderr.contains(&format!("input 'go' from cache {url}")),
        "{}",
        r.stderr
    );

    // The server stops: the next fresh machine builds here, with a warning.
    drop(server);
    let offline = hello_project();
    std::fs::copy(
        laptop.home.path().join("config.toml"),
        offline.home.path().join("config.toml"),
    )
    .unwrap();
    let r = offline.kiln(&["build", "hello"]).ok();
    assert!(r.stderr.contains("unreachable"), "{}", r.stderr);
}

#[test]
fn an_s3_bucket_serves_as_a_cache_and_two_pushers_at_once_agree() {
    let server = s3_server();
    let url = format!(
        "s3://kiln-cache/team?endpoint=http://127.0.0.1:{}&region=us-east-1",
        server.port
    );
    let a = random_project();
    a.kiln(&["build"]).ok();
    let (secret, public) = keygen(&a, "s3-1");
    let aws = |c: &mut Command| {
        c.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
    };
    // Two pushers of the same output at once.
    let pushers: Vec<_> = (0..2)
        .map(|_| {
            let mut c = a.command(&["cache", "push", "--to", &url, "--signing-key", &secret]);
            aws(&mut c);
            c.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in pushers {
        run(p.wait_with_output().unwrap()).ok();
    }
    let b = copy_of(&a);
    let mut c = b.command(&[
        "build",
        "--substituter",
        &url,
        "--trusted-public-key",
        &public,
    ]);
    aws(&mut c);
    let r = run(c.output().unwrap()).ok();
    assert!(
        r.stdout.contains("(from cache s3://kiln-cache/team)"),
        "{}",
        r.stdout
    );
    assert_eq!(output(&b), output(&a));
    drop(server);
}

#[test]
fn pushing_takes_credentials_from_netrc_and_a_wrong_password_is_named() {
    let server = nginx_with(Some(("ci", "s3cret")));
    let url = format!("http://127.0.0.1:{}", server.port);
    let p = random_project();
    p.kiln(&["build"]).ok();
    let (secret, _) = keygen(&p, "ci-1");
    let netrc = p.home.path().join("netrc");
    let push = |password: &str| {
        std::fs::write(
            &netrc,
            format!("machine 127.0.0.1 login ci password {password}\n"),
        )
        .unwrap();
        run(p
            .command(&["cache", "push", "--to", &url, "--signing-key", &secret])
            .env("NETRC", &netrc)
            .output()
            .unwrap())
    };
    let wrong = push("guess");
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("refused the credentials (HTTP 401)"),
        "{}",
        wrong.stderr
    );
    assert!(!wrong.stderr.contains("guess"), "no password in messages");
    let right = push("s3cret").ok();
    assert!(
        right.stderr.contains("pushed 1 store entries"),
        "{}",
        right.stderr
    );
    assert!(!right.stderr.contains("s3cret"));
}
