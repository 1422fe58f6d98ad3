//! The oci-image recipe under kiln's real runtime and sandbox, driven by
//! kiln-recipe-test: no kiln.toml.

use kiln_recipe_test::this_crate;
use serde_json::json;

#[test]
fn a_static_binary_becomes_a_single_layer_image_in_both_layouts() {
    let done = this_crate!()
        .run()
        .name("img")
        .input("app", "/bin/busybox")
        .params(json!({
            "name": "t",
            "tag": "test",
            "contents": [{ "from": "app", "dest": "/bin/busybox" }],
            "entrypoint": ["/bin/busybox", "true"],
        }))
        .go();
    done.assert_ok();
    assert!(done.path("image.tar").is_file());
    let index: serde_json::Value = serde_json::from_str(&done.read("oci/index.json")).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: serde_json::Value = serde_json::from_str(&done.read(&format!(
        "oci/blobs/sha256/{}",
        digest.trim_start_matches("sha256:")
    )))
    .unwrap();
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        1,
        "{manifest}"
    );
}

#[test]
fn an_image_with_nothing_to_run_is_a_kiln_toml_error() {
    this_crate!()
        .run()
        .name("img")
        .input("app", "/bin/busybox")
        .params(json!({ "name": "t", "contents": [{ "from": "app", "dest": "/bin/busybox" }] }))
        .go()
        .assert_fails_with("target 'img' is not set up the way its recipe needs: the image: set entrypoint (or cmd)");
}
