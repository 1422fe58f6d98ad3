//! Shipping images (issue 17): the go recipe cross-compiles for several
//! platforms, the oci-image recipe makes an image index over them, and
//! `kiln push` sends it to a real registry (Debian's docker-registry,
//! distribution 2.8, with htpasswd auth) started on loopback; skopeo reads
//! the index back, podman pulls and runs it.

use std::process::{Command, Stdio};

use crate::support::{Dockerd, Project, Server, free_port, hello_project, podman, run, wait_for};

pub(crate) const USER: &str = "ci";
pub(crate) const PASSWORD: &str = "s3cret-pw";

/// docker-registry on a free port, with one htpasswd user.
pub(crate) fn registry() -> Server {
    let bin = std::path::Path::new("/usr/bin/docker-registry");
    assert!(
        bin.exists(),
        "these tests need docker-registry: apt-get install docker-registry (.ci/deps does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // bcrypt, which distribution's htpasswd wants, from the C library.
    let hash = run(Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            &format!("import crypt; print(crypt.crypt({PASSWORD:?}, crypt.mksalt(crypt.METHOD_BLOWFISH)))"),
        ])
        .output()
        .unwrap())
    .ok();
    std::fs::write(
        dir.path().join("htpasswd"),
        format!("{USER}:{}\n", hash.stdout.trim()),
    )
    .unwrap();
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: kiln-test\n    path: {d}/htpasswd\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = Command::new(bin)
        .arg("serve")
        .arg(dir.path().join("config.yml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting docker-registry");
    wait_for(port, &mut child, "docker-registry");
    Server {
        child,
        port,
        _dir: dir,
    }
}

/// examples/hello built for linux/amd64 and linux/arm64, as an image index.
fn multi_platform_hello() -> Project {
    let p = hello_project();
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    let platforms = "platforms = [\"linux/amd64\", \"linux/arm64\"]";
    p.write(
        "kiln.toml",
        &toml
            .replace(
                "inputs.src = { path = \".\" }",
                &format!("inputs.src = {{ path = \".\" }}\nparams.{platforms}"),
            )
            .replace(
                "contents = [{ from = \"hello\", path = \"bin/hello\"",
                &format!("{platforms}\ncontents = [{{ from = \"hello\", path = \"{{platform}}/bin/hello\""),
            ),
    );
    p
}

/// `kiln push` with the registry's login in the environment.
fn push(p: &Project, image: &str, reference: &str, password: &str) -> crate::support::Run {
    run(p
        .command(&["push", image, reference])
        .env("KILN_REGISTRY_USERNAME", USER)
        .env("KILN_REGISTRY_PASSWORD", password)
        .output()
        .unwrap())
}

#[test]
fn a_two_platform_image_is_pushed_once_pulled_and_run() {
    let server = registry();
    let registry = format!("127.0.0.1:{}", server.port);
    let p = multi_platform_hello();
    let r = p.kiln(&["build", "hello", "image"]).ok();
    assert!(
        r.stderr.contains("image.tar holds linux/amd64"),
        "{}",
        r.stderr
    );

    // The arm64 binary is an aarch64 ELF (e_machine 183), amd64 x86-64 (62).
    for (dir, machine) in [("linux-arm64", 183u16), ("linux-amd64", 62)] {
        let bytes = std::fs::read(p.path(&format!("result-hello/{dir}/bin/hello"))).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([bytes[18], bytes[19]]), machine, "{dir}");
        assert!(
            p.path(&format!("result-hello/{dir}/share/kiln/go/hello.buildinfo"))
                .is_file()
        );
    }

    // The audit sees both binaries and their modules.
    let audit = p.kiln(&["audit", "hello"]).ok();
    for dir in ["linux-amd64", "linux-arm64"] {
        assert!(
            audit.stdout.contains(&format!("go-binary {dir}/bin/hello")),
            "{}",
            audit.stdout
        );
    }

    // A wrong password is refused by name, before any upload.
    let reference = format!("{registry}/team/hello");
    push(&p, "image", &reference, "wrong").fails_with("refused the credentials (HTTP 401)");

    let first = push(&p, "image", &reference, PASSWORD).ok();
    assert!(
        first
            .stderr
            .contains("pushed 4 blob(s), 0 already there; tagged kiln"),
        "{}",
        first.stderr
    );
    let digest = first.stdout.trim().rsplit('@').next().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{}", first.stdout);
    // Unchanged: nothing is uploaded again.
    let again = push(
        &p,
        "./result-image",
        &format!("{reference}:again"),
        PASSWORD,
    )
    .ok();
    assert!(
        again.stderr.contains("pushed 0 blob(s), 4 already there"),
        "{}",
        again.stderr
    );
    assert!(
        again.stdout.ends_with(&format!("@{digest}\n")),
        "{}",
        again.stdout
    );

    // skopeo reads back an index with both platforms.
    let creds = format!("{USER}:{PASSWORD}");
    signatures_verify_with_openssl(&p, &server, &reference, &digest, &creds);
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--creds", &creds])
        .arg(format!("docker://{reference}:kiln"))
        .output()
        .expect("skopeo"))
    .ok();
    let index: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);

    // podman pulls the host's platform from the index and runs it.
    let image = format!("{reference}:kiln");
    podman(&["pull", "--tls-verify=false", "--creds", &creds, &image]).ok();
    let out = podman(&["run", "--rm", &image]).ok();
    assert_eq!(
        out.stdout,
        "Hello from a static Go binary, built by kiln!\n"
    );
    let _ = podman(&["rmi", "-f", &image]);

    // Docker itself pulls the host's platform from the index (a registry
    // on loopback is plain HTTP to Docker), runs it, and sees what `kiln
    // image inspect` sees in the image.tar built for this host.
    let docker = Dockerd::start();
    docker
        .with_stdin(
            &["login", "-u", USER, "--password-stdin", &registry],
            PASSWORD,
        )
        .ok();
    let pulled = docker.docker(&["pull", &image]).ok();
    assert!(pulled.stdout.contains(&digest), "{}", pulled.stdout);
    let ran = docker
        .docker(&["run", "--rm", "--network", "none", &image])
        .ok();
    assert_eq!(
        ran.stdout,
        "Hello from a static Go binary, built by kiln!\n"
    );
    let seen: serde_json::Value =
        serde_json::from_str(&docker.docker(&["image", "inspect", &image]).ok().stdout).unwrap();
    let kiln: serde_json::Value = serde_json::from_str(
        &p.kiln(&["image", "inspect", "--json", "result-image/image.tar"])
            .ok()
            .stdout,
    )
    .unwrap();
    let d = &seen[0];
    assert_eq!(d["Architecture"], "amd64", "{d}");
    assert_eq!(d["Config"]["Entrypoint"], kiln["config"]["Entrypoint"]);
    let layers = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().or(l["digest"].as_str()).unwrap().to_string())
            .collect()
    };
    assert_eq!(layers(&d["RootFS"]["Layers"]), layers(&kiln["layers"]));
    assert!(
        d["RepoDigests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str() == Some(&format!("{reference}@{digest}"))),
        "{d}"
    );
    drop(docker);
    drop(server);

    // The build-time run check is per platform: an arm64 image given the
    // amd64 binary is refused.
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    p.write(
        "kiln.toml",
        &toml
            .replace(
                "platforms = [\"linux/amd64\", \"linux/arm64\"]\ncontents",
                "platforms = [\"linux/arm64\"]\ncontents",
            )
            .replace(
                "path = \"{platform}/bin/hello\"",
                "path = \"linux-amd64/bin/hello\"",
            ),
    );
    p.kiln(&["build", "image"])
        .fails_with("is an ELF for amd64, but the image is for linux/arm64");
}

#[test]
fn a_multi_platform_image_without_platform_paths_is_refused_before_anything_builds() {
    let p = multi_platform_hello();
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    p.write(
        "kiln.toml",
        &toml.replace("path = \"{platform}/bin/hello\"", "path = \"bin/hello\""),
    );
    let started = std::time::Instant::now();
    p.kiln(&["build", "image"]).fails_with(
        "builds each platform into its own directory; write path = \"{platform}/bin/hello\"",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(p.store_entries().is_empty(), "{:?}", p.store_entries());
}

#[test]
fn bad_references_and_outputs_are_named_errors() {
    let p = Project::new();
    p.write("kiln.toml", "");
    p.kiln(&["push", "./kiln.toml", "hello:v1"])
        .fails_with("is not an image reference");
    p.kiln(&["push", "./kiln.toml", "127.0.0.1:1/hello"])
        .fails_with("is not in the kiln store");
}

/// `kiln push --sign`: the signature and the attestations cosign's formats
/// describe, checked with openssl and the public key (cosign itself is not
/// installable from the registries this project may use).
fn signatures_verify_with_openssl(
    p: &Project,
    server: &Server,
    reference: &str,
    digest: &str,
    creds: &str,
) {
    let key = p.home.path().join("cosign.key");
    let public = p
        .kiln(&["image", "keygen", "--secret-file", key.to_str().unwrap()])
        .ok()
        .stdout;
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
    let public_file = p.home.path().join("cosign.pub");
    std::fs::write(&public_file, &public).unwrap();
    let r = run(p
        .command(&["push", "image", reference, "--sign", key.to_str().unwrap()])
        .env("KILN_REGISTRY_USERNAME", USER)
        .env("KILN_REGISTRY_PASSWORD", PASSWORD)
        .output()
        .unwrap())
    .ok();
    let manifest = |tag: &str| -> serde_json::Value {
        let raw = run(Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", "--creds", creds])
            .arg(format!("docker://{reference}:{tag}"))
            .output()
            .unwrap())
        .ok();
        serde_json::from_str(&raw.stdout).unwrap()
    };
    let blob = |digest: &str| -> Vec<u8> {
        let out = Command::new("curl")
            .args(["-sf", "-u", creds])
            .arg(format!(
                "http://127.0.0.1:{}/v2/{}/blobs/{digest}",
                server.port,
                reference.split_once('/').unwrap().1
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "fetching {digest}");
        out.stdout
    };
    let dir = tempfile::tempdir().unwrap();
    let verify = |message: &[u8], sig_der: &[u8]| -> bool {
        std::fs::write(dir.path().join("msg"), message).unwrap();
        std::fs::write(dir.path().join("sig"), sig_der).unwrap();
        Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&public_file)
            .arg("-signature")
            .arg(dir.path().join("sig"))
            .arg(dir.path().join("msg"))
            .output()
            .unwrap()
            .status
            .success()
    };
    let b64 = |s: &str| data_encoding::BASE64.decode(s.as_bytes()).unwrap();

    // Every digest a client can reach from the tag: the index, and each
    // platform's manifest (what containers/image verifies after it picked
    // one), carries a signature and the attestations.
    let index = manifest("kiln");
    let mut reachable = vec![digest.to_string()];
    reachable.extend(
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap().to_string()),
    );
    assert_eq!(reachable.len(), 3, "{index}");
    for digest in &reachable {
        let hex = digest.trim_start_matches("sha256:");
        assert!(
            r.stderr.contains(&format!("sha256-{hex}.sig")),
            "{}",
            r.stderr
        );
        check_signed(digest, &manifest, &blob, &verify, &b64);
    }
}

/// The `.sig` and `.att` artifacts of `digest` hold what cosign and
/// containers/image read, signed by the key `verify` checks with.
fn check_signed(
    digest: &str,
    manifest: &dyn Fn(&str) -> serde_json::Value,
    blob: &dyn Fn(&str) -> Vec<u8>,
    verify: &dyn Fn(&[u8], &[u8]) -> bool,
    b64: &dyn Fn(&str) -> Vec<u8>,
) {
    let hex = digest.trim_start_matches("sha256:");
    // The signature: a simple-signing payload naming the pushed digest.
    let sig = manifest(&format!("sha256-{hex}.sig"));
    let layer = &sig["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = blob(layer["digest"].as_str().unwrap());
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        claims["critical"]["image"]["docker-manifest-digest"],
        digest
    );
    assert_eq!(
        claims["critical"]["type"],
        "cosign container image signature"
    );
    // containers/image's default identity rule (matchRepoDigestOrExact)
    // needs the tag the image was pulled by.
    assert!(
        claims["critical"]["identity"]["docker-reference"]
            .as_str()
            .is_some_and(|r| r.ends_with("/team/hello:kiln")),
        "{claims}"
    );
    let signature = b64(layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap());
    assert!(
        verify(&payload, &signature),
        "the signature verifies with the public key"
    );
    assert!(
        !verify(b"another payload", &signature),
        "and only for its payload"
    );

    // The attestations: DSSE envelopes of in-toto statements about it.
    let att = manifest(&format!("sha256-{hex}.att"));
    let types: Vec<&str> = att["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["annotations"]["predicateType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "https://slsa.dev/provenance/v1",
            "https://spdx.dev/Document"
        ]
    );
    for layer in att["layers"].as_array().unwrap() {
        let envelope: serde_json::Value =
            serde_json::from_slice(&blob(layer["digest"].as_str().unwrap())).unwrap();
        let ty = envelope["payloadType"].as_str().unwrap();
        assert_eq!(ty, "application/vnd.in-toto+json");
        let statement = b64(envelope["payload"].as_str().unwrap());
        let mut pae = format!("DSSEv1 {} {ty} {} ", ty.len(), statement.len()).into_bytes();
        pae.extend_from_slice(&statement);
        assert!(verify(
            &pae,
            &b64(envelope["signatures"][0]["sig"].as_str().unwrap())
        ));
        let st: serde_json::Value = serde_json::from_slice(&statement).unwrap();
        assert_eq!(st["subject"][0]["digest"]["sha256"], hex);
        assert_eq!(st["predicateType"], layer["annotations"]["predicateType"]);
    }
}

/// A tiny HTTP/1.1 server on loopback: `answer(method, path, headers)` gives
/// the status line's code and extra headers; every request's head is kept.
struct FakeServer {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeServer {
    fn start(
        answer: impl Fn(&str, &str, &str) -> (u16, Vec<String>) + Send + Sync + 'static,
    ) -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let answer = std::sync::Arc::new(answer);
        let kept = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (answer, kept) = (answer.clone(), kept.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    let mut w = conn;
                    loop {
                        let mut head = String::new();
                        loop {
                            let mut line = String::new();
                            if r.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            head.push_str(&line);
                        }
                        let lower = head.to_ascii_lowercase();
                        let len: usize = lower
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        std::io::copy(&mut (&mut r).take(len as u64), &mut std::io::sink())
                            .unwrap();
                        let mut first = head.lines().next().unwrap_or("").split(' ');
                        let (method, path) =
                            (first.next().unwrap_or(""), first.next().unwrap_or(""));
                        let (code, headers) = answer(method, path, &lower);
                        kept.lock().unwrap().push(head.clone());
                        let mut resp = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n");
                        for h in headers {
                            resp.push_str(&h);
                            resp.push_str("\r\n");
                        }
                        resp.push_str("\r\n");
                        if w.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeServer { port, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A registry that sends the upload elsewhere (its Location names another
/// host) gets the bytes there, but kiln's credentials stay with it.
#[test]
fn credentials_never_follow_an_upload_to_another_host() {
    let thief = FakeServer::start(|_, _, _| (201, vec![]));
    let thief_port = thief.port;
    let registry = FakeServer::start(move |method, path, headers| {
        let authed = headers.contains("authorization: basic");
        match (method, path) {
            _ if !authed => (401, vec!["WWW-Authenticate: Basic realm=\"fake\"".into()]),
            ("GET", "/v2/") => (200, vec![]),
            ("HEAD", _) => (404, vec![]),
            ("POST", _) => (
                202,
                vec![format!("Location: http://localhost:{thief_port}/uploads/1")],
            ),
            ("PUT", p) if p.contains("/manifests/") => (201, vec![]),
            _ => (404, vec![]),
        }
    });
    let p = Project::new();
    std::fs::create_dir_all(p.path("app/bin")).unwrap();
    std::fs::copy(crate::support::busybox(), p.path("app/bin/sh")).unwrap();
    p.write(
        "kiln.toml",
        "[target.img]\nrecipe = \"oci-image\"\ninputs.app = { path = \"app\" }\n[target.img.params]\nname = \"x\"\ncontents = [{ from = \"app\", dest = \"/\" }]\nentrypoint = [\"/bin/sh\"]\n",
    );
    p.kiln(&["build", "img"]).ok();
    let r = push(
        &p,
        "img",
        &format!("127.0.0.1:{}/team/x", registry.port),
        PASSWORD,
    );
    let stolen = thief.seen();
    assert!(
        !stolen.is_empty(),
        "the upload never went to the Location: {}",
        r.stderr
    );
    for head in &stolen {
        assert!(
            !head.to_ascii_lowercase().contains("authorization"),
            "credentials sent to the host the upload was sent to:\n{head}"
        );
    }
    assert!(
        registry
            .seen()
            .iter()
            .any(|h| h.to_ascii_lowercase().contains("authorization: basic")),
        "the registry itself was given the credentials"
    );
}
