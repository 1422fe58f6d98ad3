//! The WASI context a recipe gets: three directories and nothing else, with
//! clocks and randomness that make every run of the same build identical.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use super::RecipeRun;

/// The wall clock reads SOURCE_DATE_EPOCH, always.
struct FrozenWallClock(Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// A monotonic clock that advances one microsecond per reading: time moves
/// forward, the same way on every run.
struct SteppingClock(AtomicU64);

impl HostMonotonicClock for SteppingClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        self.0.fetch_add(1_000, Ordering::Relaxed)
    }
}

pub(super) fn build_ctx(
    run: &RecipeRun,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
) -> wasmtime::Result<WasiCtx> {
    let mut b = WasiCtxBuilder::new();
    // No env, no args, no stdin: the builder's defaults, kept explicit here.
    b.stdout(stdout).stderr(stderr);
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    b.wall_clock(FrozenWallClock(Duration::from_secs(run.source_date_epoch)));
    b.monotonic_clock(SteppingClock(AtomicU64::new(0)));
    b.secure_random(StdRng::from_seed(run.seed));
    b.insecure_random(StdRng::from_seed(run.seed));
    b.insecure_random_seed(u128::from_le_bytes(
        run.seed[..16].try_into().unwrap_or_default(),
    ));
    // The runtime is synchronous: let file operations run on the recipe's
    // thread instead of handing each one to a blocking pool (one thread
    // hand-off per 64 KiB read otherwise). Must precede the preopens.
    b.allow_blocking_current_thread(true);
    // WASI can only preopen directories: file inputs are reached through
    // `/inputs` itself, a directory the builder fills with links to them.
    // Paths resolve against the longest preopened prefix, so
    // `/inputs/<dir input>` still goes to the directory's own preopen.
    if run.inputs.iter().any(|i| !i.is_dir) {
        b.preopened_dir(&run.file_inputs_dir, "/inputs", FsPerms::ReadOnly)?;
    }
    for input in run.inputs.iter().filter(|i| i.is_dir) {
        b.preopened_dir(
            &input.host_path,
            format!("/inputs/{}", input.name),
            FsPerms::ReadOnly,
        )?;
    }
    b.preopened_dir(&run.work_dir, "/work", FsPerms::ReadWrite)?;
    b.preopened_dir(&run.out_dir, "/out", FsPerms::ReadWrite)?;
    Ok(b.build())
}
