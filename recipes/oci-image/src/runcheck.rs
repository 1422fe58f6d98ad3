//! "It runs": the entrypoint must be an executable file in the image, and
//! whatever it needs to start — an ELF interpreter (dynamic loader) or a
//! script's `#!` interpreter — must be in the image too.

use std::fs;
use std::io::Read;

use kiln_sdk::{Error, Result};

use crate::layer::{Node, Tree};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Check that `program` (entrypoint[0] or cmd[0]) can start in an image of `tree`.
pub fn check(tree: &Tree, program: &str, path_env: Option<&str>) -> Result<()> {
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
    let mut head = vec![0u8; 4096];
    let n = fs::File::open(src)?.read(&mut head)?;
    head.truncate(n);
    if let Some(interp) = elf_interpreter(src, &head)? {
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

/// Follow symlinks inside the image (at most 40) to a node.
fn resolve<'a>(tree: &'a Tree, path: &str) -> Option<(String, &'a Node)> {
    let mut cur = path.trim_matches('/').to_string();
    for _ in 0..40 {
        match tree.get(&cur)? {
            Node::Symlink { target } => {
                cur = if target.starts_with('/') {
                    target.trim_start_matches('/').to_string()
                } else {
                    let parent = cur.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                    normalize_join(parent, target)?
                };
            }
            node => return Some((cur, node)),
        }
    }
    None
}

fn normalize_join(parent: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = parent.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// PT_INTERP of an ELF file, if it has one.
fn elf_interpreter(src: &std::path::Path, head: &[u8]) -> Result<Option<String>> {
    if head.len() < 64 || !head.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let is64 = head[4] == 2;
    let le = head[5] == 1;
    let u16_at = |b: &[u8], o: usize| if le { u16::from_le_bytes([b[o], b[o + 1]]) } else { u16::from_be_bytes([b[o], b[o + 1]]) } as u64;
    let u32_at = |b: &[u8], o: usize| {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        (if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }) as u64
    };
    let u64_at = |b: &[u8], o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        if le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    };
    let (phoff, phentsize, phnum) = if is64 {
        (u64_at(head, 32), u16_at(head, 54), u16_at(head, 56))
    } else {
        (u32_at(head, 28), u16_at(head, 42), u16_at(head, 44))
    };
    let data = fs::read(src)?;
    for i in 0..phnum {
        let o = (phoff + i * phentsize) as usize;
        if o + phentsize as usize > data.len() {
            break;
        }
        if u32_at(&data, o) == 3 {
            let (off, size) = if is64 {
                (u64_at(&data, o + 8), u64_at(&data, o + 32))
            } else {
                (u32_at(&data, o + 4), u32_at(&data, o + 16))
            };
            let bytes = data
                .get(off as usize..(off + size) as usize)
                .unwrap_or_default();
            let s = String::from_utf8_lossy(bytes)
                .trim_end_matches('\0')
                .to_string();
            return Ok(Some(s));
        }
    }
    Ok(None)
}
