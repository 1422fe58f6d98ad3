use super::*;
use std::fs;
use std::sync::Mutex;

/// A workspace in a temporary directory: `files` are (path, text).
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = d.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    d
}

fn open(d: &tempfile::TempDir) -> Result<Workspace, ManifestError> {
    let file = d.path().join("kiln.toml");
    Workspace::open(&file, &fs::read_to_string(&file).unwrap())
}

const ROOT: &str =
    "[workspace]\nmembers = [\"services/*\", \"libs/*\"]\nexclude = [\"services/old\"]\n";

fn target(recipe_input: &str) -> String {
    format!("recipe = \"oci-image\"\n{recipe_input}\n")
}

fn sample() -> tempfile::TempDir {
    tree(&[
        ("kiln.toml", ROOT),
        (
            "services/api/kiln.toml",
            &format!(
                "[target.image]\n{}",
                target("inputs.lib = { target = \"libs/proto:gen\" }")
            ),
        ),
        (
            "services/web/kiln.toml",
            &format!(
                "[target.image]\n{}",
                target("inputs.src = { path = \".\" }")
            ),
        ),
        ("services/old/kiln.toml", "this is not toml ["),
        ("services/docs/README", "no kiln.toml: not a package"),
        (
            "libs/proto/kiln.toml",
            &format!(
                "[target.gen]\n{}",
                target("inputs.src = { path = \"src\" }")
            ),
        ),
    ])
}

#[test]
fn members_are_globbed_and_excluded() {
    let d = sample();
    let w = open(&d).unwrap();
    let pkgs: Vec<&str> = w.packages().collect();
    assert_eq!(pkgs, ["libs/proto", "services/api", "services/web"]);
    let (pkg, path) = w.package_of(&d.path().join("services/api/src"));
    assert_eq!(
        (pkg.as_str(), path.as_str()),
        ("services/api", "services/api/src")
    );
    assert_eq!(w.package_of(&d.path().join("services")).0, "");
    assert_eq!(
        w.packages_below("services").into_iter().collect::<Vec<_>>(),
        ["services/api", "services/web"]
    );
}

#[test]
fn loading_one_package_reads_only_it_and_its_dependencies() {
    let d = sample();
    let w = open(&d).unwrap();
    let read = Mutex::new(Vec::new());
    let m = w
        .load(
            &Packages::Some(BTreeSet::from(["services/api".to_string()])),
            |p| {
                read.lock().unwrap().push(p.to_path_buf());
                fs::read_to_string(p)
            },
        )
        .unwrap();
    let names: Vec<&str> = m.targets.keys().map(String::as_str).collect();
    assert_eq!(names, ["libs/proto:gen", "services/api:image"]);
    assert_eq!(read.into_inner().unwrap().len(), 2, "services/web was read");
    let gen_ = &m.targets["libs/proto:gen"];
    assert_eq!(
        (gen_.local.as_str(), gen_.package.as_str()),
        ("gen", "libs/proto")
    );
    assert_eq!(gen_.dir, d.path().join("libs/proto"));
    let all = w.load(&Packages::All, |p| fs::read_to_string(p)).unwrap();
    assert_eq!(all.targets.len(), 3);
    assert_eq!(all.files.len(), 4);
}

fn open_err(files: &[(&str, &str)]) -> String {
    let d = tree(files);
    match open(&d) {
        Err(e) => e.to_string(),
        Ok(w) => w
            .load(&Packages::All, |p| fs::read_to_string(p))
            .map(|_| "loaded".to_string())
            .unwrap_or_else(|e| e.to_string()),
    }
}

#[test]
fn bad_workspaces_are_named_errors_at_their_place() {
    let e = open_err(&[("kiln.toml", "[workspace]\nmembers = [\"nothing/*\"]\n")]);
    assert!(
        e.contains("kiln.toml:1:1") && e.contains("'nothing/*' matches no directory"),
        "{e}"
    );
    let e = open_err(&[("kiln.toml", "[workspace]\nmembers = [\"../elsewhere\"]\n")]);
    assert!(
        e.contains("not a directory glob below the workspace root"),
        "{e}"
    );
    let e = open_err(&[
        ("kiln.toml", "[workspace]\nmembers = [\"a\"]\n"),
        ("a/x", ""),
    ]);
    assert!(e.contains("member 'a' has no kiln.toml"), "{e}");
    // A cycle across packages, with its path.
    let e = open_err(&[
        ("kiln.toml", "[workspace]\nmembers = [\"a\", \"b\"]\n"),
        (
            "a/kiln.toml",
            &format!("[target.x]\n{}", target("inputs.y = { target = \"b:y\" }")),
        ),
        (
            "b/kiln.toml",
            &format!("[target.y]\n{}", target("inputs.x = { target = \"a:x\" }")),
        ),
    ]);
    assert!(
        e.contains("targets form a cycle: ") && e.contains("a:x -> b:y -> a:x"),
        "{e}"
    );
    // A reference to a package that is not a member.
    let e = open_err(&[
        ("kiln.toml", "[workspace]\nmembers = [\"a\"]\n"),
        (
            "a/kiln.toml",
            &format!("[target.x]\n{}", target("inputs.y = { target = \"zz:y\" }")),
        ),
    ]);
    assert!(
        e.contains("a/kiln.toml:3:") && e.contains("no package 'zz'"),
        "{e}"
    );
    // A target the package does not declare: the ones it does are listed.
    let e = open_err(&[
        ("kiln.toml", "[workspace]\nmembers = [\"a\", \"b\"]\n"),
        (
            "a/kiln.toml",
            &format!(
                "[target.x]\n{}",
                target("inputs.y = { target = \"b:nope\" }")
            ),
        ),
        ("b/kiln.toml", &format!("[target.y]\n{}", target(""))),
    ]);
    assert!(e.contains("package 'b' declares: y"), "{e}");
    // Workspaces do not nest; [cache] is the root's.
    let e = open_err(&[
        ("kiln.toml", "[workspace]\nmembers = [\"a\"]\n"),
        ("a/kiln.toml", "[workspace]\nmembers = [\"b\"]\n"),
    ]);
    assert!(
        e.contains("a/kiln.toml:1:1") && e.contains("do not nest"),
        "{e}"
    );
    let e = open_err(&[
        ("kiln.toml", "[workspace]\nmembers = [\"a\"]\n"),
        ("a/kiln.toml", "[cache]\nsubstituters = []\n"),
    ]);
    assert!(e.contains("[cache] belongs in the workspace root"), "{e}");
    // An address that is not one.
    let e = open_err(&[
        ("kiln.toml", "[workspace]\nmembers = [\"a\"]\n"),
        (
            "a/kiln.toml",
            &format!(
                "[target.x]\n{}",
                target("inputs.y = { target = \"../up:y\" }")
            ),
        ),
    ]);
    assert!(
        e.contains("a/kiln.toml:3:") && e.contains("package path '../up'"),
        "{e}"
    );
}

#[test]
fn a_member_may_not_leave_the_root_nor_be_claimed_twice() {
    let outside = tree(&[("kiln.toml", "[target.x]\nrecipe = \"go\"\n")]);
    let d = tree(&[("kiln.toml", "[workspace]\nmembers = [\"*\"]\n")]);
    std::os::unix::fs::symlink(outside.path(), d.path().join("away")).unwrap();
    let e = open(&d).unwrap_err().to_string();
    assert!(e.contains("outside the workspace root"), "{e}");

    let d = tree(&[
        ("kiln.toml", "[workspace]\nmembers = [\"*\"]\n"),
        ("real/kiln.toml", "[target.x]\nrecipe = \"go\"\n"),
    ]);
    std::os::unix::fs::symlink(d.path().join("real"), d.path().join("alias")).unwrap();
    let e = open(&d).unwrap_err().to_string();
    assert!(
        e.contains("packages 'alias' and 'real' are one directory"),
        "{e}"
    );
}

#[test]
fn a_member_is_added_to_the_members_array_only() {
    let text = "# the root\n[workspace]\nmembers = [\n  \"a/*\", # comment kept? no: the array is rewritten\n]\nexclude = []\n";
    let new = add_member(text, "tools/x").unwrap();
    assert_eq!(
        new,
        "# the root\n[workspace]\nmembers = [\"a/*\", \"tools/x\"]\nexclude = []\n"
    );
    assert!(add_member(text, "../up").is_err());
    assert!(add_member("[target.x]\nrecipe = \"go\"\n", "a").is_err());
}

#[test]
fn globs_never_descend_through_links() {
    // A loop of links and a link to / under a glob: neither is walked.
    let d = tree(&[
        (
            "kiln.toml",
            "[workspace]\nmembers = [\"*/*/*/*\", \"pkgs/*\"]\n",
        ),
        ("pkgs/a/kiln.toml", "[target.x]\nrecipe = \"go\"\n"),
    ]);
    for i in 0..8 {
        std::os::unix::fs::symlink(".", d.path().join(format!("l{i}"))).unwrap();
    }
    std::os::unix::fs::symlink("/", d.path().join("pkgs/root")).unwrap();
    let e = open(&d).unwrap_err().to_string();
    // `*/*/*/*` matches nothing (no real directories that deep); the link
    // to / is the last segment of `pkgs/*`: checked, and outside the root.
    assert!(
        e.contains("'*/*/*/*' matches no directory") || e.contains("outside the workspace root"),
        "{e}"
    );
    let d2 = tree(&[
        ("kiln.toml", "[workspace]\nmembers = [\"pkgs/*\"]\n"),
        ("pkgs/a/kiln.toml", "[target.x]\nrecipe = \"go\"\n"),
    ]);
    std::os::unix::fs::symlink("/", d2.path().join("x")).unwrap();
    let w = open(&d2).unwrap();
    assert_eq!(w.packages().collect::<Vec<_>>(), ["pkgs/a"]);
}

#[test]
fn a_members_own_kiln_lock_is_refused() {
    let d = sample();
    fs::write(d.path().join("services/web/kiln.lock"), "version = 2\n").unwrap();
    let w = open(&d).unwrap();
    let e = w
        .load(&Packages::All, |p| fs::read_to_string(p))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has its own") && e.contains("one kiln.lock at the root"),
        "{e}"
    );
}
