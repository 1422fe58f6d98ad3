use super::*;

fn record_with(inputs: Vec<InputRecord>, recipe_entry: Option<&str>) -> BuildRecord {
    let h = Sha256Hash([1; 32]);
    BuildRecord {
        kiln_version: "0".into(),
        target: "t".into(),
        key: kiln_core::key::BuildKey(h),
        source_date_epoch: 0,
        recipe: RecipeRecord {
            name: "r.wasm".into(),
            hash: h,
            entry: recipe_entry.map(str::to_string),
        },
        params: serde_json::Value::Null,
        inputs,
        tools: Vec::new(),
        execs: Vec::new(),
        sandbox: SandboxMode::Hermetic,
        hermetic: true,
        output_hash: h,
        log: Vec::new(),
        timing: Timing {
            build_ms: 0,
            exec_ms: Vec::new(),
            caches: Vec::new(),
            fetches_reused: Vec::new(),
        },
    }
}

fn input(name: &str, kind: InputKind, entry: Option<&str>) -> InputRecord {
    InputRecord {
        name: name.into(),
        kind,
        origin: String::new(),
        hash: Sha256Hash([2; 32]),
        hash_of: HashOf::Tree,
        entry: entry.map(str::to_string),
        files: Vec::new(),
    }
}

#[test]
fn deps_name_every_kept_entry_and_nothing_outside_the_store() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    for e in ["a-src", "b-dl", "c-lib", "d-recipe"] {
        std::fs::create_dir(store.entries_dir().join(e)).unwrap();
    }
    std::fs::create_dir(home.path().join("secret")).unwrap();
    let rec = record_with(
        vec![
            input("src", InputKind::Path, Some("a-src")),
            input("dl", InputKind::Url, Some("b-dl")),
            input("lib", InputKind::Target, Some("c-lib")),
            input("gone", InputKind::Target, Some("e-gone")),
            input("evil", InputKind::Target, Some("../secret")),
            // An old record: a target input without a name has no entry.
            input("old", InputKind::Target, None),
        ],
        Some("d-recipe"),
    );
    let deps: Vec<(DepRole, String)> = rec
        .deps(&store)
        .into_iter()
        .map(|d| {
            (
                d.role,
                d.entry.file_name().unwrap().to_string_lossy().into(),
            )
        })
        .collect();
    assert_eq!(
        deps,
        vec![
            (DepRole::Recipe, "d-recipe".to_string()),
            (DepRole::Input(InputKind::Path), "a-src".to_string()),
            (DepRole::Input(InputKind::Url), "b-dl".to_string()),
            (DepRole::Input(InputKind::Target), "c-lib".to_string()),
        ]
    );
}

#[test]
fn records_round_trip_and_old_ones_still_read() {
    let rec = record_with(vec![input("src", InputKind::Path, Some("a-src"))], None);
    let bytes = serde_json::to_vec(&rec).unwrap();
    assert_eq!(parse(&bytes).unwrap(), rec);
    // The log's source is written under its old key, `level`.
    let mut with_log = rec.clone();
    with_log.log.push(LogLine {
        source: LogSource::RecipeStdout,
        message: "hi".into(),
    });
    let json = serde_json::to_string(&with_log).unwrap();
    assert!(json.contains(r#""level":"recipe-stdout""#), "{json}");
    // Fields added since the first records default when absent.
    let mut old: serde_json::Value = serde_json::to_value(&rec).unwrap();
    old["recipe"].as_object_mut().unwrap().remove("entry");
    old["inputs"][0].as_object_mut().unwrap().remove("entry");
    let old = parse(&serde_json::to_vec(&old).unwrap()).unwrap();
    assert_eq!(old.recipe.entry, None);
    assert_eq!(old.inputs[0].entry, None);
}
