use super::*;

fn node(kind: &'static str, name: &str, hash: &str, children: Vec<Node>) -> Node {
    Node {
        kind,
        name: name.into(),
        source: String::new(),
        hash: hash.into(),
        hash_of: None,
        entry: None,
        sandbox: None,
        tools: Vec::new(),
        children,
    }
}

#[test]
fn diff_names_changed_added_and_removed_nodes_by_path() {
    let a = node(
        "target",
        "hello",
        "out1",
        vec![node(
            "path",
            "src",
            "s1",
            vec![
                node("file", "hello.go", "h1", vec![]),
                node("file", "old.go", "o", vec![]),
            ],
        )],
    );
    let b = node(
        "target",
        "hello",
        "out2",
        vec![node(
            "path",
            "src",
            "s2",
            vec![
                node("file", "hello.go", "h2", vec![]),
                node("file", "new.go", "n", vec![]),
            ],
        )],
    );
    let d = diff(&a, &b);
    let summary: Vec<(&str, &str)> = d.iter().map(|d| (d.change, d.path.as_str())).collect();
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
        "target",
        "hello",
        "sha256-x",
        vec![
            node("recipe", "go", "r", vec![]),
            node(
                "path",
                "src",
                "s",
                vec![node("file", "hello.go", "h", vec![])],
            ),
        ],
    );
    assert_eq!(
        render(&t),
        "target hello  sha256-x\n├── recipe go  r\n└── path src  s\n    └── file hello.go  h\n"
    );
}
