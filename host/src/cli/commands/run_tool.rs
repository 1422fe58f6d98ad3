//! `kiln run-tool INPUT[:PATH] -- ARGS`: a tool a target pins, run on the
//! project in the sandbox ([`crate::run_tool`] has the policy).

use anyhow::{Context, bail};

use crate::builder::Builder;
use crate::cli::args::RunToolArgs;
use crate::cli::open;
use crate::cli::options::{self, Setting};
use crate::cli::project::Project;
use crate::run_tool::{self, ToolRun};
use crate::sandbox::{self, SandboxMode};
use kiln_core::manifest::{Source, Target};

pub(super) fn run_tool(a: RunToolArgs, quiet: bool) -> anyhow::Result<()> {
    let manifest = Project::open(a.file.file.as_deref())?.load_all()?;
    let (input, path) = match a.tool.split_once(':') {
        Some((i, p)) => (i, Some(p)),
        None => (a.tool.as_str(), None),
    };
    let t = target_with(&manifest.targets, a.target.as_deref(), input)?;
    let declared = &t.inputs[input];
    if matches!(declared.source, Source::Target(_)) {
        bail!(
            "input '{input}' of target '{}' is another target's output; run-tool runs a tool from a url or path input",
            t.name
        );
    }
    let opts = options::lock(&Setting::load(quiet)?, &a.file);
    let mut builder = Builder::new(open::store()?, &manifest, opts)?;
    let root = builder.input_entry(t, declared)?;
    let program = run_tool::find_program(&root, input, path).map_err(anyhow::Error::msg)?;

    let project = std::fs::canonicalize(&t.dir)
        .with_context(|| format!("the package directory {}", t.dir.display()))?;
    let here = std::fs::canonicalize(std::env::current_dir()?)?;
    let cwd = if here.starts_with(&project) {
        here
    } else {
        project.clone()
    };
    let etc = tempfile::tempdir()?;
    for (name, text) in sandbox::policy::etc_files() {
        std::fs::write(etc.path().join(name), text)?;
    }
    let files = run_tool::writable_files(&project, &cwd, &a.writes).map_err(anyhow::Error::msg)?;
    let writes: Vec<std::path::PathBuf> = files.iter().map(|(f, _)| f.clone()).collect();
    let user_env: Vec<(String, String)> = run_tool::PASSED_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let run = ToolRun {
        input,
        input_root: &root,
        program: &program,
        project: &project,
        cwd: &cwd,
        writes: &writes,
        args: a.args.clone(),
        user_env,
        etc: etc.path(),
    };
    let spec = match run_tool::spec(&run) {
        Ok(spec) => spec,
        Err(e) => {
            run_tool::settle(&files)?;
            bail!(e);
        }
    };
    if !quiet {
        errln!(
            "running {} {} (input '{input}' of target '{}', {}) in {} with network; it may change {}",
            spec.program,
            spec.args.join(" "),
            t.name,
            declared.source.describe(&t.dir),
            cwd.display(),
            a.writes.join(", ")
        );
    }
    let out = sandbox::run(&spec, SandboxMode::Hermetic);
    // Modes back whatever the end; a file kiln made and nothing wrote goes.
    run_tool::settle(&files)?;
    let out = out?;
    out!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.stderr.is_empty() {
        errln!("{}", String::from_utf8_lossy(&out.stderr).trim_end());
    }
    for (stream, cut) in [
        ("stdout", out.stdout_truncated),
        ("stderr", out.stderr_truncated),
    ] {
        if cut {
            errln!(
                "note: {} wrote more than {cap} MiB on {stream}: only the first {cap} MiB are shown",
                spec.program,
                cap = sandbox::OUTPUT_LIMIT >> 20,
            );
        }
    }
    match (out.exit_code, out.signal) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => bail!("{} exited with code {code}", spec.program),
        (None, signal) => bail!(
            "{} was killed by signal {}",
            spec.program,
            signal.unwrap_or(9)
        ),
    }
}

/// The target whose input `input` holds the tool: `--target`, else the
/// one target declaring such an input (several: all must agree on it).
fn target_with<'m>(
    targets: &'m std::collections::BTreeMap<String, Target>,
    named: Option<&str>,
    input: &str,
) -> anyhow::Result<&'m Target> {
    if let Some(name) = named {
        let t = targets.get(name).with_context(|| {
            format!(
                "no target '{name}'; targets: {}",
                targets.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        if !t.inputs.contains_key(input) {
            bail!(
                "target '{name}' has no input '{input}'; its inputs: {}",
                t.inputs.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        return Ok(t);
    }
    let with: Vec<&Target> = targets
        .values()
        .filter(|t| t.inputs.contains_key(input))
        .collect();
    match with.as_slice() {
        [] => {
            bail!("no target has an input named '{input}' (the input holding the tool, e.g. `go`)")
        }
        [first, rest @ ..] => {
            let same = |t: &&Target| {
                let (a, b) = (&t.inputs[input], &first.inputs[input]);
                a.source == b.source && a.hash == b.hash
            };
            if !rest.iter().all(same) {
                bail!(
                    "targets {} declare different inputs named '{input}': say which with --target",
                    with.iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(first)
        }
    }
}
