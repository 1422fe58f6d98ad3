use super::*;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    parse_manifest(Path::new("/p/kiln.toml"), text)
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

const FULL: &str = r#"
[target.hello]
recipe = "go"
params = { packages = ["."], cgo = false }

[target.hello.inputs]
src = { path = "." }
go = { url = "https://example.org/go.tar.gz", unpack = true, hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" }

[target.image]
recipe = { path = "recipes/img.wasm", hash = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" }
inputs.bin = { target = "hello" }
"#;

#[test]
fn a_full_file_parses() {
    let m = parse(FULL).unwrap();
    let hello = &m.targets["hello"];
    assert_eq!(hello.recipe, RecipeRef::Standard("go".into()));
    assert_eq!(hello.params["packages"][0], ".");
    assert_eq!(hello.params["cgo"], false);
    match &hello.inputs["src"].source {
        Source::Path { path, exclude } => {
            assert_eq!(path, Path::new("/p/."));
            assert!(exclude.contains(&"/result-*".to_string()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(hello.inputs["go"].hash, Some(Sha256Hash::of_bytes(b"")));
    assert_eq!(hello.inputs["go"].hash_at.as_ref().unwrap().line, 8);
    let image = &m.targets["image"];
    assert!(
        matches!(&image.recipe, RecipeRef::Wasm { path, hash: Some(_), .. } if path == Path::new("/p/recipes/img.wasm"))
    );
    let order: Vec<_> = m
        .build_order(&["image".into()])
        .unwrap()
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(order, ["hello", "image"]);
}

#[test]
fn unknown_keys_name_the_line_and_the_valid_keys() {
    let e = err("[target.a]\nrecipe = \"go\"\nparms = {}\n");
    assert!(e.starts_with("/p/kiln.toml:3:1:"), "{e}");
    assert!(e.contains("parms") && e.contains("params"), "{e}");
}

#[test]
fn wrong_types_are_located() {
    let e = err("[target.a]\nrecipe = 3\n");
    assert!(e.starts_with("/p/kiln.toml:2:10:"), "{e}");
    assert!(e.contains("standard recipe's name"), "{e}");
}

#[test]
fn bad_hashes_point_at_the_hash() {
    let e = err("[target.a]\nrecipe = \"go\"\ninputs.src = { path = \".\", hash = \"md5-abc\" }\n");
    assert!(e.starts_with("/p/kiln.toml:3:35:"), "{e}");
    assert!(e.contains("input 'src'") && e.contains("sha256"), "{e}");
}

#[test]
fn inputs_need_exactly_one_source() {
    let e =
        err("[target.a]\nrecipe = \"go\"\ninputs.src = { path = \".\", url = \"https://x\" }\n");
    assert!(e.contains("exactly one of path"), "{e}");
    let e = err(
        "[target.a]\nrecipe = \"go\"\ninputs.src = { hash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\" }\n",
    );
    assert!(e.contains("exactly one of path"), "{e}");
}

#[test]
fn missing_targets_and_cycles_are_named() {
    let e = err("[target.a]\nrecipe = \"go\"\ninputs.x = { target = \"nope\" }\n");
    assert!(
        e.contains("no target 'nope'") && e.contains("targets: a"),
        "{e}"
    );
    let e = err(
        "[target.a]\nrecipe = \"go\"\ninputs.x = { target = \"b\" }\n[target.b]\nrecipe = \"go\"\ninputs.y = { target = \"a\" }\n",
    );
    assert!(e.contains("cycle: a -> b -> a"), "{e}");
}

#[test]
fn syntax_errors_are_located() {
    let e = err("[target.a]\nrecipe = \"go\ninputs = {}\n");
    assert!(e.starts_with("/p/kiln.toml:2:"), "{e}");
}

#[test]
fn unknown_target_in_build_order_lists_targets() {
    let m = parse(FULL).unwrap();
    let e = m.build_order(&["nope".into()]).unwrap_err();
    assert_eq!((e.name.as_str(), e.known.len()), ("nope", 2));
    let e = e.to_string();
    assert!(
        e.contains("no target 'nope'") && e.contains("hello, image"),
        "{e}"
    );
}

#[test]
fn a_cache_table_is_read_as_a_suggestion_and_checked() {
    let m = parse(&format!(
        "[cache]\nsubstituters = [\"https://cache.example.org\"]\ntrusted-public-keys = [\"c-1:AAAA\"]\n{FULL}"
    ))
    .unwrap();
    assert_eq!(m.cache.substituters, ["https://cache.example.org"]);
    assert_eq!(m.cache.trusted_public_keys, ["c-1:AAAA"]);
    assert_eq!(m.cache.at.as_ref().map(|l| l.line), Some(1));
    assert_eq!(parse(FULL).unwrap().cache, ProjectCaches::default());
    // A project cannot set the user's own settings (push, signing, consent).
    let e = err("[cache]\naccept-project-caches = true\n");
    assert!(e.contains("accept-project-caches"), "{e}");
}

#[test]
fn exclude_adds_to_the_defaults_and_default_excludes_false_drops_them() {
    let excludes = |input: &str| {
        let m = parse(&format!(
            "[target.t]\nrecipe = \"go\"\ninputs.src = {input}\n"
        ))
        .unwrap();
        match &m.targets["t"].inputs["src"].source {
            Source::Path { exclude, .. } => exclude.clone(),
            other => panic!("{other:?}"),
        }
    };
    let added = excludes(r#"{ path = ".", exclude = ["/proxy", ".git"] }"#);
    for p in [".git", "/result", "/result-*", "/kiln.lock", "/proxy"] {
        assert!(added.contains(&p.to_string()), "{p} in {added:?}");
    }
    assert_eq!(added.iter().filter(|p| *p == ".git").count(), 1);
    assert_eq!(
        excludes(r#"{ path = ".", exclude = ["/proxy"], default_excludes = false }"#),
        vec!["/proxy".to_string()]
    );
    let e = err(
        "[target.t]\nrecipe = \"go\"\ninputs.u = { url = \"https://x/y\", default_excludes = false }\n",
    );
    assert!(e.contains("only apply to path inputs"), "{e}");
}

#[test]
fn a_malformed_pin_in_params_is_found_at_load_with_its_place() {
    let e = err("[target.t]\nrecipe = \"go\"\nparams.vendor_hash = \"sha256-notahash\"\n");
    assert!(e.starts_with("/p/kiln.toml:3:22:"), "{e}");
    assert!(e.contains("params.vendor_hash"), "{e}");
    // The go recipe's pin, whatever it holds.
    let e = err("[target.t]\nrecipe = \"go\"\nparams.vendor_hash = \"notahash\"\n");
    assert!(
        e.starts_with("/p/kiln.toml:3:22:") && e.contains("vendor_hash"),
        "{e}"
    );
    let e = err("[target.t]\nrecipe = \"go\"\n[target.t.params]\ndeps_hash = \"sha256:zz\"\n");
    assert!(e.starts_with("/p/kiln.toml:4:13:"), "{e}");
    // Other params are the recipe's business.
    parse("[target.t]\nrecipe = \"go\"\nparams.name = \"sha256-whatever\"\n").unwrap();
    parse("[target.t]\nrecipe = \"go\"\nparams.commit_hash = \"3f2a9c\"\nparams.n_hash = 3\n")
        .unwrap();
    parse("[target.t]\nrecipe = \"go\"\nparams.vendor_hash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"\n").unwrap();
}

#[test]
fn extending_an_inline_table_is_explained_with_the_fix() {
    let e = err(
        "[target.t]\nrecipe = \"go\"\nparams = { check = false }\nparams.platforms = [\"linux/arm64\"]\n",
    );
    assert!(e.contains("is complete where it stands"), "{e}");
    assert!(e.contains("[target.NAME.params]"), "{e}");
}

#[test]
fn a_path_input_leaves_out_the_kiln_toml_of_each_package_below_it() {
    let mut m = parse("[target.t]\nrecipe = \"go\"\ninputs.src = { path = \".\" }\n").unwrap();
    let Source::Path { path, exclude } = m.targets["t"].inputs["src"].source.clone() else {
        panic!("a path input");
    };
    // Outside a workspace: the input's own patterns, untouched.
    assert_eq!(&*m.source_excludes(&path, &exclude), &exclude[..]);
    m.package_dirs = [
        "/p/services/web",
        "/p/services/web-x",
        "/p/libs/a",
        "/q/other",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let extra = |input: &str, exclude: &[String]| -> Vec<String> {
        m.source_excludes(Path::new(input), exclude)[exclude.len()..].to_vec()
    };
    assert_eq!(
        extra("/p/.", &exclude),
        [
            "/libs/a/kiln.toml",
            "/services/web/kiln.toml",
            "/services/web-x/kiln.toml"
        ]
    );
    assert_eq!(
        extra("/p/libs/../services/web", &exclude),
        Vec::<String>::new()
    );
    assert_eq!(
        extra("/p/services", &exclude),
        ["/web/kiln.toml", "/web-x/kiln.toml"]
    );
    // Without the default excludes, a kiln.toml is source like any file.
    assert!(extra("/p", &[".git".to_string()]).is_empty());
}

#[test]
fn a_workspace_may_name_a_directory_its_globs_match_or_when_it_cannot_be_read() {
    let ws = "[workspace]\nmembers = [\"services/*\", \"libs/a\"]\nexclude = [\"services/old\"]\n";
    assert!(workspace_may_name(ws, "services/api"));
    assert!(workspace_may_name(ws, "libs/a"));
    assert!(!workspace_may_name(ws, "services/old"));
    assert!(!workspace_may_name(ws, "services/api/sub"));
    assert!(!workspace_may_name(ws, "solo"));
    // Members that are not a list of strings: it may; opening it says why not.
    assert!(workspace_may_name(
        "[workspace]\nmembers = \"solo\"\n",
        "other"
    ));
}
