//! {{name}}: a kiln recipe. It writes a greeting for every file of its
//! `src` input into /out/greetings.txt and copies the input to /out/src.
//! Change `build` to make it yours; `cargo test` runs it under kiln.

use kiln_sdk::{Context, Result, files, info};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    greeting: String,
}

fn build() -> Result<()> {
    let params: Params = kiln_sdk::params()?;
    let src = kiln_sdk::input("src")?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&src).context("listing the src input")? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    kiln_sdk::ensure!(!names.is_empty(), "the src input is empty: nothing to greet");
    let text: String = names
        .iter()
        .map(|n| format!("{}, {n}!\n", params.greeting))
        .collect();
    std::fs::write("/out/greetings.txt", &text)?;
    // Copied by the host, modes and all.
    files::copy(&src, "/out/src")?;
    info!("wrote {} greetings", names.len());
    Ok(())
}

kiln_sdk::recipe!(build);
