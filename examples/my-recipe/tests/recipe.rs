//! The recipe from docs/writing-recipes.md, run under kiln by its own
//! `cargo test` (kiln-recipe-test).

use kiln_recipe_test::this_crate;
use serde_json::json;

#[test]
fn greets_every_file_and_counts_them_with_wc() {
    let done = this_crate!()
        .run()
        .name("greetings")
        .input_tree("src", &[("a.txt", "x"), ("b.txt", "y")])
        .input_files("coreutils", &[("bin/wc", "/bin/busybox")])
        .params(json!({ "greeting": "Hello" }))
        .go();
    done.assert_ok();
    assert_eq!(done.read("greetings.txt"), "Hello, a.txt!\nHello, b.txt!\n");
    assert!(done.log_contains("wrote 2 greetings (2 /out/greetings.txt)"));
}

#[test]
fn a_misspelt_param_is_a_kiln_toml_error() {
    this_crate!()
        .run()
        .input_tree("src", &[("a.txt", "x")])
        .params(json!({ "greting": "Hello" }))
        .go()
        .assert_fails_with("unknown field `greting`");
}
