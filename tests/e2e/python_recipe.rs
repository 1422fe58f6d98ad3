//! A recipe in a second language: examples/python-recipe/app.py, compiled
//! by componentize-py against wit/recipe.wit, built and run by kiln.

use std::path::Path;
use std::process::Command;

use crate::support::{Project, run};

/// The example's files in a fresh project, with the component built there.
fn python_project() -> Project {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python-recipe");
    let p = Project::new();
    for rel in [
        "app.py",
        "kiln.toml",
        "templates/motd.txt",
        "templates/run.sh",
        "templates/static/bin/hello",
    ] {
        let to = p.path(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(example.join(rel), &to).unwrap();
    }
    let r = run(Command::new("bash")
        .arg(example.join("build.sh"))
        .arg(p.path("template.wasm"))
        .output()
        .expect("running examples/python-recipe/build.sh"));
    assert!(
        r.code == 0,
        "componentize-py could not build the Python recipe (.ci/deps installs it: pip install componentize-py):\n{}{}",
        r.stdout,
        r.stderr
    );
    p
}

#[test]
fn a_python_recipe_renders_its_templates_reproducibly() {
    let p = python_project();
    let r = p.kiln(&["build"]).ok();
    assert!(
        r.stderr
            .contains("[site] rendered motd.txt -> /out/etc/motd"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(p.path("result/etc/motd")).unwrap(),
        "Welcome to example, built by kiln.\n"
    );
    let run_sh = Command::new(p.path("result/bin/run")).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run_sh.stdout),
        "serving web on port 8080\n"
    );
    // The host copied static/ with its modes.
    let hello = Command::new(p.path("result/static/bin/hello"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&hello.stdout), "static\n");
    // Bit for bit the same when built again from nothing.
    p.kiln(&["build", "--check"]).ok();

    // Its errors are kiln.toml errors, naming what to add.
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    p.write("kiln.toml", &toml.replace("builder = \"kiln\", ", ""));
    p.kiln(&["build"]).fails_with(
        "target 'site' is not set up the way its recipe needs: motd.txt: no value for $builder; add it to params.vars",
    );
}
