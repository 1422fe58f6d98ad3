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
            remote: Vec::new(),
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

/// An entry the store holds under `name`, with its whole hash recorded.
fn stored(store: &Store, name: &str, text: &str) -> (String, Sha256Hash) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), text).unwrap();
    let filter = kiln_core::pathfilter::PathFilter::default();
    let hash = kiln_core::store::content_hash(src.path(), &filter).unwrap();
    let entry = store.add_path(src.path(), &filter, name, &hash).unwrap();
    (entry.file_name().unwrap().to_string_lossy().into(), hash)
}

fn input_of(name: &str, kind: InputKind, entry: &str, hash: Sha256Hash) -> InputRecord {
    InputRecord {
        hash,
        ..input(name, kind, Some(entry))
    }
}

#[test]
fn deps_name_every_kept_entry_and_nothing_outside_the_store() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    let (src, src_hash) = stored(&store, "src", "a");
    let (dl, dl_hash) = stored(&store, "dl", "b");
    let (lib, _) = stored(&store, "lib", "c");
    let (recipe, _) = stored(&store, "recipe", "d");
    std::fs::create_dir(home.path().join("secret")).unwrap();
    let rec = record_with(
        vec![
            input_of("src", InputKind::Path, &src, src_hash),
            input_of("dl", InputKind::Url, &dl, dl_hash),
            input("lib", InputKind::Target, Some(&lib)),
            input("gone", InputKind::Target, Some("e-gone")),
            input("evil", InputKind::Target, Some("../secret")),
            // An old record: a target input without a name has no entry.
            input("old", InputKind::Target, None),
        ],
        Some(&recipe),
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
            (DepRole::Recipe, recipe),
            (DepRole::Input(InputKind::Path), src),
            (DepRole::Input(InputKind::Url), dl),
            (DepRole::Input(InputKind::Target), lib),
        ]
    );
}

#[test]
fn a_path_or_url_input_names_only_an_entry_holding_its_hash() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    let (other, _) = stored(&store, "other", "not the input");
    let (dl, dl_hash) = stored(&store, "prefetched-as-something-else", "b");
    // A record claiming hash H for an entry holding other content: that
    // entry is not the input's; the one holding H is, whatever its name.
    let lying = input_of("dl", InputKind::Url, &other, dl_hash);
    assert_eq!(lying.entry_in(&store), Some(store.entries_dir().join(&dl)));
    let unknown = input_of("x", InputKind::Path, &other, Sha256Hash([9; 32]));
    assert_eq!(unknown.entry_in(&store), None);
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
