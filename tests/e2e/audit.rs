//! Auditing: closures, provenance and SBOM validated against their JSON
//! schemas, verify catching a tampered store file, `audit --diff` after an
//! edit, `build --check`, and `-j` running independent targets at once.

use std::path::Path;

use serde_json::Value;

use crate::support::{Project, hello_project, shell_targets};

/// Validate `doc` against `tests/schemas/<schema>`, listing every violation.
#[track_caller]
fn assert_valid(schema: &str, doc: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/schemas")
        .join(schema);
    let schema: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{} violations:\n{}",
        path.display(),
        errors.join("\n")
    );
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn sha256_hex(path: &Path) -> String {
    kiln_core::hash::Sha256Hash::of_bytes(&std::fs::read(path).unwrap()).to_hex()
}

#[test]
fn hello_audits_attests_verifies_and_diffs() {
    let p = hello_project();
    p.kiln(&["build", "hello", "image"]).ok();

    // The closure of the image reaches through the hello target to its files.
    let tree = p.kiln(&["audit", "image"]).ok().stdout;
    for needle in [
        "target image  sha256-",
        "└── target hello  sha256-",
        "url go  file://",
        "[tool /inputs/go/go/bin/go]",
        "file hello.go  sha256-",
        "go-binary bin/hello  go1.27.3",
        "go-module example.com/hello  (devel)",
    ] {
        assert!(tree.contains(needle), "no {needle:?} in:\n{tree}");
    }
    let json: Value =
        serde_json::from_str(&p.kiln(&["audit", "--json", "hello"]).ok().stdout).unwrap();
    let src = json[0]["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "src")
        .unwrap();
    let go_file = src["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "hello.go")
        .unwrap();
    let want = kiln_core::hash::Sha256Hash::of_bytes(&std::fs::read(p.path("hello.go")).unwrap());
    assert_eq!(go_file["hash"], want.to_sri());

    // Provenance and SBOM validate, and say the right things.
    p.kiln(&[
        "audit",
        "image",
        "--provenance",
        "prov.json",
        "--sbom",
        "sbom.spdx.json",
    ])
    .ok();
    let prov = read_json(&p.path("prov.json"));
    assert_valid("in-toto-slsa-provenance-v1.schema.json", &prov);
    let subject = prov["subject"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "image/image.tar")
        .expect("image.tar is a subject");
    assert_eq!(
        subject["digest"]["sha256"],
        sha256_hex(&p.path("result-image/image.tar"))
    );
    let deps = prov["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let dep = |uri: &str| deps.iter().find(|d| d["uri"] == uri);
    assert_eq!(
        dep("file:hello.go").expect("hello.go is a dependency")["digest"]["sha256"],
        sha256_hex(&p.path("hello.go"))
    );
    assert!(dep("kiln:recipe/go").is_some() && dep("kiln:target/hello").is_some());
    assert!(
        deps.iter()
            .any(|d| d["uri"].as_str().unwrap().starts_with("file:///")),
        "the Go toolchain URL is a dependency: {deps:?}"
    );
    let sbom = read_json(&p.path("sbom.spdx.json"));
    assert_valid("spdx-2.3.schema.json", &sbom);
    let packages = sbom["packages"].as_array().unwrap();
    let hello = packages
        .iter()
        .find(|p| p["name"] == "example.com/hello")
        .expect("the hello module is in the SBOM");
    assert_eq!(hello["versionInfo"], "(devel)");
    // The standard library, as scanners look for it.
    let stdlib = packages
        .iter()
        .find(|p| p["name"] == "stdlib")
        .expect("the Go standard library is in the SBOM");
    assert_eq!(stdlib["versionInfo"], "go1.27.3");
    assert_eq!(
        stdlib["externalRefs"][0]["referenceLocator"],
        "pkg:golang/stdlib@go1.27.3"
    );
    // SPDX's own tools accept it (more than the schema: references,
    // relationships, ids).
    let checked = std::process::Command::new("pyspdxtools")
        .arg("-i")
        .arg(p.path("sbom.spdx.json"))
        .output()
        .expect("running pyspdxtools (pip install spdx-tools; .ci/deps does)");
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let binary = packages
        .iter()
        .find(|p| p["name"] == "hello:bin/hello")
        .unwrap();
    assert_eq!(
        binary["checksums"][0]["checksumValue"],
        sha256_hex(&p.path("result-hello/bin/hello"))
    );

    // An edit to hello.go shows up in the diff of the two closures.
    let old = std::fs::read_link(p.path("result-hello")).unwrap();
    p.write(
        "hello.go",
        &std::fs::read_to_string(p.path("hello.go"))
            .unwrap()
            .replace("Hello from", "Hi from"),
    );
    p.kiln(&["build", "hello"]).ok();
    let diff = p
        .kiln(&["audit", "--diff", old.to_str().unwrap(), "hello"])
        .ok()
        .stdout;
    assert!(diff.contains("changed  output"), "{diff}");
    assert!(
        diff.contains("changed  path src > hello.go  sha256-"),
        "{diff}"
    );
    assert!(!diff.contains("go.mod"), "go.mod did not change: {diff}");
    let same = p.kiln(&["audit", "--diff", "hello", "hello"]).ok().stdout;
    assert_eq!(same, "the two input closures are identical\n");

    // Verify: all intact, then a tampered file in a store entry is named.
    p.kiln(&["verify"]).ok();
    let bin = old.join("bin/hello");
    let mut perms = std::fs::metadata(&bin).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&bin, perms).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&bin)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"backdoor"))
        .unwrap();
    let r = p
        .kiln(&["verify"])
        .fails_with("store entries were modified after kiln wrote them");
    assert!(r.stderr.contains("error: 1 of "), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("{}: its build record says", old.display())),
        "{}",
        r.stderr
    );
    p.kiln(&["verify", "result-image"]).ok();
    p.kiln(&["audit", old.to_str().unwrap(), "--provenance", "x.json"])
        .fails_with("was modified after it was built");
}

/// A target that runs `script` with a busybox shell and keeps its stdout.

#[test]
fn check_passes_when_reproducible_and_names_the_files_that_differ() {
    let p = Project::new();
    shell_targets(
        &p,
        &[
            ("same", "echo the same every time"),
            ("noisy", "head -c 16 /dev/urandom | od -x"),
        ],
    );
    let r = p.kiln(&["build", "same", "--check"]).ok();
    assert!(
        r.stdout
            .contains("(checked: a second build is bit-identical)"),
        "{}",
        r.stdout
    );
    p.kiln(&["build", "noisy"]).ok();
    let first = std::fs::read(p.path("result/escaped")).unwrap();
    let r = p
        .kiln(&["build", "noisy", "--check"])
        .fails_with("target 'noisy' is not reproducible");
    assert!(
        r.stderr.contains("changed escaped: file sha256-"),
        "{}",
        r.stderr
    );
    let kept = p.home.path().join("checks").join(
        std::fs::read_link(p.path("result"))
            .unwrap()
            .file_name()
            .unwrap(),
    );
    assert!(
        r.stderr.contains(&kept.display().to_string()),
        "{}",
        r.stderr
    );
    assert_ne!(std::fs::read(kept.join("escaped")).unwrap(), first);
    assert_eq!(
        std::fs::read(p.path("result/escaped")).unwrap(),
        first,
        "the stored output is untouched"
    );
}

#[test]
fn independent_targets_run_in_parallel_with_jobs() {
    // Each tool waits for the other to have started: only a parallel build
    // finishes. Unsandboxed, so that the two tools can see one directory.
    let meet = tempfile::tempdir().unwrap();
    let dir = meet.path().display();
    let script = |me: &str, peer: &str| {
        format!(
            "touch {dir}/{me}; i=0; while [ ! -e {dir}/{peer} ]; do i=$((i+1)); if [ $i -gt 600 ]; then echo {peer} never started >&2; exit 1; fi; sleep 0.05; done; echo {me} met {peer}"
        )
    };
    let p = Project::new();
    shell_targets(&p, &[("a", &script("a", "b")), ("b", &script("b", "a"))]);
    p.kiln(&["build", "-j", "2", "--sandbox", "off", "-q"]).ok();
    assert_eq!(
        std::fs::read_to_string(p.path("result-a/escaped")).unwrap(),
        "a met b\n"
    );
}

#[test]
fn audit_explains_what_it_cannot_answer() {
    let p = Project::new();
    shell_targets(&p, &[("t", "echo hi")]);
    p.kiln(&["audit", "t"])
        .fails_with("target 't' is not built for its current inputs; run `kiln build t` first");
    p.kiln(&["audit", "nope"])
        .fails_with("'nope' is neither a target (")
        .fails_with("has no target 'nope' (targets: t)");
    p.kiln(&["audit", "--diff", "t"])
        .fails_with("--diff compares two builds");
    p.kiln(&["build", "t"]).ok();
    p.kiln(&["audit", "tools/bin/sh"])
        .fails_with("is not in the kiln store");
    p.kiln(&["audit", "t", "--sbom", "s.json"])
        .fails_with("no Go binary or base image in the closure of t");
    let tree = p.kiln(&["audit"]).ok().stdout;
    assert!(tree.contains("file bin/sh  sha256-"), "{tree}");
}
