//! docs/writing-recipes.md is true: its code is the example crate the build
//! compiled, and its kiln.toml builds with it.

use crate::support::{Project, busybox, fixture, record_of};

const DOC: &str = include_str!("../../docs/writing-recipes.md");
const EXAMPLE: &str = include_str!("../../examples/my-recipe/src/lib.rs");
const EXAMPLE_TEST: &str = include_str!("../../examples/my-recipe/tests/recipe.rs");

/// The first fenced block of `lang` that contains `marker`.
fn block<'a>(lang: &str, marker: &str) -> &'a str {
    let fence = format!("```{lang}\n");
    DOC.split(fence.as_str())
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or(""))
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("docs/writing-recipes.md has no ```{lang} block with {marker:?}"))
}

#[test]
fn the_doc_shows_the_example_crate_verbatim() {
    assert_eq!(block("rust", "kiln_sdk::recipe!"), EXAMPLE);
    // And its test, which `cargo test --workspace` runs under kiln.
    assert_eq!(block("rust", "kiln_recipe_test::this_crate"), EXAMPLE_TEST);
}

#[test]
fn the_docs_kiln_toml_builds_with_the_example_recipe() {
    let p = Project::new();
    let toml = block("toml", "[target.greetings]").replace(
        "target/wasm32-wasip2/release/my_recipe.wasm",
        &fixture("my-recipe"),
    );
    p.write("kiln.toml", &toml);
    p.write("src/lib.rs", "// the recipe's own source, as in the doc\n");
    std::fs::create_dir_all(p.path("tools/bin")).unwrap();
    std::fs::copy(busybox(), p.path("tools/bin/wc")).unwrap();
    let r = p.kiln(&["build", "greetings"]).ok();
    assert!(
        r.stderr
            .contains("[greetings] wrote 1 greetings (1 /out/greetings.txt)"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(p.path("result/greetings.txt")).unwrap(),
        "Hello, lib.rs!\n"
    );
    // A local recipe is the user's source: nothing is pinned for it.
    assert!(!p.path("kiln.lock").exists());
}

/// Editing a local recipe and building again just works, like editing a
/// path input: no `kiln lock`, and the record names the new recipe hash.
#[test]
fn an_edited_local_recipe_rebuilds_without_kiln_lock() {
    let p = Project::new();
    std::fs::copy(fixture("hostile"), p.path("r.wasm")).unwrap();
    p.write("src/a.txt", "one\n");
    p.write(
        "kiln.toml",
        "[target.t]\nrecipe = { path = \"r.wasm\" }\nparams = { attack = \"noop\" }\ninputs.src = { path = \"src\" }\n",
    );
    let recipe_hash = |p: &Project| {
        record_of(p, "result")["recipe"]["hash"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    p.kiln(&["build"]).ok();
    let first = recipe_hash(&p);
    // An edit: a custom section appended to the component (as a rebuild
    // with other debug info would change it).
    let mut wasm = std::fs::read(p.path("r.wasm")).unwrap();
    wasm.extend_from_slice(&[0, 5, 4, b'e', b'd', b'i', b't']);
    std::fs::write(p.path("r.wasm"), &wasm).unwrap();
    p.kiln(&["build", "--locked"]).ok();
    let second = recipe_hash(&p);
    assert_ne!(first, second, "the record names the edited recipe's hash");
    assert!(second.starts_with("sha256-"), "{second}");
    assert!(!p.path("kiln.lock").exists());
    // A hash written in kiln.toml is still checked.
    p.write(
        "kiln.toml",
        &format!(
            "[target.t]\nrecipe = {{ path = \"r.wasm\", hash = \"{first}\" }}\nparams = {{ attack = \"noop\" }}\ninputs.src = {{ path = \"src\" }}\n"
        ),
    );
    p.kiln(&["build"]).fails_with("recipe");
}
