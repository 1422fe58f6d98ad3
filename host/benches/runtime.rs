//! Recipe load + instantiate time with a warm compiled-component cache
//! (goal: ≤ 5 ms median), against the first, compiling load in the same run.
//!
//! `cargo bench --bench runtime`

use std::time::{Duration, Instant};

#[path = "../../tests/fixtures.rs"]
mod fixtures;

use kiln::runtime::{Limits, RecipeRun, Runtime};
use kiln::sandbox::SandboxMode;

fn main() -> anyhow::Result<()> {
    let wasm_path = fixtures::fixture_path("hostile");
    let wasm = std::fs::read(wasm_path)?;
    let cache = tempfile::tempdir()?;
    let scratch = tempfile::tempdir()?;
    let runtime = Runtime::new(cache.path())?;

    let t = Instant::now();
    runtime.load(&wasm)?;
    let compile = t.elapsed();

    let mut samples: Vec<Duration> = Vec::new();
    for i in 0..30 {
        let dir = scratch.path().join(i.to_string());
        for d in ["work", "out", "etc", "inputs"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        let run = RecipeRun {
            target: "bench".into(),
            params_json: r#"{"attack":"noop"}"#.into(),
            inputs: vec![],
            work_dir: dir.join("work"),
            out_dir: dir.join("out"),
            etc_dir: dir.join("etc"),
            file_inputs_dir: dir.join("inputs"),
            source_date_epoch: 1,
            seed: [0; 32],
            limits: Limits::default(),
            sandbox: SandboxMode::Hermetic,
            executor: kiln::executor::Executor::Local(SandboxMode::Hermetic),
            output_hash: None,
            unpinned: kiln::runtime::Unpinned::Deny,
            locked_settings: Vec::new(),
            reporter: kiln::report::Reporter::silent(),
            caches: kiln::runtime::ToolCachePlan::Fresh {
                dir: dir.join("caches"),
            },
            fetch_store: None,
            seeds: None,
        };
        let t = Instant::now();
        let component = runtime.load(&wasm)?;
        runtime.run(&component, &run)?;
        samples.push(t.elapsed());
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    println!(
        "first load (compile + cache): {:>8.2} ms",
        compile.as_secs_f64() * 1e3
    );
    println!(
        "cached load + instantiate + build(): median {:>6.2} ms, min {:.2} ms (goal ≤ 5 ms)",
        median.as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3
    );
    println!(
        "ratio cached/compile: {:.4}",
        median.as_secs_f64() / compile.as_secs_f64()
    );
    Ok(())
}
