//! Sandbox overhead: a sandboxed `true` against the same `true` run without
//! a sandbox, same process, alternating (goal: ≤ 10 ms median overhead).
//!
//! `cargo bench --bench sandbox` (needs bwrap and /bin/busybox, static).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kiln::sandbox::{Mount, SandboxMode, SandboxSpec, run};

fn main() -> anyhow::Result<()> {
    let tools = tempfile::tempdir()?;
    std::fs::create_dir_all(tools.path().join("bin"))?;
    std::fs::copy("/bin/busybox", tools.path().join("bin/true"))?;
    let work = tempfile::tempdir()?;
    let spec = SandboxSpec {
        program: "/inputs/tools/bin/true".into(),
        args: vec![],
        env: BTreeMap::new(),
        cwd: "/work".into(),
        mounts: vec![
            Mount {
                host: tools.path().to_path_buf(),
                guest: "/inputs/tools".into(),
                writable: false,
            },
            Mount {
                host: work.path().to_path_buf(),
                guest: "/work".into(),
                writable: true,
            },
        ],
        network: kiln::sandbox::Network::None,
        timeout: Duration::from_secs(10),
        limits: kiln::sandbox::SandboxLimits::default(),
    };
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..40 {
        for (mode, v) in [
            (SandboxMode::Hermetic, &mut on),
            (SandboxMode::Off, &mut off),
        ] {
            let t = Instant::now();
            let out = run(&spec, mode)?;
            assert_eq!(out.exit_code, Some(0));
            v.push(t.elapsed());
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    let (m_on, m_off) = (median(&mut on), median(&mut off));
    println!("unsandboxed true: median {m_off:.2} ms");
    println!("sandboxed true:   median {m_on:.2} ms");
    println!(
        "overhead: {:.2} ms (goal ≤ 10 ms), ratio {:.2}x",
        m_on - m_off,
        m_on / m_off
    );
    Ok(())
}
