//! docs/writing-recipes.md is true: its code is the example crate the build
//! compiled, and its kiln.toml builds with it.

use crate::support::{Project, busybox, fixture};

const DOC: &str = include_str!("../../docs/writing-recipes.md");
const EXAMPLE: &str = include_str!("../../examples/my-recipe/src/lib.rs");

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
    // The first build pinned the recipe, in kiln.lock's recipe table.
    let lock = std::fs::read_to_string(p.path("kiln.lock")).unwrap();
    assert!(lock.contains("[recipe]\ngreetings = \"sha256-"), "{lock}");
}
