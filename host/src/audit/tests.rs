use super::*;

fn node(kind: NodeKind, name: &str, hash: &str, children: Vec<Node>) -> Node {
    Node {
        kind,
        name: name.into(),
        source: String::new(),
        version: String::new(),
        hash: hash.into(),
        hash_of: None,
        entry: None,
        sandbox: None,
        tools: Vec::new(),
        outcome: None,
        executors: Vec::new(),
        children,
    }
}

#[test]
fn diff_names_changed_added_and_removed_nodes_by_path() {
    let a = node(
        NodeKind::Target,
        "hello",
        "out1",
        vec![node(
            NodeKind::Path,
            "src",
            "s1",
            vec![
                node(NodeKind::File, "hello.go", "h1", vec![]),
                node(NodeKind::File, "old.go", "o", vec![]),
            ],
        )],
    );
    let b = node(
        NodeKind::Target,
        "hello",
        "out2",
        vec![node(
            NodeKind::Path,
            "src",
            "s2",
            vec![
                node(NodeKind::File, "hello.go", "h2", vec![]),
                node(NodeKind::File, "new.go", "n", vec![]),
            ],
        )],
    );
    let d = diff(&a, &b);
    let summary: Vec<(&str, &str)> = d
        .iter()
        .map(|d| (d.change.as_str(), d.path.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("changed", "output"),
            ("changed", "path src"),
            ("changed", "path src > hello.go"),
            ("added", "path src > new.go"),
            ("removed", "path src > old.go"),
        ]
    );
    assert!(diff(&a, &a).is_empty());
    assert!(render_diff(&d).contains("changed  path src > hello.go  h1 → h2"));
}

#[test]
fn render_draws_a_tree() {
    let t = node(
        NodeKind::Target,
        "hello",
        "sha256-x",
        vec![
            node(NodeKind::Recipe, "go", "r", vec![]),
            node(
                NodeKind::Path,
                "src",
                "s",
                vec![node(NodeKind::File, "hello.go", "h", vec![])],
            ),
        ],
    );
    assert_eq!(
        render(&t),
        "target hello  sha256-x\n├── recipe go  r\n└── path src  s\n    └── file hello.go  h\n"
    );
}

#[test]
fn a_record_that_leads_back_to_itself_is_an_error_not_a_recursion() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    let entry = store.entries_dir().join("aaaa-loop");
    std::fs::create_dir(&entry).unwrap();
    let h = Sha256Hash([1; 32]);
    let rec = crate::record::BuildRecord {
        kiln_version: "0".into(),
        target: "loop".into(),
        key: kiln_core::key::BuildKey(h),
        source_date_epoch: 0,
        recipe: crate::record::RecipeRecord {
            name: "go".into(),
            hash: h,
            entry: None,
        },
        params: serde_json::Value::Null,
        inputs: vec![crate::record::InputRecord {
            name: "me".into(),
            kind: InputKind::Target,
            origin: "loop".into(),
            hash: h,
            hash_of: HashOf::Tree,
            entry: Some("aaaa-loop".into()),
            files: Vec::new(),
        }],
        tools: Vec::new(),
        execs: Vec::new(),
        sandbox: SandboxMode::Hermetic,
        hermetic: true,
        output_hash: h,
        log: Vec::new(),
        timing: crate::record::Timing {
            build_ms: 0,
            exec_ms: Vec::new(),
            caches: Vec::new(),
            fetches_reused: Vec::new(),
            remote: Vec::new(),
        },
    };
    crate::record::write(&store, &entry, &rec).unwrap();
    assert!(matches!(closure(&store, &entry), Err(AuditError::Cycle(_))));
}
