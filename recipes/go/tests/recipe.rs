//! The go recipe under kiln's real runtime, driven by kiln-recipe-test:
//! what it says about a target that is set up wrong (building Go itself is
//! tests/e2e/go_image.rs's, which has the toolchain).

use kiln_recipe_test::this_crate;
use serde_json::json;

#[test]
fn a_misspelt_param_names_itself_and_kiln_toml() {
    this_crate!()
        .run()
        .name("app")
        .input_tree("src", &[("go.mod", "module example.com/app\n\ngo 1.22\n")])
        .params(json!({ "pakages": ["./cmd/app"] }))
        .go()
        .assert_fails_with("unknown field `pakages`")
        .assert_fails_with("fix [target.app] (its params or inputs) in kiln.toml");
}

#[test]
fn a_missing_toolchain_is_named() {
    this_crate!()
        .run()
        .name("app")
        .input_tree("src", &[("go.mod", "module example.com/app\n\ngo 1.22\n")])
        .go()
        .assert_fails_with("this target has no input 'go' (declared inputs: src)");
}
