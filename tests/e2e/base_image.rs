//! Images on a base (issue 31): a base image kiln builds and pushes to a
//! real registry (Debian's docker-registry on loopback, with a login), a
//! service image stacked on it by digest, run in podman; its push uploads
//! only its own layer; a second project reuses the stored base; a changed
//! or unpinned base is refused by name.

use crate::registry::{PASSWORD, USER, registry};
use crate::support::{Project, busybox, podman, run};

/// `kiln args…` with the registry's login and loopback allowed for pulls
/// (kiln.toml cannot allow its own downloads from loopback).
/// The login is in an auth file for exactly `registry` (as `podman login`
/// writes it): pulls a kiln.toml asks for use only such entries, pushes
/// also the `KILN_REGISTRY_*` variables.
fn kiln(p: &Project, registry: &str, args: &[&str]) -> crate::support::Run {
    let auth = p.home.path().join("auth.json");
    let token = data_encoding::BASE64.encode(format!("{USER}:{PASSWORD}").as_bytes());
    std::fs::write(
        &auth,
        format!("{{\"auths\": {{\"{registry}\": {{\"auth\": \"{token}\"}}}}}}"),
    )
    .unwrap();
    run(p
        .command(args)
        .env("REGISTRY_AUTH_FILE", &auth)
        .env("KILN_ALLOW_FETCH_FROM", "127.0.0.1")
        .output()
        .unwrap())
}

/// The base: busybox as /bin/sh, an /etc/passwd with a nonroot user, an
/// environment variable and that user, pushed; its pinned reference.
fn push_base(registry: &str) -> (Project, String) {
    let p = Project::new();
    std::fs::create_dir_all(p.path("root/bin")).unwrap();
    std::fs::copy(busybox(), p.path("root/bin/sh")).unwrap();
    p.write(
        "root/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh\n",
    );
    p.write(
        "kiln.toml",
        "[target.base]\nrecipe = \"oci-image\"\ninputs.root = { path = \"root\" }\nparams.name = \"base\"\nparams.tag = \"v1\"\nparams.contents = [{ from = \"root\", path = \"\", dest = \"/\" }]\nparams.cmd = [\"/bin/sh\"]\nparams.env = { GREETING = \"from the base\" }\nparams.user = \"65532\"\n",
    );
    kiln(&p, registry, &["build", "base"]).ok();
    let out = kiln(
        &p,
        registry,
        &["push", "base", &format!("{registry}/team/base:v1")],
    )
    .ok();
    let pinned = out.stdout.trim().to_string();
    assert!(pinned.contains("/team/base@sha256:"), "{pinned}");
    (p, pinned)
}

/// A service: a shell script (its interpreter, /bin/sh, is the base's)
/// stacked on `base`.
fn service(base: &str) -> Project {
    let p = Project::new();
    p.write("app/hello", "#!/bin/sh\necho \"hello $GREETING\"\n");
    p.write(
        "kiln.toml",
        &format!(
            "[target.image]\nrecipe = \"oci-image\"\ninputs.base = {{ image = \"{base}\" }}\ninputs.app = {{ path = \"app\" }}\nparams.name = \"svc\"\nparams.tag = \"v1\"\nparams.base = \"base\"\nparams.contents = [{{ from = \"app\", path = \"hello\", dest = \"/app/hello\", mode = \"0755\" }}]\nparams.entrypoint = [\"/app/hello\"]\n"
        ),
    );
    p
}

#[test]
fn a_service_on_a_pulled_base_runs_pushes_only_its_layer_and_audits_the_base() {
    let server = registry();
    let registry = format!("127.0.0.1:{}", server.port);
    let (base_project, pinned) = push_base(&registry);
    let base_inspect = base_project
        .kiln(&[
            "image",
            "inspect",
            "--json",
            base_project.path("result/oci").to_str().unwrap(),
        ])
        .ok();
    let base_v: serde_json::Value = serde_json::from_str(&base_inspect.stdout).unwrap();
    let base_layer = base_v["layers"][0]["digest"].as_str().unwrap().to_string();

    let p = service(&pinned);
    // Without the user's word, a kiln.toml cannot make kiln fetch from loopback.
    let mut plain = p.command(&["build"]);
    plain.env_remove("KILN_ALLOW_FETCH_FROM");
    let refused = run(plain.output().unwrap());
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("loopback"), "{}", refused.stderr);

    let built = kiln(&p, &registry, &["build"]).ok();
    assert!(
        built.stderr.contains(&format!("pulled {pinned}")),
        "{}",
        built.stderr
    );
    let v: serde_json::Value = serde_json::from_str(
        &p.kiln(&[
            "image",
            "inspect",
            "--json",
            p.path("result/oci").to_str().unwrap(),
        ])
        .ok()
        .stdout,
    )
    .unwrap();
    // The base's layer first, the same blob; kiln's on top; the base's
    // user and environment carried over.
    assert_eq!(v["layers"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["layers"][0]["digest"], base_layer.as_str());
    assert_eq!(v["config"]["User"], "65532", "{v}");
    assert!(
        v["config"]["Env"]
            .to_string()
            .contains("GREETING=from the base"),
        "{v}"
    );

    podman(&[
        "load",
        "-q",
        "-i",
        p.path("result/image.tar").to_str().unwrap(),
    ])
    .ok();
    let ran = podman(&["run", "--rm", "--network", "none", "svc:v1"]).ok();
    assert_eq!(ran.stdout, "hello from the base\n");

    // And in Docker itself, from the archive with the base's gzip layer.
    let docker = crate::support::Dockerd::start();
    docker.load(&p.path("result/image.tar")).ok();
    let ran = docker
        .docker(&["run", "--rm", "--network", "none", "svc:v1"])
        .ok();
    assert_eq!(ran.stdout, "hello from the base\n");

    // A push sends kiln's layer, the config and the manifest; the base's
    // layer is there already.
    let pushed = kiln(
        &p,
        &registry,
        &["push", "image", &format!("{registry}/team/svc:v1")],
    )
    .ok();
    assert!(
        pushed.stderr.contains("pushed 2 blob(s), 1 already there"),
        "{}",
        pushed.stderr
    );

    // The audit names the base by its reference and digest; provenance
    // has it as a resolved dependency, the SBOM as a package the image
    // descends from.
    let audit = p.kiln(&["audit", "image"]).ok().stdout;
    assert!(
        audit.contains("image base") && audit.contains(&pinned),
        "{audit}"
    );
    p.kiln(&[
        "audit",
        "image",
        "--provenance",
        "p.json",
        "--sbom",
        "s.json",
    ])
    .ok();
    let prov = std::fs::read_to_string(p.path("p.json")).unwrap();
    assert!(prov.contains(&format!("docker://{pinned}")), "{prov}");
    let sbom: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("s.json")).unwrap()).unwrap();
    let digest_hex = pinned.rsplit_once("@sha256:").unwrap().1;
    assert!(
        sbom["packages"]
            .to_string()
            .contains(&format!("pkg:oci/base@sha256%3A{digest_hex}")),
        "{sbom}"
    );
    assert!(
        sbom["relationships"].to_string().contains("DESCENDANT_OF"),
        "{sbom}"
    );

    // A second project pinning the same base pulls nothing.
    let again = service(&pinned);
    again.write("app/hello", "#!/bin/sh\necho \"hi $GREETING\"\n");
    let mut c = again.command(&["build"]);
    c.env("KILN_HOME", p.home.path());
    let second = run(c.output().unwrap());
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(!second.stderr.contains("pulling"), "{}", second.stderr);
}

#[test]
fn bad_bases_are_named_errors_and_nothing_is_stored() {
    let server = registry();
    let registry = format!("127.0.0.1:{}", server.port);
    let (_base, pinned) = push_base(&registry);
    // A tag alone is no pin.
    let unpinned = pinned.split('@').next().unwrap().to_string();
    kiln(&service(&unpinned), &registry, &["build"])
        .fails_with("kiln.toml:3:")
        .fails_with("is not pinned by digest");
    // A digest the registry does not have under that name (a changed base).
    let other = format!("{unpinned}@sha256:{}", "0".repeat(64));
    let p = service(&other);
    kiln(&p, &registry, &["build"]).fails_with("HTTP 404");
    assert!(
        p.store_entries().iter().all(|e| !e.ends_with("-base")),
        "{:?}",
        p.store_entries()
    );
    // A base given by name that is not an image input.
    let p = service(&pinned);
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    p.write(
        "kiln.toml",
        &toml.replace("params.base = \"base\"", "params.base = \"app\""),
    );
    kiln(&p, &registry, &["build"]).fails_with("input 'app' is not an image");
    // The push login in KILN_REGISTRY_* names no registry: a pull a
    // kiln.toml asks for never uses it.
    let p = service(&pinned);
    let mut c = p.command(&["build"]);
    c.env("KILN_REGISTRY_USERNAME", USER)
        .env("KILN_REGISTRY_PASSWORD", PASSWORD)
        .env("KILN_ALLOW_FETCH_FROM", "127.0.0.1");
    let r = run(c.output().unwrap());
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
}
