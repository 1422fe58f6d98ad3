//! The headline job: Go module → static binary → image that podman loads and runs.

use std::process::Command;

use crate::support::{
    Dockerd, Project, go_input, greet_proxy, hello_project, podman, record_of, run,
};

#[test]
fn hello_builds_a_static_binary_and_an_image_that_runs() {
    let p = hello_project();
    p.kiln(&["build", "hello", "image"]).ok();
    let out = run(Command::new(p.path("result-hello/bin/hello"))
        .output()
        .unwrap())
    .ok();
    assert_eq!(
        out.stdout,
        "Hello from a static Go binary, built by kiln!\n"
    );
    let info =
        std::fs::read_to_string(p.path("result-hello/share/kiln/go/hello.buildinfo")).unwrap();
    assert!(
        info.contains("path\texample.com/hello") && info.contains("CGO_ENABLED=0"),
        "{info}"
    );

    let image = p.path("result-image/image.tar");
    let oci = p.path("result-image/oci");
    for reference in [
        format!("docker-archive:{}", image.display()),
        format!("oci:{}:kiln", oci.display()),
    ] {
        let r = run(Command::new("skopeo")
            .args(["inspect", &reference])
            .output()
            .expect("skopeo"))
        .ok();
        assert!(
            r.stdout.contains("\"Created\": \"1970-01-01T00:00:01Z\""),
            "{}",
            r.stdout
        );
    }
    let r = p.kiln(&["image", "inspect", image.to_str().unwrap()]).ok();
    for needle in [
        "image     hello:kiln",
        "entrypoint [\"/bin/hello\"]",
        "-rwxr-xr-x",
        "/bin/hello",
        "drwxrwxrwt",
        "/tmp",
    ] {
        assert!(
            r.stdout.contains(needle),
            "inspect lacks {needle:?}:\n{}",
            r.stdout
        );
    }
    let r = p
        .kiln(&["image", "inspect", "--json", oci.to_str().unwrap()])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["repo_tags"][0], "kiln");
    assert_eq!(v["created"], "1970-01-01T00:00:01Z");
    assert!(
        v["layers"][0]["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "/bin/hello")
    );

    podman(&["load", "-i", image.to_str().unwrap()]).ok();
    let r = podman(&["run", "--rm", "hello:kiln"]).ok();
    assert_eq!(r.stdout, "Hello from a static Go binary, built by kiln!\n");

    // The seed's own commands, with Docker itself (Debian's docker.io, on
    // the test's own socket): `docker load < result/image.tar`, `docker
    // run`, and `docker image inspect` agreeing with `kiln image inspect`.
    let docker = Dockerd::start();
    let loaded = docker.load(&image).ok();
    assert!(
        loaded.stdout.contains("Loaded image: hello:kiln"),
        "{}",
        loaded.stdout
    );
    let ran = docker
        .docker(&["run", "--rm", "--network", "none", "hello:kiln"])
        .ok();
    assert_eq!(
        ran.stdout,
        "Hello from a static Go binary, built by kiln!\n"
    );

    let kiln: serde_json::Value = serde_json::from_str(
        &p.kiln(&["image", "inspect", "--json", oci.to_str().unwrap()])
            .ok()
            .stdout,
    )
    .unwrap();
    let docker_view: serde_json::Value = serde_json::from_str(
        &docker
            .docker(&["image", "inspect", "hello:kiln"])
            .ok()
            .stdout,
    )
    .unwrap();
    let d = &docker_view[0];
    assert_eq!(
        d["Config"]["Entrypoint"], kiln["config"]["Entrypoint"],
        "{d}\n{kiln}"
    );
    assert_eq!(d["Architecture"], "amd64");
    assert_eq!(d["Created"], "1970-01-01T00:00:01Z");
    let docker_layers: Vec<&str> = d["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let kiln_layers: Vec<&str> = kiln["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(docker_layers, kiln_layers);
}

#[test]
fn two_checkouts_give_bit_identical_binaries_and_images() {
    let a = hello_project();
    let b = hello_project();
    a.kiln(&["build", "hello", "image"]).ok();
    b.kiln(&["build", "hello", "image"]).ok();
    for f in ["result-hello/bin/hello", "result-image/image.tar"] {
        assert_eq!(
            std::fs::read(a.path(f)).unwrap(),
            std::fs::read(b.path(f)).unwrap(),
            "{f} differs"
        );
    }
    // Their build records are identical too, but for the timing section.
    let records = |p: &Project| -> Vec<(String, serde_json::Value)> {
        let mut v: Vec<_> = std::fs::read_dir(p.home.path().join("records"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let mut r: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
                assert!(r["timing"]["build_ms"].is_u64(), "{r}");
                r.as_object_mut().unwrap().remove("timing");
                (e.file_name().to_string_lossy().into_owned(), r)
            })
            .collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    let (ra, rb) = (records(&a), records(&b));
    assert_eq!(ra.len(), 2);
    assert_eq!(ra, rb);
}

#[test]
fn only_the_selected_main_packages_are_built() {
    let p = Project::new();
    p.write("go.mod", "module example.com/multi\n\ngo 1.22\n");
    p.write(
        "lib/lib.go",
        "package lib\n\nfunc Name() string { return \"lib\" }\n",
    );
    p.write("cmd/a/main.go", "package main\n\nimport (\"fmt\"; \"example.com/multi/lib\")\n\nfunc main() { fmt.Println(\"a uses\", lib.Name()) }\n");
    p.write("cmd/b/main.go", "package main\n\nfunc main() {}\n");
    p.write(
        "testdata/c/main.go",
        "package main\n\nfunc main() { broken }\n",
    );
    p.write("kiln.toml", &format!("[target.a]\nrecipe = \"go\"\ninputs.src = {{ path = \".\" }}\n{}params = {{ packages = [\"./cmd/a\"] }}\n", go_input()));
    p.kiln(&["build", "a"]).ok();
    let bins: Vec<_> = std::fs::read_dir(p.path("result/bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(bins, ["a"]);
    let out = run(Command::new(p.path("result/bin/a")).output().unwrap()).ok();
    assert_eq!(out.stdout, "a uses lib\n");
}

/// `params.version` is stamped the way goreleaser and ko users do it by
/// hand (`-X main.version=…`), recorded beside the buildinfo, and shown
/// as the image's version label, the SBOM's and the audit's; a version
/// that would split ldflags is refused before any tool runs.
#[test]
fn a_version_param_is_stamped_into_the_binary_and_shown_by_image_sbom_and_audit() {
    let p = Project::new();
    p.write("go.mod", "module example.com/v\n\ngo 1.22\n");
    p.write(
        "main.go",
        "package main\n\nimport \"fmt\"\n\nvar version = \"dev\"\n\nfunc main() { fmt.Println(\"v is\", version) }\n",
    );
    let toml = |version: &str| {
        format!(
            "[target.v]\nrecipe = \"go\"\ninputs.src = {{ path = \".\" }}\n{}params.check = false\nparams.version = {version:?}\n\n[target.image]\nrecipe = \"oci-image\"\ninputs.v = {{ target = \"v\" }}\nparams.name = \"v\"\nparams.contents = [{{ from = \"v\", path = \"bin/v\", dest = \"/bin/v\" }}]\nparams.entrypoint = [\"/bin/v\"]\n",
            go_input()
        )
    };
    p.write("kiln.toml", &toml("1 -X main.evil=1"));
    let r = p.kiln(&["build", "v"]).fails_with("params.version");
    assert!(r.stderr.contains("is not a version"), "{}", r.stderr);
    assert!(!r.stderr.contains("go build"), "a tool ran: {}", r.stderr);

    p.write("kiln.toml", &toml("v1.4.2"));
    p.kiln(&["build", "v", "image"]).ok();
    let out = run(Command::new(p.path("result-v/bin/v")).output().unwrap()).ok();
    assert_eq!(out.stdout, "v is v1.4.2\n");
    assert_eq!(
        std::fs::read_to_string(p.path("result-v/share/kiln/go/version")).unwrap(),
        "v1.4.2\n"
    );
    let inspect: serde_json::Value = serde_json::from_str(
        &p.kiln(&["image", "inspect", "--json", "result-image/image.tar"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        inspect["config"]["Labels"]["org.opencontainers.image.version"], "v1.4.2",
        "{inspect}"
    );
    let tree = p.kiln(&["audit", "v"]).ok().stdout;
    assert!(tree.contains("go-binary bin/v  go1.27.3  v1.4.2"), "{tree}");
    let json: serde_json::Value =
        serde_json::from_str(&p.kiln(&["audit", "--json", "v"]).ok().stdout).unwrap();
    let bin = json[0]["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "go-binary")
        .unwrap();
    assert_eq!(bin["version"], "v1.4.2");
    assert_eq!(bin["children"][0]["version"], "(devel)");
    assert_eq!(bin["children"][0]["source"], serde_json::Value::Null);
    p.kiln(&["audit", "v", "--sbom", "s.json"]).ok();
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path("s.json")).unwrap()).unwrap();
    let binary = sbom["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bin/v")
        .expect("the binary is in the SBOM");
    assert_eq!(binary["versionInfo"], "v1.4.2");
}

#[test]
fn a_failing_go_test_fails_the_build_and_shows_its_output() {
    let p = Project::new();
    p.write("go.mod", "module example.com/t\n\ngo 1.22\n");
    p.write("main.go", "package main\n\nfunc main() {}\n");
    p.write("main_test.go", "package main\n\nimport \"testing\"\n\nfunc TestNope(t *testing.T) { t.Fatal(\"the answer is not 42\") }\n");
    p.write(
        "kiln.toml",
        &format!(
            "[target.t]\nrecipe = \"go\"\ninputs.src = {{ path = \".\" }}\n{}",
            go_input()
        ),
    );
    let r = p
        .kiln(&["build"])
        .fails_with("go test failed for module example.com/t");
    assert!(r.stderr.contains("the answer is not 42"), "{}", r.stderr);
}

#[test]
fn go_test_cannot_write_the_build_cache_later_builds_trust() {
    // A test (project code) tries to plant a file in every build cache it
    // can find; the kept build cache is written only by the compiler.
    let p = Project::new();
    p.write("go.mod", "module example.com/t\n\ngo 1.22\n");
    p.write("main.go", "package main\n\nfunc main() {}\n");
    p.write(
        "main_test.go",
        "package main\n\nimport (\n\t\"os\"\n\t\"testing\"\n)\n\nfunc TestPlant(t *testing.T) {\n\tfor _, d := range []string{\"/cache/go-build\", os.Getenv(\"GOCACHE\")} {\n\t\tif err := os.WriteFile(d+\"/planted-by-test\", []byte(d), 0o644); err == nil {\n\t\t\tt.Log(\"planted in \", d)\n\t\t}\n\t}\n}\n",
    );
    p.write(
        "kiln.toml",
        &format!(
            "[target.t]\nrecipe = \"go\"\ninputs.src = {{ path = \".\" }}\n{}",
            go_input()
        ),
    );
    p.kiln(&["build"]).ok();
    let mut planted = Vec::new();
    let mut stack = vec![p.home.path().join("caches")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_name() == "planted-by-test" {
                planted.push(std::fs::read_to_string(e.path()).unwrap());
            }
        }
    }
    // The test's own cache may hold it; the build's must not.
    assert!(
        !planted.iter().any(|d| d.contains("go-build")),
        "a test wrote the kept build cache: {planted:?}"
    );
    assert!(
        planted.iter().any(|d| d.contains("go-test")),
        "the test did not even reach its own cache, so this proves nothing: {planted:?}"
    );
}

#[test]
fn an_image_whose_entrypoint_is_missing_fails_at_build_time() {
    let p = Project::new();
    p.write("files/readme.txt", "no binary here\n");
    p.write(
        "kiln.toml",
        "[target.img]\nrecipe = \"oci-image\"\ninputs.files = { path = \"files\" }\n[target.img.params]\nname = \"x\"\ncontents = [{ from = \"files\", dest = \"/data\" }]\nentrypoint = [\"/bin/app\"]\n",
    );
    p.kiln(&["build"])
        .fails_with("the entrypoint /bin/app is not in the image");
    p.write(
        "kiln.toml",
        "[target.img]\nrecipe = \"oci-image\"\ninputs.files = { path = \"files\" }\n[target.img.params]\nname = \"x\"\ncontents = [{ from = \"files\", path = \"readme.txt\", dest = \"/bin/app\" }]\nentrypoint = [\"/bin/app\"]\n",
    );
    p.kiln(&["build"])
        .fails_with("the entrypoint /bin/app is not executable");
}

#[test]
fn a_dynamically_linked_entrypoint_without_its_loader_is_refused() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("files")).unwrap();
    std::fs::copy("/bin/true", p.path("files/true")).unwrap();
    p.write(
        "kiln.toml",
        "[target.img]\nrecipe = \"oci-image\"\ninputs.files = { path = \"files\" }\n[target.img.params]\nname = \"x\"\ncontents = [{ from = \"files\", path = \"true\", dest = \"/bin/true\" }]\nentrypoint = [\"/bin/true\"]\n",
    );
    p.kiln(&["build"])
        .fails_with("is dynamically linked and needs its interpreter /lib64/ld-linux-x86-64.so.2");
}

/// A module depending on example.com/greet, served from a GOPROXY directory
/// the test writes, with `vendor_hash` = `hash`.
fn module_with_dependency(hash: Option<&str>) -> Project {
    let p = Project::new();
    p.write(
        "app/go.mod",
        "module example.com/app\n\ngo 1.22\n\nrequire example.com/greet v1.0.0\n",
    );
    p.write("app/go.sum", &greet_proxy(&p, "proxy"));
    p.write("app/main.go", "package main\n\nimport (\"fmt\"; \"example.com/greet\")\n\nfunc main() { fmt.Println(greet.Hello()) }\n");
    let vendor_hash = hash
        .map(|h| format!(", vendor_hash = \"{h}\""))
        .unwrap_or_default();
    p.write(
        "kiln.toml",
        &format!(
            "[target.app]\nrecipe = \"go\"\ninputs.src = {{ path = \"app\" }}\ninputs.proxy = {{ path = \"proxy\" }}\n{}params = {{ goproxy = \"file:///inputs/proxy\", check = false{vendor_hash} }}\n",
            go_input()
        ),
    );
    p
}

/// The vendor_hash of [`module_with_dependency`], learnt as a user would
/// (once per test run: it is the same every time).
fn learn_vendor_hash() -> String {
    static ONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ONCE.get_or_init(learn_vendor_hash_once).clone()
}

fn learn_vendor_hash_once() -> String {
    // Without vendor_hash the download gets no network, and the error says
    // how to learn the hash.
    let p = module_with_dependency(None);
    p.kiln(&["build"])
        .fails_with("network denied: params.vendor_hash is not set for target 'app'")
        .fails_with("kiln build --fetch-unpinned app");
    // --fetch-unpinned runs the step and prints the line to paste: what
    // was asked, so it succeeds.
    let r = p.kiln(&["build", "--fetch-unpinned"]).ok();
    assert!(
        r.stderr
            .contains("the fixed-output step of target 'app' produced sha256-"),
        "{}",
        r.stderr
    );
    r.stdout
        .split("params.vendor_hash = \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string()
}

#[test]
fn an_edit_reuses_the_module_download_and_a_go_sum_change_fetches_again() {
    let hash = learn_vendor_hash();
    let p = module_with_dependency(Some(&hash));
    p.kiln(&["build"]).ok();
    // The record and the audit say what happened, in a reader's words.
    let download = |rec: &serde_json::Value| -> serde_json::Value {
        rec["execs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| !e["fixed_output"].is_null())
            .cloned()
            .unwrap_or_else(|| panic!("no fixed-output step in {rec}"))
    };
    let first = download(&record_of(&p, "result"));
    assert_eq!(first["fixed_output"]["outcome"], "fetched", "{first}");
    assert_eq!(first["fixed_output"]["pin"], "params.vendor_hash");
    assert_eq!(first["network"], true);
    assert_eq!(first["exit_code"], 0);
    let tree = p.kiln(&["audit", "app"]).ok().stdout;
    assert!(
        tree.contains("download params.vendor_hash") && tree.contains("(fetched)"),
        "{tree}"
    );
    assert!(tree.contains(&hash), "{tree}");
    // Provenance names the download (a dependency pinned by hash) and each proxy file with its input.
    p.kiln(&["audit", "app", "--provenance", "prov.json"]).ok();
    let prov: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path("prov.json")).unwrap()).unwrap();
    let deps = prov["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = deps.iter().filter_map(|d| d["name"].as_str()).collect();
    assert!(
        names.contains(&"app/proxy/example.com/greet/@v/v1.0.0.zip"),
        "{names:?}"
    );
    assert!(
        deps.iter()
            .any(|d| d["uri"] == "kiln:fixed-output/params.vendor_hash"),
        "{names:?}"
    );
    // Take the proxy away: a download from now on fails.
    std::fs::remove_dir_all(p.path("proxy/example.com")).unwrap();
    // An edit to a .go file: the download is reused, no fixed-output step runs.
    p.write("app/main.go", "package main\n\nimport (\"fmt\"; \"example.com/greet\")\n\nfunc main() { fmt.Println(greet.Hello(), \"again\") }\n");
    p.kiln(&["build"]).ok();
    let out = run(Command::new(p.path("result/bin/app")).output().unwrap()).ok();
    assert_eq!(out.stdout, "hello from a dependency again\n");
    let entry = std::fs::canonicalize(p.path("result")).unwrap();
    let name = entry.file_name().unwrap().to_string_lossy().into_owned();
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.home.path().join(format!("records/{name}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        rec["timing"]["fetches_reused"][0], "params.vendor_hash",
        "{rec}"
    );
    // Reused: no tool ran, no network was used, no exit code.
    let reused = download(&rec);
    assert_eq!(reused["fixed_output"]["outcome"], "reused", "{reused}");
    assert_eq!(reused["network"], false);
    assert!(reused["exit_code"].is_null(), "{reused}");
    let tree = p.kiln(&["audit", "app"]).ok().stdout;
    assert!(tree.contains("(reused from the store)"), "{tree}");

    // A go.sum change runs the step again: here it fails, the proxy is gone.
    let sum = std::fs::read_to_string(p.path("app/go.sum")).unwrap();
    p.write("app/go.sum", &format!("{sum}\n"));
    p.kiln(&["build"])
        .fails_with("downloading the module's dependencies");
}

/// `kiln lock` pins the module download in kiln.lock as it pins url
/// inputs: no hash to learn and paste. The next build reuses what it
/// fetched; a stale pin names `kiln lock --update`, which re-pins it.
#[test]
fn kiln_lock_pins_the_module_download_and_lock_update_re_pins_it() {
    let p = module_with_dependency(None);
    let r = p.kiln(&["lock"]).ok();
    let want = learn_vendor_hash();
    assert!(
        r.stderr.contains(&format!(
            "pinned params.vendor_hash of target 'app': {want}"
        )),
        "{}",
        r.stderr
    );
    let lock = std::fs::read_to_string(p.path("kiln.lock")).unwrap();
    assert!(
        lock.contains(&format!("\"params.vendor_hash\" = \"{want}\"")),
        "{lock}"
    );
    // Locking again changes nothing and fetches nothing.
    p.kiln(&["lock"]).ok();
    assert_eq!(std::fs::read_to_string(p.path("kiln.lock")).unwrap(), lock);
    // The build uses the pin and what kiln lock fetched: the proxy can go.
    std::fs::remove_dir_all(p.path("proxy/example.com")).unwrap();
    p.kiln(&["build"]).ok();
    let out = run(Command::new(p.path("result/bin/app")).output().unwrap()).ok();
    assert_eq!(out.stdout, "hello from a dependency\n");
    let rec = record_of(&p, "result");
    assert_eq!(rec["params"]["vendor_hash"], want.as_str(), "{rec}");

    // A stale pin (what a go.sum change leaves): the fix is kiln lock --update.
    greet_proxy(&p, "proxy");
    let stale = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    p.write("kiln.lock", &lock.replace(&want, stale));
    p.kiln(&["build"])
        .fails_with(&format!("but params.vendor_hash is {stale}"))
        .fails_with("pinned in kiln.lock")
        .fails_with("run `kiln lock --update params.vendor_hash`");
    p.kiln(&["lock", "--update", "params.vendor_hash"]).ok();
    assert_eq!(std::fs::read_to_string(p.path("kiln.lock")).unwrap(), lock);
    p.kiln(&["build"]).ok();
}

/// With no Go installed, the pinned one tidies go.sum: `kiln run-tool go
/// -- mod tidy` in the module's directory, through the user's GOPROXY.
#[test]
fn run_tool_runs_the_pinned_go_to_tidy_go_sum() {
    let p = module_with_dependency(Some(&learn_vendor_hash()));
    let sum = std::fs::read_to_string(p.path("app/go.sum")).unwrap();
    p.write("app/go.sum", "");
    p.kiln(&["build"]).fails_with("run `go mod tidy`");
    let r = p
        .command(&["run-tool", "go", "--", "mod", "tidy"])
        .current_dir(p.path("app"))
        .env("GOPROXY", format!("file://{}", p.path("proxy").display()))
        .env("GOSUMDB", "off")
        .output()
        .unwrap();
    let r = run(r).ok();
    assert!(r.stderr.contains("with network"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(p.path("app/go.sum")).unwrap(), sum);
    p.kiln(&["build"]).ok();
}

/// Go's raw complaints about go.sum and go.mod (it cannot write them: the
/// source is read-only) come with the fix: `go mod tidy`.
#[test]
fn an_incomplete_go_sum_or_go_mod_says_run_go_mod_tidy() {
    // go.sum lacks the dependency's lines: the download step says so.
    let p = module_with_dependency(Some(&learn_vendor_hash()));
    p.write("app/go.sum", "");
    let r = p.kiln(&["build"]).fails_with("go.sum is incomplete");
    assert!(r.stderr.contains("run `go mod tidy`"), "{}", r.stderr);
    // An import no requirement provides: go.mod needs updating.
    let p = Project::new();
    p.write("go.mod", "module example.com/t\n\ngo 1.22\n");
    p.write(
        "main.go",
        "package main\n\nimport \"example.com/nowhere\"\n\nfunc main() { nowhere.Go() }\n",
    );
    p.write(
        "kiln.toml",
        &format!(
            "[target.t]\nrecipe = \"go\"\ninputs.src = {{ path = \".\" }}\n{}params.check = false\n",
            go_input()
        ),
    );
    let r = p.kiln(&["build"]).fails_with("run `go mod tidy`");
    assert!(
        r.stderr
            .contains("cannot find module providing package example.com/nowhere"),
        "Go's own words are kept: {}",
        r.stderr
    );
}

#[test]
fn an_external_dependency_builds_through_vendor_hash() {
    let hash = learn_vendor_hash();
    // With it, the module builds and runs.
    let p = module_with_dependency(Some(&hash));
    p.kiln(&["build"]).ok();
    let out = run(Command::new(p.path("result/bin/app")).output().unwrap()).ok();
    assert_eq!(out.stdout, "hello from a dependency\n");
    let info = std::fs::read_to_string(p.path("result/share/kiln/go/app.buildinfo")).unwrap();
    assert!(
        info.contains("dep\texample.com/greet\tv1.0.0\th1:"),
        "{info}"
    );
    // A wrong vendor_hash fails with specified/got.
    let p = module_with_dependency(Some("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="));
    p.kiln(&["build"]).fails_with(&format!("produced {hash}, but params.vendor_hash is sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="));
}

/// A module with a main package and a library package with a test; the
/// target's extra params are `params`.
fn edit_loop_project(params: &str) -> Project {
    let p = Project::new();
    p.write("m/go.mod", "module example.com/el\n\ngo 1.22\n");
    p.write(
        "m/main.go",
        "package main\n\nimport (\"fmt\"; \"example.com/el/greet\")\n\nfunc main() { fmt.Println(greet.Hello(\"world\")) }\n",
    );
    p.write(
        "m/greet/greet.go",
        "package greet\n\n// Hello greets name.\nfunc Hello(name string) string { return \"hello, \" + name }\n",
    );
    p.write(
        "m/greet/greet_test.go",
        "package greet\n\nimport \"testing\"\n\nfunc TestHello(t *testing.T) {\n\tif Hello(\"x\") != \"hello, x\" {\n\t\tt.Fatal(Hello(\"x\"))\n\t}\n}\n",
    );
    p.write(
        "kiln.toml",
        &format!(
            "[target.el]\nrecipe = \"go\"\ninputs.src = {{ path = \"m\" }}\n{}params = {{ {params} }}\n",
            go_input()
        ),
    );
    p
}

#[test]
fn an_edit_rebuilds_with_the_warm_go_cache_and_check_proves_it_changed_nothing() {
    let p = edit_loop_project("");
    p.kiln(&["build"]).ok();
    // The build's cache (go test has its own, /cache/go-test).
    let build_cache = |rec: &serde_json::Value| -> serde_json::Value {
        rec["timing"]["caches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == "/cache/go-build")
            .cloned()
            .unwrap_or_else(|| panic!("no /cache/go-build in {rec}"))
    };
    let cold = record_of(&p, "result");
    assert_eq!(build_cache(&cold)["files_before"], 0, "{cold}");
    // A one-line edit: the build reuses what the first one compiled.
    p.write(
        "m/main.go",
        "package main\n\nimport (\"fmt\"; \"example.com/el/greet\")\n\nfunc main() { fmt.Println(greet.Hello(\"edit\")) }\n",
    );
    p.kiln(&["build"]).ok();
    let out = run(Command::new(p.path("result/bin/el")).output().unwrap()).ok();
    assert_eq!(out.stdout, "hello, edit\n");
    let warm = record_of(&p, "result");
    let files = build_cache(&warm)["files_before"].as_u64().unwrap();
    assert!(
        files > 100,
        "the cache should hold the first build's work: {warm}"
    );
    assert_eq!(build_cache(&warm)["kind"], "persistent");
    // --check rebuilds with an empty cache and finds the same bits.
    p.write(
        "m/main.go",
        "package main\n\nimport (\"fmt\"; \"example.com/el/greet\")\n\nfunc main() { fmt.Println(greet.Hello(\"check\")) }\n",
    );
    let r = p.kiln(&["build", "--check"]).ok();
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(
        said.contains("checked: a second build is bit-identical"),
        "{said}"
    );
}

/// The standard library is compiled once per machine, in a sandbox that
/// sees only the pinned toolchain: a second project's first build gets it
/// (a copy in its own cache) and compiles only its own packages.
#[test]
fn a_second_project_gets_the_standard_library_the_first_compiled() {
    let a = edit_loop_project("");
    a.kiln(&["build"]).ok();
    let cache = |rec: &serde_json::Value, path: &str| -> serde_json::Value {
        rec["timing"]["caches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("no {path} in {rec}"))
    };
    let first = record_of(&a, "result");
    for path in ["/cache/go-build", "/cache/go-test"] {
        let seed = &cache(&first, path)["seed"];
        assert!(
            seed["items"].as_u64().unwrap() > 10,
            "fmt, testing and what they import: {first}"
        );
    }
    // The test step's seed ran first (compiling fmt, testing…); the
    // build's asked for the same and found it.
    assert_eq!(
        cache(&first, "/cache/go-test")["seed"]["outcome"],
        "computed"
    );
    assert_eq!(
        cache(&first, "/cache/go-build")["seed"]["outcome"],
        "reused"
    );

    // Another project on the machine, importing part of the same packages.
    let b = Project::new();
    b.write("m/go.mod", "module example.com/other\n\ngo 1.22\n");
    b.write(
        "m/main.go",
        "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"other\") }\n",
    );
    b.write(
        "kiln.toml",
        &format!(
            "[target.o]\nrecipe = \"go\"\ninputs.src = {{ path = \"m\" }}\n{}",
            go_input()
        ),
    );
    let caches_before: Vec<_> = std::fs::read_dir(a.home.path().join("caches"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    run(b
        .command(&["build"])
        .env("KILN_HOME", a.home.path())
        .output()
        .unwrap())
    .ok();
    let out = run(Command::new(b.path("result/bin/other")).output().unwrap()).ok();
    assert_eq!(out.stdout, "other\n");
    let name = std::fs::canonicalize(b.path("result")).unwrap();
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(a.home.path().join(format!(
            "records/{}.json",
            name.file_name().unwrap().to_string_lossy()
        )))
        .unwrap(),
    )
    .unwrap();
    let build = cache(&rec, "/cache/go-build");
    assert_eq!(build["files_before"], 0, "b's own cache was new: {rec}");
    assert_eq!(build["seed"]["outcome"], "reused", "{rec}");
    let copied = build["seed"]["files_copied"].as_u64().unwrap();
    assert!(copied > 100, "{rec}");
    // b's go commands compiled only its own package: its cache holds the
    // seed's files and a handful more (main's compile, the link, buildinfo).
    let new_cache: Vec<_> = std::fs::read_dir(a.home.path().join("caches"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !caches_before.contains(p))
        .collect();
    assert_eq!(new_cache.len(), 1, "{new_cache:?}");
    // Its go-build cache holds the shared result and a handful more files
    // (main's compile and the link); its go-test cache, larger, also holds
    // the facts `go test`'s vet computes for each import.
    let seed_files = cache(&rec, "/cache/go-test")["seed"]["files_copied"]
        .as_u64()
        .unwrap();
    assert!(seed_files >= copied, "{rec}");
    let mut sizes: Vec<u64> = std::fs::read_dir(&new_cache[0])
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|d| files_under(&d))
        .collect();
    sizes.sort();
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    // Compiling the standard-library packages itself would have written
    // two files (action and output) for each of them; what it did write is
    // go list's index of the module and main's compile and link.
    let own = sizes[0] - seed_files;
    let items = build["seed"]["items"].as_u64().unwrap();
    assert!(
        own < 2 * items,
        "b's build wrote {own} cache files itself for {items} packages: {sizes:?} {rec}"
    );
}

/// Regular files under `dir`.
fn files_under(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += files_under(&e.path());
        } else if e.file_type().unwrap().is_file() {
            n += 1;
        }
    }
    n
}

#[test]
fn cache_false_builds_without_the_kept_cache() {
    let p = edit_loop_project("cache = false");
    p.kiln(&["build"]).ok();
    let rec = record_of(&p, "result");
    assert!(rec["timing"].get("caches").is_none(), "{rec}");
    assert!(
        !p.home.path().join("caches").exists()
            || std::fs::read_dir(p.home.path().join("caches"))
                .unwrap()
                .count()
                == 0,
        "no tool cache is kept"
    );
    let out = run(Command::new(p.path("result/bin/el")).output().unwrap()).ok();
    assert_eq!(out.stdout, "hello, world\n");
}

/// A `file:///inputs/NAME` goproxy that names no declared input is refused
/// before anything runs, by name (it would work only while an earlier
/// download is reused).
#[test]
fn a_goproxy_naming_no_input_is_refused_by_name_before_anything_runs() {
    let p = module_with_dependency(Some("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="));
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    p.write(
        "kiln.toml",
        &toml.replace("file:///inputs/proxy", "file:///inputs/proxies"),
    );
    p.kiln(&["build"])
        .fails_with("params.goproxy names the input 'proxies' (file:///inputs/proxies), which this target does not declare");
}
