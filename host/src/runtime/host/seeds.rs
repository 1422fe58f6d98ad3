//! Cache seeds (a cache's `seed`): work shared by every project on this
//! machine, such as Go's compiled standard library, computed where nothing
//! of any project can reach it.
//!
//! A seed is run in a sandbox that sees only its tool's input (read-only),
//! an empty `/work` and `/out`, no network, and its result directory at
//! `/seed`. The result is a store entry (read-only, outside every sandbox),
//! indexed under the seed's key: the tool input's name and hash, the tool
//! path, the arguments and the environment. Another project gets it only
//! by asking for that same computation, and its tools get a copy in their
//! own cache: nothing they write reaches the shared result. The index
//! remembers which items the result holds; asking for more runs the tool
//! again, on a copy of the result, for the missing items only.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_core::hash::Sha256Hash;
use kiln_core::store::{Existing, Store, write_atomic};

use super::HostState;
use super::paths::resolve_tool;
use crate::record::{SeedOutcome, SeedUse};
use crate::runtime::bindings::kiln::recipe::tool_exec;
use crate::runtime::budget::Stop;
use crate::runtime::guest_fs::measure_tool_dirs;
use crate::sandbox::{Mount, Network, SandboxSpec, policy};

/// The store entry name of a seed's result.
const SEED_ENTRY: &str = "seed";
/// Where the seed's command sees its result directory.
const SEED_GUEST: &str = "/seed";
/// At most this many items, each at most this long.
const MAX_ITEMS: usize = 10_000;
const MAX_ITEM_LEN: usize = 1024;
/// The index file's largest size.
const MAX_INDEX: u64 = 16 << 20;
/// How much of a failed seed's stderr its note keeps.
const NOTE_STDERR: usize = 2000;
/// The most a seed's result may hold: every project that asks for it gets
/// a copy in its cache (Go's standard library for one platform is about a
/// tenth of this).
const MAX_RESULT_BYTES: u64 = 1 << 30;
/// The longest a build waits for another kiln computing the same seed
/// (Go's standard library takes well under a minute on two cores).
const MAX_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(180);

/// What a command asked a seed for.
struct Ask<'a> {
    program: &'a str,
    input: &'a crate::runtime::RunInput,
    seed: &'a tool_exec::Seed,
    wanted: &'a BTreeSet<String>,
}

/// What the index says a seed's result is.
struct Held {
    entry: PathBuf,
    hash: Sha256Hash,
    items: BTreeSet<String>,
}

impl HostState {
    /// Copy `seed`'s result into the cache at `dir` (seen as `path`),
    /// computing it first if the store lacks it or some of its items. `Err`
    /// is a request the host refuses; a seed that fails to run is a
    /// [`SeedOutcome::Failed`] use and leaves the cache as it was.
    pub(super) fn seed_cache(
        &self,
        store: &Store,
        dir: &Path,
        seed: &tool_exec::Seed,
    ) -> Result<SeedUse, tool_exec::Error> {
        let invalid = |m: String| tool_exec::Error::Invalid(format!("cache seed: {m}"));
        if seed.items.len() > MAX_ITEMS {
            return Err(invalid(format!(
                "{} items, more than {MAX_ITEMS}",
                seed.items.len()
            )));
        }
        if let Some(bad) = seed.items.iter().find(|i| {
            i.is_empty()
                || i.starts_with('-')
                || i.len() > MAX_ITEM_LEN
                || i.chars().any(char::is_control)
        }) {
            return Err(invalid(format!(
                "item {:?} is empty, starts with '-', holds a control character or is over {MAX_ITEM_LEN} bytes",
                bad.chars().take(80).collect::<String>()
            )));
        }
        let input = self
            .run
            .inputs
            .iter()
            .find(|i| i.name == seed.tool.input)
            .ok_or_else(|| {
                tool_exec::Error::UndeclaredTool(format!(
                    "cache seed: '{}' is not an input of target '{}'",
                    seed.tool.input, self.run.target
                ))
            })?;
        let program = resolve_tool(input, &seed.tool.path)?;
        let key = seed_key(&input.name, &input.hash, &seed.tool.path, seed);
        let wanted: BTreeSet<String> = seed.items.iter().cloned().collect();
        let ask = Ask {
            program: &program,
            input,
            seed,
            wanted: &wanted,
        };

        let failed = |note: String| SeedUse {
            outcome: SeedOutcome::Failed,
            hash: None,
            items: wanted.len(),
            files_copied: 0,
            stored_bytes: 0,
            note: Some(note),
        };
        let index = store.seeds_dir().join(key.to_hex());
        // One computation of a seed at a time on this machine; a second
        // build waits and then finds it.
        let _lock = match self.seed_lock(store, &key, seed) {
            Ok(lock) => lock,
            Err(note) => return Ok(failed(note)),
        };
        let held = read_index(store, &index);
        let (outcome, result, hash, stored_bytes) = match &held {
            Some(h) if wanted.is_subset(&h.items) => {
                (SeedOutcome::Reused, h.entry.clone(), h.hash, 0)
            }
            _ => match self.compute(store, &ask, held.as_ref()) {
                Ok((entry, hash, bytes)) => {
                    let mut items = wanted.clone();
                    if let Some(h) = &held {
                        items.extend(h.items.iter().cloned());
                    }
                    // Only an index: failing to write it costs a run later.
                    let _ = write_index(&index, &entry, &hash, &items);
                    (SeedOutcome::Computed, entry, hash, bytes)
                }
                Err(note) => return Ok(failed(note)),
            },
        };
        let hash = hash.to_sri();
        let files_copied = match apply(&result, dir, &hash) {
            Ok(n) => n,
            Err(e) => return Ok(failed(format!("copying it into the cache: {e}"))),
        };
        Ok(SeedUse {
            outcome,
            hash: Some(hash),
            items: wanted.len(),
            files_copied,
            stored_bytes,
            note: None,
        })
    }

    /// The seed's lock, waited for (saying so) for at most a quarter of
    /// the build's time left and [`MAX_LOCK_WAIT`], and not once it is
    /// interrupted: another build computing a slow seed costs this one
    /// its seed, never its time limit. `Err` says why it was not taken.
    fn seed_lock(
        &self,
        store: &Store,
        key: &Sha256Hash,
        seed: &tool_exec::Seed,
    ) -> Result<kiln_core::store::StoreLock, String> {
        let name = format!("seed-{}", &key.to_hex()[..32]);
        let give_up = Instant::now()
            + (self.deadline.saturating_duration_since(Instant::now()) / 4).min(MAX_LOCK_WAIT);
        let mut said = false;
        loop {
            match store.try_lock(&name).map_err(|e| e.to_string())? {
                Ok(lock) => return Ok(lock),
                Err(pid) if !said => {
                    said = true;
                    let by = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                    self.run.reporter.note(format!(
                        "{}: waiting for another kiln{by} computing the cache seed `{}`",
                        self.run.target,
                        seed.args.join(" ")
                    ));
                }
                Err(_) => {}
            }
            if crate::interrupt::interrupted() || Instant::now() >= give_up {
                return Err(
                    "another kiln was still computing it; this build went on without it".into(),
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Run the seed's tool for the items `held` lacks, on a copy of `held`,
    /// within what is left of the build's disk budget (this run's seeds
    /// count in it); the new result's entry, hash and size, or why it
    /// failed.
    fn compute(
        &self,
        store: &Store,
        ask: &Ask,
        held: Option<&Held>,
    ) -> Result<(PathBuf, Sha256Hash, u64), String> {
        use std::sync::atomic::Ordering;
        let spent = self.seeded_bytes.load(Ordering::Relaxed);
        let room = self
            .run
            .limits
            .disk_bytes
            .saturating_sub(spent)
            .min(MAX_RESULT_BYTES);
        if room == 0 {
            return Err(format!(
                "this build's seeds already added {spent} bytes to the store, its whole disk budget"
            ));
        }
        let tmp = store.temp_dir("seed-").map_err(|e| e.to_string())?;
        let computed = self.compute_in(tmp.path(), store, ask, held, room);
        // A tool may leave directories it made unwritable; sealing makes
        // them so too: make them removable before the staging goes.
        let _ = kiln_core::store::make_writable(tmp.path());
        computed
    }

    fn compute_in(
        &self,
        tmp: &Path,
        store: &Store,
        ask: &Ask,
        held: Option<&Held>,
        room: u64,
    ) -> Result<(PathBuf, Sha256Hash, u64), String> {
        let Ask {
            program,
            input,
            seed,
            wanted,
        } = *ask;
        let (result, work, out) = (tmp.join("seed"), tmp.join("work"), tmp.join("out"));
        for d in [&work, &out] {
            std::fs::create_dir(d).map_err(|e| e.to_string())?;
        }
        let missing: Vec<String> = match held {
            Some(h) => {
                kiln_core::store::copy_tree(&h.entry, &result, "", &Default::default())
                    .map_err(|e| e.to_string())?;
                kiln_core::store::make_writable(&result).map_err(|e| e.to_string())?;
                wanted.difference(&h.items).cloned().collect()
            }
            None => {
                std::fs::create_dir(&result).map_err(|e| e.to_string())?;
                wanted.iter().cloned().collect()
            }
        };
        let tool_dir = Path::new(program)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut mounts = policy::mounts(
            std::iter::once((input.name.as_str(), input.host_path.as_path())),
            &work,
            &out,
            &self.run.etc_dir,
            Network::None,
        );
        mounts.push(Mount {
            host: result.clone(),
            guest: SEED_GUEST.into(),
            writable: true,
        });
        let mut args = seed.args.clone();
        args.extend(missing);
        let spec = SandboxSpec {
            program: program.to_string(),
            args,
            // What it sees is what its key says: no project's epoch.
            env: policy::tool_env(&tool_dir, 0, &seed.env),
            cwd: "/work".into(),
            mounts,
            network: Network::None,
            timeout: self.deadline.saturating_duration_since(Instant::now()),
            limits: self.step_limits(room),
        };
        let (output, _) = self
            .run_local_step(&spec, true)
            .map_err(|e| e.to_string())?;
        if output.exit_code != Some(0) {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: String = {
                let chars: Vec<char> = stderr.chars().collect();
                chars[chars.len().saturating_sub(NOTE_STDERR)..]
                    .iter()
                    .collect()
            };
            return Err(format!(
                "{} exited with {}: {}",
                spec.program,
                match (output.exit_code, output.signal) {
                    (Some(c), _) => format!("code {c}"),
                    (None, Some(s)) => format!("signal {s}"),
                    _ => "no code".into(),
                },
                tail.trim()
            ));
        }
        // Measured before it is kept (a copied result counts whole: it is a
        // new entry), and counted before anything else can run.
        let bytes = match measure_tool_dirs(&[&result], room, self.deadline) {
            Ok(bytes) => bytes,
            Err(Stop::TooLarge(n)) => {
                return Err(format!(
                    "its result passed the {room} bytes left for it ({n} counted)"
                ));
            }
            Err(Stop::TimedOut) => return Err("the build's time ran out".into()),
            Err(Stop::Failed(e)) => {
                return Err(crate::runtime::guest_fs::message(&e).to_string());
            }
        };
        self.seeded_bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        let hash = kiln_core::store::hash_and_seal(&result).map_err(|e| e.to_string())?;
        let entry = store
            .commit_sealed(&result, &hash, SEED_ENTRY)
            .map_err(|e| e.to_string())?;
        Ok((entry, hash, bytes))
    }
}

/// The seed's key: everything its command is given, and nothing else.
fn seed_key(input: &str, input_hash: &str, tool_path: &str, seed: &tool_exec::Seed) -> Sha256Hash {
    let mut material = format!("kiln cache seed 1\0{input}\0{input_hash}\0{tool_path}\0");
    for a in &seed.args {
        material.push_str(&format!("arg {}\0{a}\0", a.len()));
    }
    let env: std::collections::BTreeMap<&str, &str> = seed
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (k, v) in env {
        material.push_str(&format!("env {} {}\0{k}={v}\0", k.len(), v.len()));
    }
    Sha256Hash::of_bytes(material.as_bytes())
}

/// The index's word for a seed: its entry, if the store still holds it
/// whole, and the items it holds.
fn read_index(store: &Store, index: &Path) -> Option<Held> {
    let text =
        kiln_core::sidefile::read_to_string(index, kiln_core::sidefile::Links::Refuse, MAX_INDEX)
            .ok()?;
    let mut lines = text.lines();
    let name = lines.next()?;
    let hash = Sha256Hash::parse(lines.next()?).ok()?;
    // Entries are named by their content: this one is the seed's result
    // only if the store holds it under its whole hash.
    let entry = store.entry(&hash, SEED_ENTRY)?;
    if entry.file_name()?.to_str()? != name {
        return None;
    }
    Some(Held {
        entry,
        hash,
        items: lines.map(str::to_string).collect(),
    })
}

/// Remove the index files whose result the store no longer holds whole
/// (`kiln gc` deleted it, or the file is not an index): call it only
/// holding the store alone, when no build reads or writes them. Returns
/// how many went.
pub(crate) fn prune_indexes(store: &Store) -> usize {
    let Ok(rd) = std::fs::read_dir(store.seeds_dir()) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| read_index(store, &e.path()).is_none())
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

fn write_index(
    index: &Path,
    entry: &Path,
    hash: &Sha256Hash,
    items: &BTreeSet<String>,
) -> std::io::Result<()> {
    if let Some(dir) = index.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut text = Vec::new();
    writeln!(
        text,
        "{}",
        entry
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    )?;
    writeln!(text, "{}", hash.to_sri())?;
    for i in items {
        writeln!(text, "{i}")?;
    }
    write_atomic(index, &text, Existing::Replace).map(|_| ())
}

/// Copy `result` into the cache at `dir` once: files the cache lacks, as
/// its own (writable), never replacing one it holds; symlinks are left
/// out. A file beside `dir` remembers which results it got. Returns the
/// files copied.
fn apply(result: &Path, dir: &Path, hash: &str) -> std::io::Result<u64> {
    let mut marker = dir.as_os_str().to_owned();
    marker.push(".seeded");
    let marker = PathBuf::from(marker);
    let applied =
        kiln_core::sidefile::read_to_string(&marker, kiln_core::sidefile::Links::Refuse, MAX_INDEX)
            .unwrap_or_default();
    if applied.lines().any(|l| l == hash) {
        return Ok(0);
    }
    let copied = merge(result, dir)?;
    write_atomic(
        &marker,
        format!("{applied}{hash}\n").as_bytes(),
        Existing::Replace,
    )?;
    Ok(copied)
}

/// Copy what `src` (a store entry) holds into `dst`, a directory tools
/// wrote in earlier builds: every path is resolved beneath `dst` by the
/// kernel, never through a symlink, and a file is only ever created (a
/// name that exists, whatever it is, is left as it is), so nothing a tool
/// planted can send a copy elsewhere.
fn merge(src: &Path, dst: &Path) -> std::io::Result<u64> {
    let root = kiln_core::beneath::Root::open(dst)?;
    merge_into(&root, src, Path::new(""))
}

fn merge_into(root: &kiln_core::beneath::Root, src: &Path, rel: &Path) -> std::io::Result<u64> {
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::fs::PermissionsExt;
    let mut copied = 0;
    for e in std::fs::read_dir(src.join(rel))? {
        let e = e?;
        let rel = rel.join(e.file_name());
        let ft = e.file_type()?;
        if ft.is_dir() {
            // A directory a tool replaced with something else is left alone.
            if root.dir(&rel, true).is_ok() {
                copied += merge_into(root, src, &rel)?;
            }
        } else if ft.is_file() {
            let Ok(Some((dir, name))) = root.parent(&rel, false) else {
                continue;
            };
            let mode = if e.metadata()?.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let fd = match rustix::fs::openat(
                &dir,
                &name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(mode),
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::EXIST) => continue,
                Err(err) => return Err(err.into()),
            };
            let mut to = std::fs::File::from(fd);
            std::io::copy(&mut std::fs::File::open(e.path())?, &mut to)?;
            to.set_permissions(std::fs::Permissions::from_mode(mode))?;
            copied += 1;
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(args: &[&str], env: &[(&str, &str)], items: &[&str]) -> tool_exec::Seed {
        tool_exec::Seed {
            tool: tool_exec::Tool {
                input: "go".into(),
                path: "bin/go".into(),
            },
            args: args.iter().map(|s| s.to_string()).collect(),
            items: items.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_seed_is_keyed_by_what_its_command_is_given_but_not_its_items() {
        let k = |s: &tool_exec::Seed| seed_key("go", "sha256-a", "bin/go", s);
        let base = seed(&["build"], &[("A", "1"), ("B", "2")], &["fmt"]);
        assert_eq!(
            k(&base),
            k(&seed(&["build"], &[("B", "2"), ("A", "1")], &["os", "fmt"]))
        );
        assert_ne!(
            k(&base),
            k(&seed(&["build", "-x"], &[("A", "1"), ("B", "2")], &[]))
        );
        assert_ne!(
            k(&base),
            k(&seed(&["build"], &[("A", "1"), ("B", "3")], &[]))
        );
        assert_ne!(k(&base), seed_key("go", "sha256-b", "bin/go", &base));
        assert_ne!(k(&base), seed_key("go2", "sha256-a", "bin/go", &base));
        // Arguments cannot be re-split to collide.
        assert_ne!(
            k(&seed(&["a\0b"], &[], &[])),
            k(&seed(&["a", "b"], &[], &[]))
        );
    }

    #[test]
    fn applying_copies_missing_files_writable_once_and_keeps_the_caches_own() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let (result, cache) = (d.path().join("r"), d.path().join("c"));
        std::fs::create_dir_all(result.join("00")).unwrap();
        std::fs::write(result.join("00/a"), "seed").unwrap();
        std::fs::write(result.join("00/b"), "seed").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", result.join("link")).unwrap();
        std::fs::create_dir_all(cache.join("00")).unwrap();
        std::fs::write(cache.join("00/b"), "own").unwrap();
        // What a tool planted to send the copy elsewhere is left alone.
        let elsewhere = d.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::create_dir_all(result.join("01")).unwrap();
        std::fs::write(result.join("01/x"), "seed").unwrap();
        std::fs::write(result.join("f"), "seed").unwrap();
        std::os::unix::fs::symlink(&elsewhere, cache.join("01")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("f"), cache.join("f")).unwrap();
        kiln_core::store::hash_and_seal(&result).unwrap();
        assert_eq!(apply(&result, &cache, "sha256-x").unwrap(), 1);
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert_eq!(std::fs::read_to_string(cache.join("00/a")).unwrap(), "seed");
        assert_eq!(std::fs::read_to_string(cache.join("00/b")).unwrap(), "own");
        assert!(std::fs::symlink_metadata(cache.join("link")).is_err());
        let mode = std::fs::metadata(cache.join("00/a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        std::fs::remove_file(cache.join("00/a")).unwrap();
        assert_eq!(
            apply(&result, &cache, "sha256-x").unwrap(),
            0,
            "applied once"
        );
        assert_eq!(apply(&result, &cache, "sha256-y").unwrap(), 1);
    }
}
