//! The `assemble` import: files made of pieces — bytes the recipe computed
//! and ranges of existing files — hashed or written by the host. File data
//! never passes through the recipe's memory: ranges are copied inside the
//! kernel (`std::io::copy` between files is `copy_file_range` on Linux),
//! and the files of one call are written in parallel, one per core.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::bindings::kiln::recipe::assemble::{File as Plan, Piece};
use super::bindings::kiln::recipe::types::Error as FsError;
use super::guest_fs::{GuestFs, normal, prefixed};

use super::budget::{Budget, STEP, Stop};

/// The sha256 and length of `pieces` laid end to end. Ranges are read on
/// this thread and hashed on another.
pub(super) fn sha256(
    fs: &GuestFs<'_>,
    pieces: &[Piece],
    deadline: Instant,
) -> Result<([u8; 32], u64), Stop> {
    let mut len = 0u64;
    let digest = kiln_core::hashpipe::sha256(|feed| {
        for (i, piece) in pieces.iter().enumerate() {
            check(deadline)?;
            match piece {
                Piece::Bytes(b) => feed.put(b)?,
                Piece::Range(r) => {
                    let (mut src, length) = open_range(fs, &r.path, r.offset, r.length, i)?;
                    src.seek(SeekFrom::Start(r.offset))
                        .map_err(|e| failed(i, &format!("{}: {e}", r.path)))?;
                    len += length;
                    // In steps, so a huge (or sparse) range meets the deadline.
                    let mut left = length;
                    while left > 0 {
                        check(deadline)?;
                        let step = left.min(STEP);
                        let read = feed
                            .put_reader(&mut src, step)
                            .map_err(|e| failed(i, &format!("reading {}: {e}", r.path)))?;
                        if read < step {
                            return Err(shrank(i, &r.path));
                        }
                        left -= step;
                    }
                }
            }
            if let Piece::Bytes(b) = piece {
                len += b.len() as u64;
            }
        }
        Ok(())
    })?;
    Ok((digest.0, len))
}

/// Write every planned file, several at once. The first failure (in plan
/// order) is reported; the other workers stop at their next piece.
pub(super) fn write_files(fs: &GuestFs<'_>, plans: &[Plan], deadline: Instant) -> Result<(), Stop> {
    check_plans(plans)?;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(plans.len());
    let next = AtomicUsize::new(0);
    let errors: Mutex<Vec<(usize, Stop)>> = Mutex::new(Vec::new());
    let stopped = || !errors.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= plans.len() || stopped() {
                        break;
                    }
                    if let Err(e) = write_file(fs, &plans[i], deadline, &stopped) {
                        errors
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((i, e));
                    }
                }
            });
        }
    });
    let mut errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errors.sort_by_key(|(i, _)| *i);
    match errors.into_iter().next() {
        None => Ok(()),
        Some((_, stop)) => Err(stop),
    }
}

/// The bytes `plans` would write, all files together: checked against
/// the disk budget before the first byte is written.
pub(super) fn planned_bytes(fs: &GuestFs<'_>, plans: &[Plan]) -> Result<u64, Stop> {
    let mut total = 0u64;
    for plan in plans {
        for (i, piece) in plan.pieces.iter().enumerate() {
            let n = match piece {
                Piece::Bytes(b) => b.len() as u64,
                Piece::Range(r) => {
                    open_range(fs, &r.path, r.offset, r.length, i)
                        .map_err(|e| match e {
                            Stop::Failed(e) => {
                                Stop::Failed(prefixed(&format!("writing {}", plan.path), e))
                            }
                            t => t,
                        })?
                        .1
                }
            };
            total = total.saturating_add(n);
        }
    }
    Ok(total)
}

/// Files written at the same time must not overlap: no path twice, and no
/// range read from a file the same call writes.
fn check_plans(plans: &[Plan]) -> Result<(), Stop> {
    let mut targets = std::collections::HashMap::new();
    for plan in plans {
        if let Some(first) = targets.insert(normal(&plan.path), &plan.path) {
            return Err(Stop::Failed(FsError::Invalid(format!(
                "{} and {first} are the same file: a call writes each file once",
                plan.path
            ))));
        }
    }
    for plan in plans {
        for (i, piece) in plan.pieces.iter().enumerate() {
            if let Piece::Range(r) = piece
                && let Some(target) = targets.get(&normal(&r.path))
            {
                return Err(Stop::Failed(FsError::Invalid(format!(
                    "writing {}: piece {i} reads {target}, which the same call writes",
                    plan.path
                ))));
            }
        }
    }
    Ok(())
}

fn write_file(
    fs: &GuestFs<'_>,
    plan: &Plan,
    deadline: Instant,
    stopped: &dyn Fn() -> bool,
) -> Result<(), Stop> {
    let in_file = |e: Stop| match e {
        Stop::Failed(e) => Stop::Failed(prefixed(&format!("writing {}", plan.path), e)),
        t => t,
    };
    let mut dst = fs.create(&plan.path, plan.mode).map_err(Stop::Failed)?;
    for (i, piece) in plan.pieces.iter().enumerate() {
        check(deadline).map_err(in_file)?;
        if stopped() {
            return Ok(());
        }
        match piece {
            Piece::Bytes(b) => dst
                .write_all(b)
                .map_err(|e| in_file(failed(i, &e.to_string())))?,
            Piece::Range(r) => {
                let (mut src, length) =
                    open_range(fs, &r.path, r.offset, r.length, i).map_err(in_file)?;
                src.seek(SeekFrom::Start(r.offset))
                    .map_err(|e| in_file(failed(i, &format!("{}: {e}", r.path))))?;
                // In steps, so a huge range still meets the deadline.
                let mut left = length;
                while left > 0 {
                    check(deadline).map_err(in_file)?;
                    let step = left.min(STEP);
                    let copied = std::io::copy(&mut (&src).take(step), &mut dst)
                        .map_err(|e| in_file(failed(i, &format!("copying {}: {e}", r.path))))?;
                    if copied < step {
                        return Err(in_file(shrank(i, &r.path)));
                    }
                    left -= step;
                }
            }
        }
    }
    Ok(())
}

/// Open a range's file, checking that it holds the whole range; the
/// range's length (with none, up to the end of the file).
fn open_range(
    fs: &GuestFs<'_>,
    path: &str,
    offset: u64,
    length: Option<u64>,
    piece: usize,
) -> Result<(File, u64), Stop> {
    let f = fs
        .open(path)
        .map_err(|e| Stop::Failed(prefixed(&format!("piece {piece}"), e)))?;
    let size = f
        .metadata()
        .map_err(|e| failed(piece, &format!("{path}: {e}")))?
        .len();
    let length = length.unwrap_or(size.saturating_sub(offset));
    match offset.checked_add(length) {
        Some(end) if end <= size => Ok((f, length)),
        _ => Err(Stop::Failed(FsError::Invalid(format!(
            "piece {piece}: {path} holds {size} bytes; the range asks for {length} from offset {offset}"
        )))),
    }
}

fn check(deadline: Instant) -> Result<(), Stop> {
    Budget::time(deadline).check_time()
}

fn failed(piece: usize, message: &str) -> Stop {
    Stop::Failed(FsError::Io(format!("piece {piece}: {message}")))
}

fn shrank(piece: usize, path: &str) -> Stop {
    failed(piece, &format!("{path} got shorter while it was read"))
}

#[cfg(test)]
mod tests {
    use super::super::bindings::kiln::recipe::assemble::FileRange;
    use super::super::guest_fs::TestDirs;
    use super::*;
    use sha2::{Digest, Sha256};
    use std::time::Duration;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn range(path: &str, offset: u64, length: u64) -> Piece {
        Piece::Range(FileRange {
            path: path.into(),
            offset,
            length: Some(length),
        })
    }

    #[test]
    fn files_are_written_and_hashed_from_their_pieces() {
        let dirs = TestDirs::new();
        // Larger than a hashing chunk (1 MiB), so reads are split.
        let big: Vec<u8> = (0..(3 << 20) + 5).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dirs.input.join("big"), &big).unwrap();
        let fs = dirs.fs();
        let pieces = vec![
            Piece::Bytes(b"head".to_vec()),
            range("/inputs/src/big", 10, big.len() as u64 - 10),
            Piece::Bytes(b"mid".to_vec()),
            range("/inputs/src/big", 0, 3),
        ];
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&big[10..]);
        expected.extend_from_slice(b"mid");
        expected.extend_from_slice(&big[..3]);

        let (digest, len) = sha256(&fs, &pieces, later()).unwrap();
        assert_eq!(len, expected.len() as u64);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&expected)));
        // A range without a length runs to the end of its file.
        let rest = [Piece::Range(FileRange {
            path: "/inputs/src/big".into(),
            offset: 10,
            length: None,
        })];
        let (digest, len) = sha256(&fs, &rest, later()).unwrap();
        assert_eq!(len, big.len() as u64 - 10);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&big[10..])));

        let plans: Vec<Plan> = ["/out/a", "/work/b", "/out/c"]
            .iter()
            .map(|p| Plan {
                path: p.to_string(),
                pieces: pieces.clone(),
                mode: 0o644,
            })
            .collect();
        write_files(&fs, &plans, later()).unwrap();
        for f in [dirs.out.join("a"), dirs.work.join("b"), dirs.out.join("c")] {
            assert_eq!(std::fs::read(&f).unwrap(), expected, "{}", f.display());
        }
    }

    #[test]
    fn bad_pieces_are_named() {
        let dirs = TestDirs::new();
        std::fs::write(dirs.work.join("small"), "12345").unwrap();
        let fs = dirs.fs();
        let past_end = vec![Piece::Bytes(vec![1]), range("/work/small", 2, 4)];
        assert!(matches!(
            sha256(&fs, &past_end, later()).unwrap_err(),
            Stop::Failed(FsError::Invalid(m)) if m == "piece 1: /work/small holds 5 bytes; the range asks for 4 from offset 2"
        ));
        let plans = [Plan {
            path: "/work/out".into(),
            pieces: vec![range("/work/missing", 0, 1)],
            mode: 0o644,
        }];
        match write_files(&fs, &plans, later()).unwrap_err() {
            Stop::Failed(FsError::NotFound(m)) => assert!(
                m.starts_with("writing /work/out: piece 0: /work/missing:"),
                "{m}"
            ),
            t => panic!("{t:?}"),
        }
        let twice = [
            Plan {
                path: "/work/a".into(),
                pieces: vec![],
                mode: 0o644,
            },
            Plan {
                path: "/work/./a".into(),
                pieces: vec![],
                mode: 0o644,
            },
        ];
        assert!(matches!(
            write_files(&fs, &twice, later()).unwrap_err(),
            Stop::Failed(FsError::Invalid(m)) if m == "/work/./a and /work/a are the same file: a call writes each file once"
        ));
        let reads_its_own = [Plan {
            path: "/work/small".into(),
            pieces: vec![range("/work//small", 0, 1)],
            mode: 0o644,
        }];
        assert!(matches!(
            write_files(&fs, &reads_its_own, later()).unwrap_err(),
            Stop::Failed(FsError::Invalid(m)) if m == "writing /work/small: piece 0 reads /work/small, which the same call writes"
        ));
        assert_eq!(std::fs::read(dirs.work.join("small")).unwrap(), b"12345");
        let plans = [Plan {
            path: "/etc/x".into(),
            pieces: vec![],
            mode: 0o644,
        }];
        assert!(matches!(
            write_files(&fs, &plans, later()),
            Err(Stop::Failed(FsError::BadPath(m))) if m.contains("not under /work or /out")
        ));
        assert!(matches!(
            sha256(&fs, &past_end, Instant::now()).unwrap_err(),
            Stop::TimedOut
        ));
    }
}
