//! Fixed-output steps: the only tool runs with a network. The pin comes
//! from kiln.toml (the recipe only names the setting); only a fresh
//! directory is writable while the step runs; the directory is hashed
//! whatever the exit code and deleted unless it matches.

use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use kiln_core::hash::Sha256Hash;

use super::super::bindings::kiln::recipe::tool_exec;
use super::super::budget::Stop;
use super::super::guest_fs::measure_tool_dirs;
use super::super::{RecipeError, Unpinned};
use super::HostState;
use super::paths::resolve_new_dir;
use crate::record::{ExecRecord, FetchOutcome, FixedOutputUse};
use crate::sandbox::{Network, SandboxSpec, policy};

/// A fixed-output step about to run: where it writes and what kiln.toml pins.
pub(super) struct FixedOutputStep {
    setting: String,
    guest_dir: String,
    pub(super) host_dir: PathBuf,
    /// None: the user ran `--fetch-unpinned` to learn the hash.
    pin: Option<Sha256Hash>,
    /// What names the step's result in the store: the pin and the contents
    /// of the recipe's fetch-key files (None: no key, or no store to use).
    key: Option<Sha256Hash>,
    /// The recipe's fetch-key files, for a key made once `kiln lock` has
    /// learnt the pin.
    key_files: Vec<String>,
}

/// The store entry name of what fixed-output steps fetched.
const FETCH_ENTRY: &str = "fetched";

/// What became of a fixed-output step's directory that is not kept.
pub(super) enum FixedOutputVerdict {
    /// It matched the pin and stays.
    Kept,
    /// It was deleted; the note is added to the step's stderr.
    Discarded(String),
    /// Nothing pinned it and `kiln lock` asked to pin it: this is its hash.
    Learned(Sha256Hash),
}

impl HostState {
    /// Run a fixed-output step planned as `spec`: its result reused from
    /// the store when its fetch key matches, else run with network and
    /// kept only if it hashes to the pin.
    pub(super) fn exec_fixed_output(
        &mut self,
        fo: &tool_exec::FixedOutput,
        mut spec: SandboxSpec,
    ) -> wasmtime::Result<Result<tool_exec::Output, tool_exec::Error>> {
        let mut fetch = match self.plan_fixed_output(fo, &fo.fetch_key, &mut spec)? {
            Ok(fetch) => fetch,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(note) = self.reuse_fixed_output(&fetch) {
            // The step as planned, saying it did not run: no network was
            // used and no tool exited.
            self.report().execs.push(ExecRecord {
                argv: std::iter::once(spec.program.clone())
                    .chain(spec.args.iter().cloned())
                    .collect(),
                env: spec.env.clone(),
                cwd: spec.cwd.clone(),
                network: false,
                exit_code: None,
                signal: None,
                stdout_bytes: 0,
                stderr_bytes: 0,
                duration_ms: 0,
                placement: None,
                fixed_output: fetch.pin.map(|hash| FixedOutputUse {
                    pin: fetch.setting.clone(),
                    hash,
                    outcome: FetchOutcome::Reused,
                }),
            });
            self.check_disk(false)?;
            return Ok(Ok(tool_exec::Output {
                exit: tool_exec::Exit::Code(0),
                stdout: Vec::new(),
                stderr: note.into_bytes(),
                stdout_truncated: false,
                stderr_truncated: false,
            }));
        }
        let result = self.run_fetching(&spec, &fetch.host_dir);
        let verdict = match &result {
            Ok((out, _)) => self.check_fixed_output(&fetch, out.exit_code)?,
            Err(_) => {
                discard_dir(&fetch.host_dir);
                Ok(FixedOutputVerdict::Discarded(String::new()))
            }
        };
        let mut kept = false;
        let note = match verdict {
            // Recorded like every run, then the build stops.
            Err(e) => {
                if let Ok((out, _)) = &result {
                    self.record_exec(&spec, out, None);
                }
                return Err(self.trap(e));
            }
            Ok(FixedOutputVerdict::Kept) => {
                self.keep_fixed_output(&fetch);
                kept = true;
                None
            }
            Ok(FixedOutputVerdict::Learned(got)) => {
                fetch.pin = Some(got);
                if self.run.fetch_store.is_some() && !fetch.key_files.is_empty() {
                    fetch.key = self
                        .fetch_key(&fetch.setting, got, &fetch.guest_dir, &fetch.key_files)
                        .ok();
                }
                self.keep_fixed_output(&fetch);
                kept = true;
                None
            }
            Ok(FixedOutputVerdict::Discarded(note)) if !note.is_empty() => Some(note),
            Ok(FixedOutputVerdict::Discarded(_)) => None,
        };
        let ran_from = self.report().execs.len();
        let out = self.finish(&spec, result, note)?;
        if let (true, Some(hash), Some(e)) =
            (kept, fetch.pin, self.report().execs.get_mut(ran_from))
        {
            e.fixed_output = Some(FixedOutputUse {
                pin: fetch.setting.clone(),
                hash,
                outcome: FetchOutcome::Fetched,
            });
        }
        self.check_disk(false)?;
        Ok(out)
    }

    /// The hash kiln.toml pins for `setting` (`output_hash` or
    /// `params.<key>[.<key>…]`). The recipe only names the setting: the
    /// value is read here, from the target's own kiln.toml table.
    fn pinned(&self, setting: &str) -> Result<Option<Sha256Hash>, String> {
        if setting == "output_hash" {
            return Ok(self.run.output_hash);
        }
        let plain = |k: &str| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        let Some(path) = setting
            .strip_prefix("params.")
            .filter(|p| p.split('.').all(plain))
        else {
            return Err(format!(
                "a fixed-output step must name where kiln.toml pins its hash: `output_hash` or `params.<key>` (letters, digits, '_' and '-'), not {:?}",
                setting
            ));
        };
        let params: serde_json::Value =
            serde_json::from_str(&self.run.params_json).map_err(|e| format!("params: {e}"))?;
        let mut v = &params;
        for key in path.split('.') {
            match v.get(key) {
                Some(next) => v = next,
                None => return Ok(None),
            }
        }
        match v {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(s) => Sha256Hash::parse(s)
                .map(Some)
                .map_err(|e| format!("{setting} in kiln.toml: {e}")),
            other => Err(format!(
                "{setting} in kiln.toml must be a hash string, not {other}"
            )),
        }
    }

    /// Turn `spec` into a fixed-output step: network on, only a fresh `dir`
    /// writable, and the pin read from kiln.toml. No pin, no network.
    pub(super) fn plan_fixed_output(
        &self,
        fo: &tool_exec::FixedOutput,
        key_files: &[String],
        spec: &mut SandboxSpec,
    ) -> wasmtime::Result<Result<FixedOutputStep, tool_exec::Error>> {
        let pin = match self.pinned(&fo.setting) {
            Ok(pin) => pin,
            Err(message) => {
                return Err(self.trap(RecipeError::Failed {
                    target: self.run.target.clone(),
                    message,
                }));
            }
        };
        // Under `kiln lock`, an unpinned step may run only to learn a pin
        // kiln.lock can hold (`params.KEY_hash`), once per setting: what it
        // fetched is kept, and nothing else may be.
        let may_learn = self.run.unpinned == Unpinned::Pin
            && kiln_core::lockfile::Lockfile::fetch_pin_key(&fo.setting).is_some()
            && !self
                .report()
                .execs
                .iter()
                .any(|e| e.fixed_output.as_ref().is_some_and(|f| f.pin == fo.setting));
        if pin.is_none() && !may_learn && self.run.unpinned != Unpinned::Report {
            return Ok(Err(tool_exec::Error::NetworkDenied(format!(
                "{setting} is not set for target '{t}' in kiln.toml or kiln.lock, so its fixed-output step gets no network. Run `kiln lock`: the step runs once with network and kiln pins what it fetched in kiln.lock (for targets that read no other target's output). Or set {setting} = \"sha256-…\" in kiln.toml; to learn the hash, run `kiln build --fetch-unpinned {t}`: the step runs with network and kiln prints the hash (nothing it fetched is used)",
                setting = fo.setting,
                t = self.run.target
            ))));
        }
        let guest_dir = match resolve_new_dir(&fo.dir) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let key = match (pin, &self.run.fetch_store, key_files.is_empty()) {
            (Some(pin), Some(_), false) => {
                match self.fetch_key(&fo.setting, pin, &guest_dir, key_files) {
                    Ok(k) => Some(k),
                    Err(e) => return Ok(Err(e)),
                }
            }
            _ => None,
        };
        let rel = guest_dir.trim_start_matches("/work/");
        let host_dir = match create_fresh_dir(&self.run.work_dir, rel) {
            Ok(d) => d,
            Err(why) => {
                return Ok(Err(tool_exec::Error::BadPath(format!(
                    "fixed-output directory {guest_dir}: {why}"
                ))));
            }
        };
        // Read-only everywhere but the fresh directory: what the step
        // fetches can reach the build only through the hash check.
        spec.mounts = policy::fetch_mounts(
            std::mem::take(&mut spec.mounts),
            &host_dir,
            &guest_dir,
            &self.run.etc_dir,
        );
        spec.network = Network::Outbound;
        Ok(Ok(FixedOutputStep {
            setting: fo.setting.clone(),
            guest_dir,
            host_dir,
            pin,
            key,
            key_files: key_files.to_vec(),
        }))
    }

    /// The key of a fixed-output step: its pin, its directory and the
    /// contents of the files that decide what it fetches.
    fn fetch_key(
        &self,
        setting: &str,
        pin: Sha256Hash,
        guest_dir: &str,
        files: &[String],
    ) -> Result<Sha256Hash, tool_exec::Error> {
        let mut material = format!(
            "kiln fetch key 1\0{setting}\0{}\0{guest_dir}\0",
            pin.to_sri()
        );
        for path in files {
            let file = self
                .guest_fs()
                .open(path)
                .map_err(|e| tool_exec::Error::Failed(format!("fetch-key file {e}")))?;
            let hash = Sha256Hash::of_reader(file)
                .map_err(|e| tool_exec::Error::Failed(format!("fetch-key file {path}: {e}")))?;
            material.push_str(&format!("{path}\0{}\0", hash.to_sri()));
        }
        Ok(Sha256Hash::of_bytes(material.as_bytes()))
    }

    /// Fill the step's directory with what an earlier step of the same key
    /// fetched, if the store holds it. Returns the note for its stderr.
    pub(super) fn reuse_fixed_output(&self, fetch: &FixedOutputStep) -> Option<String> {
        let (Some(key), Some(pin), Some(store)) = (fetch.key, fetch.pin, &self.run.fetch_store)
        else {
            return None;
        };
        let (entry, _) = store.lookup_output(&key)?;
        // Entries are named by their content: this one holds the pinned
        // bytes only if the store holds it under the whole pin.
        if store.entry(&pin, FETCH_ENTRY).as_deref() != Some(entry.as_path()) {
            return None;
        }
        let copied = std::fs::read_dir(&entry).and_then(|rd| {
            for e in rd {
                let e = e?;
                kiln_core::store::copy_tree(
                    &e.path(),
                    &fetch.host_dir.join(e.file_name()),
                    "",
                    &Default::default(),
                )
                .map_err(std::io::Error::other)?;
            }
            Ok(())
        });
        if copied.is_err() {
            // Start over: the step runs as if nothing were stored.
            discard_dir(&fetch.host_dir);
            let _ = std::fs::create_dir(&fetch.host_dir);
            return None;
        }
        self.report().fetches_reused.push(fetch.setting.clone());
        Some(format!(
            "kiln: {} holds what an earlier build fetched for {} = {} with the same {}; the step did not run\n",
            fetch.guest_dir,
            fetch.setting,
            pin.to_sri(),
            "fetch-key files",
        ))
    }

    /// Run a fixed-output step here, telling the reporter about once a
    /// second how much it has written to its directory (the bytes a
    /// terminal shows it has fetched). The count looks at a bounded number
    /// of entries, so a step that writes millions of files cannot make the
    /// watcher outlast it.
    fn run_fetching(&self, spec: &SandboxSpec, dir: &Path) -> super::exec::StepResult {
        let done = std::sync::atomic::AtomicBool::new(false);
        let reporter = self.run.reporter.clone();
        let target = self.run.target.clone();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut last = 0;
                loop {
                    for _ in 0..10 {
                        if done.load(std::sync::atomic::Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    let bytes = kiln_core::usage::usage_up_to(dir, 100_000).bytes;
                    if bytes != last && !done.load(std::sync::atomic::Ordering::Relaxed) {
                        last = bytes;
                        reporter.send(crate::report::Event::StepProgress {
                            target: target.clone(),
                            bytes,
                        });
                    }
                }
            });
            let result = self.run_local_step(spec, false);
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            result
        })
    }

    /// Under `kiln lock` a recipe runs its downloads only: at its first
    /// other tool step it is stopped, with its fixed-output steps' pins.
    pub(super) fn stop_for_lock(&self) -> wasmtime::Result<()> {
        if self.run.unpinned != Unpinned::Pin {
            return Ok(());
        }
        let pins = self
            .report()
            .execs
            .iter()
            .filter_map(|e| e.fixed_output.clone())
            .collect();
        Err(self.trap(RecipeError::StoppedForLock {
            target: self.run.target.clone(),
            pins,
        }))
    }

    /// Keep what a step fetched (it matched its pin) for later builds.
    pub(super) fn keep_fixed_output(&self, fetch: &FixedOutputStep) {
        let (Some(key), Some(pin), Some(store)) = (fetch.key, fetch.pin, &self.run.fetch_store)
        else {
            return;
        };
        // Only a cache: failing to keep it costs a download next time.
        if let Ok(entry) = store.add_path(&fetch.host_dir, &Default::default(), FETCH_ENTRY, &pin) {
            let _ = store.record_output(&key, &entry, None);
        }
    }

    /// Hash a fixed-output step's directory whatever its exit code; keep it
    /// only if it is what kiln.toml pinned. `Err` is the trap to raise.
    pub(super) fn check_fixed_output(
        &self,
        fetch: &FixedOutputStep,
        exit_code: Option<i32>,
    ) -> wasmtime::Result<Result<FixedOutputVerdict, RecipeError>> {
        let discard = || discard_dir(&fetch.host_dir);
        let got = match self.hash_fixed_output(fetch)? {
            Ok(got) => got,
            Err(e) => {
                discard();
                return Ok(Err(e));
            }
        };
        let succeeded = exit_code == Some(0);
        match fetch.pin {
            Some(pin) if pin == got => Ok(Ok(FixedOutputVerdict::Kept)),
            Some(pin) => {
                discard();
                if succeeded {
                    let locked = self.run.locked_settings.contains(&fetch.setting);
                    Ok(Err(RecipeError::FixedOutputMismatch {
                        target: self.run.target.clone(),
                        setting: fetch.setting.clone(),
                        specified: pin.to_sri(),
                        got: got.to_sri(),
                        fix: if locked {
                            format!(
                                "{} is pinned in kiln.lock; if the new content is what you want (a changed go.sum, say), run `kiln lock --update {}`",
                                fetch.setting, fetch.setting
                            )
                        } else {
                            format!(
                                "if the new content is what you want (a changed go.sum, say), set {} = \"{}\" in kiln.toml",
                                fetch.setting,
                                got.to_sri()
                            )
                        },
                    }))
                } else {
                    Ok(Ok(FixedOutputVerdict::Discarded(format!(
                        "\nkiln: the step failed; what it left in {} ({}) is not {} and was deleted\n",
                        fetch.guest_dir,
                        got.to_sri(),
                        fetch.setting
                    ))))
                }
            }
            None if succeeded && self.run.unpinned == Unpinned::Pin => {
                Ok(Ok(FixedOutputVerdict::Learned(got)))
            }
            None => {
                discard();
                if succeeded {
                    Ok(Err(RecipeError::FixedOutputUnpinned {
                        target: self.run.target.clone(),
                        setting: fetch.setting.clone(),
                        got: got.to_sri(),
                    }))
                } else {
                    Ok(Ok(FixedOutputVerdict::Discarded(format!(
                        "\nkiln: the step failed; {} was deleted\n",
                        fetch.guest_dir
                    ))))
                }
            }
        }
    }

    /// What a fixed-output step left: measured against the disk budget
    /// (special files removed), then NAR-hashed.
    fn hash_fixed_output(
        &self,
        fetch: &FixedOutputStep,
    ) -> wasmtime::Result<Result<Sha256Hash, RecipeError>> {
        let unreadable = |m: String| RecipeError::Failed {
            target: self.run.target.clone(),
            message: format!(
                "fixed-output step left no readable {}: {m}",
                fetch.guest_dir
            ),
        };
        match measure_tool_dirs(
            &[&fetch.host_dir],
            self.run.limits.disk_bytes,
            self.deadline,
        ) {
            Ok(_) => {}
            Err(Stop::TooLarge(bytes)) => {
                return Ok(Err(RecipeError::DiskLimit {
                    target: self.run.target.clone(),
                    bytes,
                    limit: self.run.limits.disk_bytes,
                }));
            }
            Err(Stop::TimedOut) => {
                discard_dir(&fetch.host_dir);
                self.check_deadline()?;
            }
            Err(Stop::Failed(e)) => {
                return Ok(Err(unreadable(
                    super::super::guest_fs::message(&e).to_string(),
                )));
            }
        }
        // The directory is the host's own (made fresh, its parent read-only
        // to the step), and NAR hashing records symlinks without following them.
        Ok(kiln_core::nar::hash_path(&fetch.host_dir).map_err(|e| unreadable(e.to_string())))
    }
}

/// Delete a fixed-output directory (tools leave read-only trees, as Go's
/// module cache is).
pub(super) fn discard_dir(dir: &Path) {
    let _ = kiln_core::store::make_writable(dir);
    let _ = std::fs::remove_dir_all(dir);
}

/// Create `rel` beneath `work` (parents as needed, never through a symlink
/// that leaves `work`); it must not exist yet. Returns its host path.
fn create_fresh_dir(work: &Path, rel: &str) -> Result<PathBuf, String> {
    let root = Dir::open_ambient_dir(work, ambient_authority()).map_err(|e| e.to_string())?;
    let rel_path = Path::new(rel);
    if let Some(parent) = rel_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        root.create_dir_all(parent)
            .map_err(|e| format!("cannot create its parent: {e}"))?;
    }
    root.create_dir(rel_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            "already exists; a fixed-output step fills a fresh directory".to_string()
        } else {
            e.to_string()
        }
    })?;
    // cap-std kept every step beneath /work; name the result by its real
    // path so the mount cannot be redirected later.
    let host = work
        .join(rel_path)
        .canonicalize()
        .map_err(|e| e.to_string())?;
    let work_real = work.canonicalize().map_err(|e| e.to_string())?;
    if !host.starts_with(&work_real) {
        return Err("resolves outside /work".into());
    }
    Ok(host)
}
