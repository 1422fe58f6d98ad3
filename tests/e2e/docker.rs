//! The seed's own commands with Docker itself (Debian's docker.io, Engine
//! 20.10, started by the test on its own socket): `docker load <
//! result/image.tar` of examples/hello's image, `docker run`, and `docker
//! image inspect` agreeing with `kiln image inspect`.

use crate::support::{Dockerd, hello_project};

#[test]
fn hello_loads_and_runs_in_docker_and_docker_sees_what_kiln_inspect_shows() {
    let p = hello_project();
    p.kiln(&["build", "image"]).ok();
    let docker = Dockerd::start();
    let loaded = docker.load(&p.path("result/image.tar")).ok();
    assert!(
        loaded.stdout.contains("Loaded image: hello:kiln"),
        "{}",
        loaded.stdout
    );
    let ran = docker
        .docker(&["run", "--rm", "--network", "none", "hello:kiln"])
        .ok();
    assert_eq!(
        ran.stdout,
        "Hello from a static Go binary, built by kiln!\n"
    );

    let kiln: serde_json::Value = serde_json::from_str(
        &p.kiln(&[
            "image",
            "inspect",
            "--json",
            p.path("result/oci").to_str().unwrap(),
        ])
        .ok()
        .stdout,
    )
    .unwrap();
    let docker_view: serde_json::Value = serde_json::from_str(
        &docker
            .docker(&["image", "inspect", "hello:kiln"])
            .ok()
            .stdout,
    )
    .unwrap();
    let d = &docker_view[0];
    assert_eq!(
        d["Config"]["Entrypoint"], kiln["config"]["Entrypoint"],
        "{d}\n{kiln}"
    );
    assert_eq!(d["Architecture"], "amd64");
    assert_eq!(d["Created"], "1970-01-01T00:00:01Z");
    let docker_layers: Vec<&str> = d["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let kiln_layers: Vec<&str> = kiln["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(docker_layers, kiln_layers);
}
