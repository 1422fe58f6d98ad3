//! The recipe from docs/writing-recipes.md: writes a greeting for every
//! file of its `src` input, and counts the lines with the declared `wc` tool.

use kiln_sdk::{Command, Context, Result, Tool};

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
    let text: String = names
        .iter()
        .map(|n| format!("{}, {n}!\n", params.greeting))
        .collect();
    std::fs::write("/out/greetings.txt", &text)?;
    let wc = Command::new(Tool::new("coreutils", "bin/wc"))
        .args(["-l", "/out/greetings.txt"])
        .run()?;
    kiln_sdk::info!(
        "wrote {} greetings ({})",
        names.len(),
        wc.stdout_str().trim()
    );
    Ok(())
}

kiln_sdk::recipe!(build);
