//! {{name}} under kiln's real runtime and sandbox (kiln-recipe-test runs
//! `kiln run`; no kiln.toml needed).

use kiln_recipe_test::this_crate;
use serde_json::json;

#[test]
fn greets_every_file_and_copies_the_input() {
    let done = this_crate!()
        .run()
        .input_tree("src", &[("a.txt", "x"), ("b.txt", "y")])
        .params(json!({ "greeting": "Hello" }))
        .go();
    done.assert_ok();
    assert_eq!(done.read("greetings.txt"), "Hello, a.txt!\nHello, b.txt!\n");
    assert_eq!(done.read("src/b.txt"), "y");
    assert!(done.log_contains("wrote 2 greetings"), "{:?}", done.log);
}

#[test]
fn a_missing_greeting_is_a_kiln_toml_error() {
    this_crate!()
        .run()
        .input_tree("src", &[("a.txt", "x")])
        .go()
        .assert_fails_with("missing field `greeting`");
}
