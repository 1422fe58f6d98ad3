use super::*;
use kiln_core::manifest::parse_manifest;

const TOML: &str = r#"
[target.proto]
recipe = "go"
inputs.src = { path = "proto", exclude = ["*.md"] }

[target.api]
recipe = "go"
inputs.src = { path = "api" }
inputs.proto = { target = "proto" }

[target.image]
recipe = "oci-image"
inputs.api = { target = "api" }

[target.web]
recipe = "go"
inputs.src = { path = "web" }
"#;

fn manifest(text: &str) -> Manifest {
    parse_manifest(Path::new("/p/kiln.toml"), text).unwrap()
}

fn change(files: &[&str]) -> Change {
    Change {
        files: files.iter().map(PathBuf::from).collect(),
        ..Change::default()
    }
}

fn names(a: Vec<Affected>) -> Vec<String> {
    a.into_iter().map(|a| a.target).collect()
}

#[test]
fn deps_and_rdeps_are_transitive() {
    let m = manifest(TOML);
    assert_eq!(deps(&m, &["image".into()]), ["proto", "api"]);
    assert_eq!(rdeps(&m, &["proto".into()]), ["api", "image"]);
    assert!(rdeps(&m, &["web".into()]).is_empty());
}

#[test]
fn a_changed_source_file_affects_its_target_and_dependents_only() {
    let m = manifest(TOML);
    let lock = Lockfile::default();
    let a = affected(&m, &lock, &change(&["proto/x.proto"]));
    assert_eq!(a[0].because, "depends on proto");
    assert_eq!(a[2].because, "input 'src': proto/x.proto changed");
    assert_eq!(names(a), ["api", "image", "proto"]);
    // Excluded files and files of no input affect nothing.
    assert!(
        affected(
            &m,
            &lock,
            &change(&["proto/README.md", "docs/a.txt", "protox"])
        )
        .is_empty()
    );
    assert_eq!(
        names(affected(&m, &lock, &change(&["web/main.go"]))),
        ["web"]
    );
}

#[test]
fn a_kiln_toml_edit_affects_only_the_targets_it_changes() {
    let m = manifest(&TOML.replace(
        "inputs.src = { path = \"web\" }",
        "inputs.src = { path = \"web\" }\nparams.x = 1",
    ));
    let mut c = change(&["kiln.toml"]);
    c.old_manifests
        .insert("kiln.toml".into(), Some(TOML.to_string()));
    assert_eq!(names(affected(&m, &Lockfile::default(), &c)), ["web"]);
    // A target that did not exist then is affected; an unreadable old file
    // affects everything in it.
    c.old_manifests.insert("kiln.toml".into(), None);
    assert_eq!(affected(&m, &Lockfile::default(), &c).len(), 4);
}

#[test]
fn a_pin_change_in_kiln_lock_affects_its_target() {
    let m = manifest(TOML);
    let mut lock = Lockfile::default();
    lock.set("web", "go", kiln_core::hash::Sha256Hash([1; 32]));
    let mut c = change(&["kiln.lock"]);
    c.old_lock = Some(None);
    assert_eq!(names(affected(&m, &lock, &c)), ["web"]);
}

#[test]
fn graphs_draw_every_edge() {
    let m = manifest(TOML);
    let dot = graph(&m, &["image".into()], GraphFormat::Dot, None);
    assert!(
        dot.contains("\"proto\" -> \"api\" [label=\"proto\"]"),
        "{dot}"
    );
    assert!(dot.contains("\"api\" -> \"image\""), "{dot}");
    assert!(!dot.contains("web"), "{dot}");
    let mermaid = graph(&m, &["image".into()], GraphFormat::Mermaid, None);
    assert!(mermaid.contains("t0 -->|proto| t1"), "{mermaid}");
    let json: serde_json::Value =
        serde_json::from_str(&graph(&m, &["api".into()], GraphFormat::Json, None)).unwrap();
    assert_eq!(json["targets"][1]["inputs"][0]["kind"], "target");
    assert_eq!(json["targets"][1]["inputs"][1]["from"], "api");
}
