//! A version a recipe stamps into what it builds (`v1.2.3`), and where a
//! Go build records it so that later recipes (an image's label) and
//! `kiln audit` find it.

/// Where, inside an output (or a cross build's platform directory), the
/// stamped version is written: one line, beside the binaries' buildinfo.
pub const STAMP_FILE: &str = "share/kiln/go/version";

/// `v` checked as a version: it becomes a linker argument, a file and an
/// image label, so it is a version's characters only (SemVer's, Go's
/// pseudo-versions' and `~`), 1 to 128 of them, not starting with `-`.
pub fn check(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && !v.starts_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a version: use 1-128 of A-Z a-z 0-9 . _ + - ~, not starting with - (e.g. \"v1.2.3\")"
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_are_version_characters_only() {
        for ok in [
            "v1.2.3",
            "1.0.0-rc.1+build.5",
            "v0.0.0-20261203-abcdef012345",
        ] {
            assert!(super::check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-X main.evil=1",
            "1 2",
            "v1'",
            "v1\"",
            "v1\n",
            &"9".repeat(129),
        ] {
            assert!(super::check(bad).is_err(), "{bad:?}");
        }
    }
}
