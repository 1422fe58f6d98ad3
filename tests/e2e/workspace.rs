//! Workspaces: packages below a root kiln.toml, addressed as
//! `services/api:image`, built by name or pattern from anywhere inside,
//! queried (deps, rdeps, affected since a git revision) and drawn.

use std::process::Command;

use crate::support::{Project, busybox};

/// A workspace: `libs/base` (an image of busybox), `services/api` (an
/// image that takes libs/base's as an input), `services/web` (on its own).
fn workspace() -> Project {
    let p = Project::new();
    p.write(
        "kiln.toml",
        "[workspace]\nmembers = [\"services/*\", \"libs/*\"]\n",
    );
    for pkg in ["libs/base", "services/api", "services/web"] {
        std::fs::create_dir_all(p.path(&format!("{pkg}/bin"))).unwrap();
        std::fs::copy(busybox(), p.path(&format!("{pkg}/bin/app"))).unwrap();
        let dep = if pkg == "services/api" {
            "inputs.base = { target = \"libs/base:image\" }\n"
        } else {
            ""
        };
        p.write(
            &format!("{pkg}/kiln.toml"),
            &format!(
                "[target.image]\nrecipe = \"oci-image\"\ninputs.bin = {{ path = \"bin\" }}\n{dep}params.name = \"{}\"\nparams.tag = \"t\"\nparams.contents = [{{ from = \"bin\", path = \"app\", dest = \"/bin/app\" }}]\nparams.entrypoint = [\"/bin/app\"]\n",
                pkg.replace('/', "-")
            ),
        );
    }
    p
}

/// `kiln args…` run in `rel`, a directory of the project.
fn kiln_in(p: &Project, rel: &str, args: &[&str]) -> crate::support::Run {
    let mut c = p.command(args);
    c.current_dir(p.path(rel));
    crate::support::run(c.output().expect("running kiln"))
}

#[test]
fn a_workspace_builds_by_address_and_pattern_from_anywhere_inside() {
    let p = workspace();
    // One target by address: its dependency in another package comes along.
    let out = p.kiln(&["build", "services/api:image"]).ok();
    assert!(
        out.stdout.starts_with("services/api:image: result -> "),
        "{}",
        out.stdout
    );
    assert!(p.path("result/image.tar").is_file());
    let stored = p.store_entries();
    assert!(stored.iter().any(|e| e.ends_with("-image")), "{stored:?}");
    // Inside the package, a bare name and `./...` mean its own targets.
    let here = kiln_in(&p, "services/api/bin", &["build", "--no-link", "image"]).ok();
    assert!(
        here.stdout.starts_with("services/api:image: ") && here.stdout.contains("(cached)"),
        "{}",
        here.stdout
    );
    let below = kiln_in(&p, "services", &["build", "--no-link", "./..."]).ok();
    let built: Vec<&str> = below
        .stdout
        .lines()
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    assert_eq!(built, ["services/api:image", "services/web:image"]);
    // From a package's subdirectory, `kiln build` builds that package.
    let sub = kiln_in(&p, "services/web/bin", &["build", "--no-link"]).ok();
    assert!(
        sub.stdout.starts_with("services/web:image: ") && sub.stdout.lines().count() == 1,
        "{}",
        sub.stdout
    );
    // Several targets: one link each, named by address.
    p.kiln(&["build", "//..."]).ok();
    for link in [
        "result-libs+base+image",
        "result-services+api+image",
        "result-services+web+image",
    ] {
        assert!(p.path(link).join("image.tar").is_file(), "{link}");
    }
    // What names nothing says what would.
    kiln_in(&p, "services/api", &["build", "nope"])
        .fails_with("no target 'services/api:nope' (package 'services/api' declares: image)");
    p.kiln(&["build", "services/gone:image"])
        .fails_with("no package 'services/gone' in the workspace");
    p.kiln(&["build", "../x:image"]).fails_with("no '..'");
    // Outputs are named by address in audit too.
    let audit = p.kiln(&["audit", "services/api:image"]).ok().stdout;
    assert!(audit.contains("libs/base:image"), "{audit}");
}

#[test]
fn a_package_reads_only_its_own_directory() {
    let p = workspace();
    let api = std::fs::read_to_string(p.path("services/api/kiln.toml")).unwrap();
    p.write(
        "services/api/kiln.toml",
        &api.replace(
            "inputs.bin = { path = \"bin\" }",
            "inputs.bin = { path = \"../web/bin\" }",
        ),
    );
    let mut c = p.command(&["build", "services/api:image"]);
    c.env_remove("KILN_ALLOW_PATH");
    let out = crate::support::run(c.output().unwrap());
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("services/api/kiln.toml:")
            && out.stderr.contains("outside")
            && out.stderr.contains("--allow-path"),
        "{}",
        out.stderr
    );
}

#[test]
fn queries_answer_from_kiln_toml_alone() {
    let p = workspace();
    let deps = p
        .kiln(&["query", "deps", "services/api:image", "--json"])
        .ok()
        .stdout;
    assert_eq!(
        serde_json::from_str::<Vec<String>>(&deps).unwrap(),
        ["libs/base:image"]
    );
    let rdeps = kiln_in(&p, "libs/base", &["query", "rdeps", ":image"])
        .ok()
        .stdout;
    assert_eq!(rdeps, "services/api:image\n");
    assert_eq!(
        p.store_entries(),
        Vec::<String>::new(),
        "a query built something"
    );
    let dot = p.kiln(&["graph", "--format", "dot"]).ok().stdout;
    assert!(
        dot.contains("\"libs/base:image\" -> \"services/api:image\""),
        "{dot}"
    );
    // Graphviz accepts it.
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running dot (apt-get install graphviz; .ci/deps does)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let svg = child.wait_with_output().unwrap();
    assert!(svg.status.success() && String::from_utf8_lossy(&svg.stdout).contains("<svg"));
    let mermaid = p
        .kiln(&["graph", "services/api:image", "--format", "mermaid"])
        .ok()
        .stdout;
    assert!(
        mermaid.starts_with("graph LR\n") && mermaid.contains("-->|base|"),
        "{mermaid}"
    );
}

fn git(p: &Project, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(p.dir.path())
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kiln query affected --since HEAD`, as addresses.
fn affected(p: &Project) -> Vec<String> {
    let out = p
        .kiln(&["query", "affected", "--since", "HEAD", "--json"])
        .ok()
        .stdout;
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    v.iter()
        .map(|a| a["target"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn affected_since_names_exactly_the_targets_a_change_touches() {
    let p = workspace();
    git(&p, &["init", "-q"]);
    git(&p, &["add", "-A"]);
    git(&p, &["commit", "-qm", "one"]);
    assert!(affected(&p).is_empty());
    // A source file of a library: it and what uses it.
    std::fs::write(p.path("libs/base/bin/app"), b"changed").unwrap();
    assert_eq!(affected(&p), ["libs/base:image", "services/api:image"]);
    git(&p, &["commit", "-qam", "two"]);
    // A new, untracked file in a service's input: that service only.
    p.write("services/web/bin/extra", "new");
    assert_eq!(affected(&p), ["services/web:image"]);
    git(&p, &["add", "-A"]);
    git(&p, &["commit", "-qm", "three"]);
    // An edit to one target's params in kiln.toml: that target; a comment
    // changes nothing; a file outside every input changes nothing.
    let web = std::fs::read_to_string(p.path("services/web/kiln.toml")).unwrap();
    p.write("services/web/kiln.toml", &format!("# a comment\n{web}"));
    p.write("README.md", "docs");
    assert!(affected(&p).is_empty(), "{:?}", affected(&p));
    p.write(
        "services/web/kiln.toml",
        &web.replace("params.tag = \"t\"", "params.tag = \"u\""),
    );
    let out = p
        .kiln(&["query", "affected", "--since", "HEAD"])
        .ok()
        .stdout;
    assert_eq!(out, "services/web:image\tservices/web/kiln.toml changed\n");
    p.kiln(&["query", "affected", "--since", "no-such-rev"])
        .fails_with("'no-such-rev' is not a commit");
}

/// A root target whose source is the whole tree (`path = "."`) does not
/// take the packages' kiln.toml files as source: editing a member's
/// settings rebuilds that member's targets, not the root's.
#[test]
fn a_members_kiln_toml_is_not_the_source_of_a_root_path_input() {
    let p = workspace();
    let root = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    p.write(
        "kiln.toml",
        &format!(
            "{root}\n[target.all]\nrecipe = \"oci-image\"\ninputs.tree = {{ path = \".\" }}\nparams.name = \"all\"\nparams.tag = \"t\"\nparams.contents = [{{ from = \"tree\", path = \"services/web/bin/app\", dest = \"/bin/app\" }}]\nparams.entrypoint = [\"/bin/app\"]\n"
        ),
    );
    git(&p, &["init", "-q"]);
    git(&p, &["add", "-A"]);
    git(&p, &["commit", "-qm", "one"]);
    p.kiln(&["build", "--no-link", "//:all"]).ok();
    let web = std::fs::read_to_string(p.path("services/web/kiln.toml")).unwrap();
    p.write(
        "services/web/kiln.toml",
        &web.replace("params.tag = \"t\"", "params.tag = \"u\""),
    );
    let again = p.kiln(&["build", "--no-link", "//:all"]).ok();
    assert!(again.stdout.contains("(cached)"), "{}", again.stdout);
    assert_eq!(affected(&p), ["services/web:image"]);
    // A file of the tree is still the root's source.
    p.write("services/web/bin/extra", "new");
    let rebuilt = p.kiln(&["build", "--no-link", "//:all"]).ok();
    assert!(!rebuilt.stdout.contains("(cached)"), "{}", rebuilt.stdout);
    assert_eq!(affected(&p), ["//:all", "services/web:image"]);
}

/// --check, cache push, gc and --watch work on addresses as on plain
/// names: a package's build is checked bit for bit, pushed with what it
/// depends on and substituted elsewhere, its `result-PKG+…+NAME` links
/// root what gc keeps, and a watch of one package rebuilds for its own
/// files and settings but not for another package's source.
#[test]
fn check_push_gc_and_watch_work_by_address() {
    let p = workspace();
    let checked = p
        .kiln(&["build", "--no-link", "--check", "services/api:image"])
        .ok();
    assert!(
        checked.stdout.starts_with("services/api:image: ")
            && checked
                .stdout
                .ends_with(" (checked: a second build is bit-identical)\n"),
        "{}",
        checked.stdout
    );
    p.kiln(&["build", "//..."]).ok();
    // Pushed by address with its closure; another checkout substitutes it.
    let (secret, public) = crate::binary_cache::keygen(&p, "ws-1");
    let cache = tempfile::tempdir().unwrap();
    let url = format!("file://{}", cache.path().display());
    let pushed = p
        .kiln(&[
            "cache",
            "push",
            "services/api:image",
            "--to",
            &url,
            "--signing-key",
            &secret,
        ])
        .ok();
    assert!(pushed.stderr.contains("pushed "), "{}", pushed.stderr);
    let other = workspace();
    let pulled = other
        .kiln(&[
            "build",
            "--json",
            "--substituter",
            &url,
            "--trusted-public-key",
            &public,
            "services/api:image",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&pulled.stdout).unwrap();
    assert_eq!(v[0]["substituted_from"], url.as_str(), "{}", pulled.stdout);
    let root = p.dir.path().to_str().unwrap().to_string();
    let before = p.store_entries();
    p.kiln(&["gc", "--root", &root]).ok();
    assert_eq!(p.store_entries(), before, "gc deleted what a link roots");
    for link in [
        "result-libs+base+image",
        "result-services+api+image",
        "result-services+web+image",
    ] {
        std::fs::remove_file(p.path(link)).unwrap();
    }
    p.kiln(&["gc", "--root", &root]).ok();
    assert!(p.store_entries().is_empty(), "{:?}", p.store_entries());

    let mut watch = p
        .command(&["build", "--watch", "services/web:image"])
        .current_dir(p.path("services/web"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let link = p.path("services/web/result");
    let target_of = || std::fs::read_link(&link).ok();
    let changed = |from: &Option<std::path::PathBuf>, what: &str| {
        let start = std::time::Instant::now();
        while target_of() == *from || target_of().is_none() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "no rebuild after {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        target_of()
    };
    let first = changed(&None, "starting");
    // Another package's source: nothing to rebuild.
    std::fs::write(p.path("libs/base/bin/app"), b"other").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(target_of(), first);
    // Its own source, then its own settings: a new image each time.
    p.write("services/web/bin/extra", "new");
    let second = changed(&first, "an edit to its source");
    let web = std::fs::read_to_string(p.path("services/web/kiln.toml")).unwrap();
    p.write(
        "services/web/kiln.toml",
        &web.replace("params.tag = \"t\"", "params.tag = \"u\""),
    );
    changed(&second, "an edit to its kiln.toml");
    watch.kill().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut watch.stderr.take().unwrap(), &mut stderr).unwrap();
    watch.wait().unwrap();
    assert_eq!(stderr.matches("] built in ").count(), 3, "{stderr}");
}

/// A workspace above that does not name a project's directory is none of
/// its business, broken or not; one that names it and is broken says so.
#[test]
fn a_broken_workspace_above_stops_only_its_own_members() {
    let p = Project::new();
    p.write("kiln.toml", "[workspace]\nmembers = [\"gone/*\"]\n");
    std::fs::create_dir_all(p.path("solo/bin")).unwrap();
    std::fs::copy(busybox(), p.path("solo/bin/app")).unwrap();
    p.write(
        "solo/kiln.toml",
        "[target.image]\nrecipe = \"oci-image\"\ninputs.bin = { path = \"bin\" }\nparams.name = \"solo\"\nparams.tag = \"t\"\nparams.contents = [{ from = \"bin\", path = \"app\", dest = \"/bin/app\" }]\nparams.entrypoint = [\"/bin/app\"]\n",
    );
    let solo = kiln_in(&p, "solo", &["build", "--no-link"]).ok();
    assert!(solo.stdout.starts_with("image: "), "{}", solo.stdout);
    p.write(
        "kiln.toml",
        "[workspace]\nmembers = [\"solo\", \"gone/*\"]\n",
    );
    kiln_in(&p, "solo", &["build", "--no-link"])
        .fails_with("member glob 'gone/*' matches no directory with a kiln.toml");
}

#[test]
fn bad_workspaces_are_named_errors() {
    let p = workspace();
    p.write(
        "libs/base/kiln.toml",
        &std::fs::read_to_string(p.path("libs/base/kiln.toml"))
            .unwrap()
            .replace(
                "inputs.bin",
                "inputs.api = { target = \"services/api:image\" }\ninputs.bin",
            ),
    );
    p.kiln(&["build", "services/api:image"]).fails_with(
        "targets form a cycle: libs/base:image -> services/api:image -> libs/base:image",
    );
    p.write(
        "kiln.toml",
        "[workspace]\nmembers = [\"services/*\", \"tools/*\"]\n",
    );
    p.kiln(&["build"])
        .fails_with("kiln.toml:1:1: member glob 'tools/*' matches no directory with a kiln.toml");
}

#[test]
fn kiln_init_inside_a_workspace_adds_the_new_package_to_its_members() {
    let p = workspace();
    p.write(
        "tools/hello/go.mod",
        "module example.com/hello\n\ngo 1.22\n",
    );
    p.write("tools/hello/main.go", "package main\n\nfunc main() {}\n");
    let out = kiln_in(&p, "tools/hello", &["init"]).ok();
    assert!(
        out.stderr
            .contains("added \"tools/hello\" to [workspace] members"),
        "{}",
        out.stderr
    );
    let root = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    assert_eq!(
        root,
        "[workspace]\nmembers = [\"services/*\", \"libs/*\", \"tools/hello\"]\n"
    );
    // It is a package now, addressed from the root; a second package
    // under a glob is not added twice.
    let deps = p.kiln(&["query", "deps", "tools/hello:image"]).ok().stdout;
    assert_eq!(deps, "tools/hello:hello\n");
    p.write("services/cli/go.mod", "module example.com/cli\n\ngo 1.22\n");
    p.write("services/cli/main.go", "package main\n\nfunc main() {}\n");
    let out = kiln_in(&p, "services/cli", &["init"]).ok();
    assert!(
        out.stderr
            .contains("a package of the workspace: its targets are services/cli:cli"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(p.path("kiln.toml")).unwrap(), root);
}
