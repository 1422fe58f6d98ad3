//! "It runs": the entrypoint must be an executable file in the image, and
//! whatever it needs to start — an ELF interpreter (dynamic loader) or a
//! script's `#!` interpreter — must be in the image too.

use std::fs;
use std::io::Read;

use kiln_sdk::platform::Platform;
use kiln_sdk::{Error, Result};

use crate::layer::{Node, Tree};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Check that `program` (entrypoint[0] or cmd[0]) can start in an image of
/// `tree` for `platform`: an ELF entrypoint must be built for its machine.
pub fn check(
    tree: &Tree,
    program: &str,
    path_env: Option<&str>,
    platform: &Platform,
) -> Result<()> {
    let resolved = if program.contains('/') {
        program.trim_start_matches('/').to_string()
    } else {
        path_env
            .unwrap_or(DEFAULT_PATH)
            .split(':')
            .map(|d| format!("{}/{program}", d.trim_matches('/')))
            .find(|p| resolve(tree, p).is_some())
            .ok_or_else(|| {
                Error::msg(format!(
                    "the entrypoint {program:?} is not on the image's PATH; nothing would run"
                ))
            })?
    };
    let (final_path, node) = resolve(tree, &resolved).ok_or_else(|| {
        Error::msg(format!("the entrypoint /{resolved} is not in the image; add it to contents (the image would not start)"))
    })?;
    let Node::File { src, mode, .. } = node else {
        return Err(Error::msg(format!(
            "the entrypoint /{resolved} is not a regular file"
        )));
    };
    if mode & 0o111 == 0 {
        return Err(Error::msg(format!(
            "the entrypoint /{final_path} is not executable (mode {mode:o}); set mode = \"0755\" on its contents item"
        )));
    }
    if src.as_os_str().is_empty() {
        // A file of the base image: its mode is known, its bytes are in a
        // compressed layer; the base was built to run its own programs.
        return Ok(());
    }
    let mut head = vec![0u8; 4096];
    let n = fs::File::open(src)?.read(&mut head)?;
    head.truncate(n);
    // A malformed ELF is refused as such before anything else is read from it.
    let interpreter = elf_interpreter(src, &head)?;
    if let (Some(got), Some(want)) = (elf_machine(&head), platform.elf_machine())
        && got != want
    {
        return Err(Error::msg(format!(
            "the entrypoint /{final_path} is an ELF for {}, but the image is for {platform}; build it for that platform (go recipe: params.platforms) or set the image's architecture or platforms",
            machine_name(got)
        )));
    }
    if let Some(interp) = interpreter {
        if resolve(tree, interp.trim_start_matches('/')).is_none() {
            return Err(Error::msg(format!(
                "/{final_path} is dynamically linked and needs its interpreter {interp}, which is not in the image; build it statically (go: cgo = false) or add the loader and libraries"
            )));
        }
    } else if let Some(rest) = head.strip_prefix(b"#!") {
        let line = String::from_utf8_lossy(rest.split(|b| *b == b'\n').next().unwrap_or_default())
            .into_owned();
        let interp = line.split_whitespace().next().unwrap_or("").to_string();
        if resolve(tree, interp.trim_start_matches('/')).is_none() {
            return Err(Error::msg(format!(
                "/{final_path} is a script for {interp}, which is not in the image"
            )));
        }
    } else if !head.starts_with(b"\x7fELF") {
        return Err(Error::msg(format!(
            "/{final_path} is neither an ELF binary nor a #! script; it cannot be executed"
        )));
    }
    Ok(())
}

/// Follow symlinks inside the image (at most 40, all components
/// together) to a node: every component may be a link (`/lib64 ->
/// usr/lib64` on a usrmerge base), not only the last.
fn resolve<'a>(tree: &'a Tree, path: &str) -> Option<(String, &'a Node)> {
    let mut rest: std::collections::VecDeque<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = rest.pop_front() {
        match part.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => cur.push(part),
        }
        let key = cur.join("/");
        match tree.get(&key)? {
            Node::Symlink { target } => {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                cur.pop();
                if target.starts_with('/') {
                    cur.clear();
                }
                for p in target.split('/').rev().filter(|p| !p.is_empty()) {
                    rest.push_front(p.to_string());
                }
            }
            node if rest.is_empty() => return Some((key, node)),
            Node::Dir { .. } => {}
            // A file in the middle of a path: nothing below it.
            Node::File { .. } => return None,
        }
    }
    None
}

/// An ELF file's `e_machine`, from its first bytes.
fn elf_machine(head: &[u8]) -> Option<u16> {
    if head.len() < 20 || !head.starts_with(b"\x7fELF") {
        return None;
    }
    let b = [head[18], head[19]];
    Some(match head[5] {
        2 => u16::from_be_bytes(b),
        _ => u16::from_le_bytes(b),
    })
}

fn machine_name(m: u16) -> String {
    match m {
        3 => "386".into(),
        40 => "arm".into(),
        62 => "amd64".into(),
        183 => "arm64".into(),
        21 => "ppc64".into(),
        22 => "s390x".into(),
        243 => "riscv64".into(),
        258 => "loong64".into(),
        other => format!("machine {other}"),
    }
}

/// PT_INTERP of an ELF file, if it has one.
fn elf_interpreter(src: &std::path::Path, head: &[u8]) -> Result<Option<String>> {
    if head.len() < 64 || !head.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let data = fs::read(src)?;
    interpreter_of(&data).map_err(|why| {
        Error::msg(format!(
            "{} is a malformed ELF file ({why}); it would not start",
            src.display()
        ))
    })
}

/// PT_INTERP of the ELF image `data`. Every offset and size comes from the
/// file, so every read is checked: a crafted header is an error, never a
/// panic or an out-of-bounds read.
fn interpreter_of(data: &[u8]) -> std::result::Result<Option<String>, &'static str> {
    const PT_INTERP: u64 = 3;
    let is64 = match data.get(4) {
        Some(2) => true,
        Some(1) => false,
        _ => return Err("unknown ELF class"),
    };
    let le = match data.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => return Err("unknown byte order"),
    };
    let read = |o: usize, n: usize| -> std::result::Result<u64, &'static str> {
        let b = o
            .checked_add(n)
            .and_then(|end| data.get(o..end))
            .ok_or("a header points past the end of the file")?;
        let mut a = [0u8; 8];
        if le {
            a[..n].copy_from_slice(b);
            Ok(u64::from_le_bytes(a))
        } else {
            a[8 - n..].copy_from_slice(b);
            Ok(u64::from_be_bytes(a))
        }
    };
    let to_usize = |v: u64| usize::try_from(v).map_err(|_| "an offset does not fit in memory");
    let (phoff, phentsize, phnum) = if is64 {
        (read(32, 8)?, read(54, 2)?, read(56, 2)?)
    } else {
        (read(28, 4)?, read(42, 2)?, read(44, 2)?)
    };
    let min_entry = if is64 { 56 } else { 32 };
    if phnum > 0 && phentsize < min_entry {
        return Err("program headers are too small");
    }
    for i in 0..phnum {
        let o = i
            .checked_mul(phentsize)
            .and_then(|x| x.checked_add(phoff))
            .ok_or("program header offsets overflow")?;
        let o = to_usize(o)?;
        if read(o, 4)? != PT_INTERP {
            continue;
        }
        let (off, size) = if is64 {
            (read(o + 8, 8)?, read(o + 32, 8)?)
        } else {
            (read(o + 4, 4)?, read(o + 16, 4)?)
        };
        let (off, size) = (to_usize(off)?, to_usize(size)?);
        let bytes = off
            .checked_add(size)
            .and_then(|end| data.get(off..end))
            .ok_or("the interpreter's name lies past the end of the file")?;
        return Ok(Some(
            String::from_utf8_lossy(bytes)
                .trim_end_matches('\0')
                .to_string(),
        ));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::{elf_machine, interpreter_of};

    #[test]
    fn the_machine_is_read_from_the_header() {
        let mut d = elf64(64, 56, 0, None);
        d[18..20].copy_from_slice(&183u16.to_le_bytes());
        assert_eq!(elf_machine(&d), Some(183));
        assert_eq!(elf_machine(b"#!/bin/sh\n"), None);
    }

    /// A minimal 64-bit little-endian ELF header with one program header.
    fn elf64(phoff: u64, phentsize: u16, phnum: u16, interp: Option<&[u8]>) -> Vec<u8> {
        let mut d = vec![0u8; 64];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[32..40].copy_from_slice(&phoff.to_le_bytes());
        d[54..56].copy_from_slice(&phentsize.to_le_bytes());
        d[56..58].copy_from_slice(&phnum.to_le_bytes());
        if let Some(name) = interp {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&3u32.to_le_bytes());
            let off = 64 + 56;
            ph[8..16].copy_from_slice(&(off as u64).to_le_bytes());
            ph[32..40].copy_from_slice(&(name.len() as u64).to_le_bytes());
            d.extend_from_slice(&ph);
            d.extend_from_slice(name);
        }
        d
    }

    #[test]
    fn a_good_header_names_its_interpreter() {
        let d = elf64(64, 56, 1, Some(b"/lib64/ld-linux-x86-64.so.2\0"));
        assert_eq!(
            interpreter_of(&d),
            Ok(Some("/lib64/ld-linux-x86-64.so.2".into()))
        );
        assert_eq!(interpreter_of(&elf64(64, 56, 0, None)), Ok(None));
    }

    #[test]
    fn crafted_headers_are_errors_not_panics() {
        let cases = [
            elf64(u64::MAX, 56, 2, None),
            elf64(64, 1, 3, None),
            elf64(64, 56, u16::MAX, None),
            elf64(1 << 40, 56, 1, None),
            {
                let mut d = elf64(64, 56, 1, Some(b"x"));
                d[64 + 8..64 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
                d
            },
            {
                let mut d = elf64(64, 56, 1, Some(b"x"));
                d[64 + 32..64 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
                d
            },
            b"\x7fELF".to_vec(),
        ];
        for d in cases {
            assert!(interpreter_of(&d).is_err(), "{:?}", &d[..8.min(d.len())]);
        }
    }
}
