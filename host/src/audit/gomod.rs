//! The Go modules inside a Go binary, from the `go version -m` output an
//! output holds at `share/kiln/go/<name>.buildinfo` — a documented
//! convention (docs/writing-recipes.md) that the go recipe follows and any
//! recipe may: audit knows the convention, not a recipe.

use std::fs;
use std::io::Read;
use std::path::Path;

use serde::Serialize;

/// Where the go recipe puts each binary's build information.
pub const BUILDINFO_DIR: &str = "share/kiln/go";

/// One Go binary and what `go version -m` says went into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoBinary {
    /// The binary's path inside the output, e.g. `bin/hello`.
    pub path: String,
    /// e.g. `go1.27.3`.
    pub go_version: String,
    /// The main package's import path.
    pub main_package: String,
    /// The main module first, then its dependencies in `go version -m` order.
    pub modules: Vec<GoModule>,
    /// The version the recipe stamped into it (`-X main.version=…`), from
    /// `version` beside its buildinfo: Go records a main module's version
    /// only from a VCS checkout, so this is where a source build's is.
    pub stamped_version: Option<String>,
}

impl GoBinary {
    /// What the binary calls its version: the stamped one, else its main
    /// module's (`(devel)` for a source build).
    pub fn version(&self) -> Option<&str> {
        self.stamped_version.as_deref().or_else(|| {
            self.modules
                .iter()
                .find(|m| m.main)
                .map(|m| m.version.as_str())
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoModule {
    pub path: String,
    /// A version, or `(devel)` for the main module built from source.
    pub version: String,
    /// The go.sum checksum (`h1:` + base64 sha256 of the module's dirhash);
    /// empty for the main module.
    pub sum: String,
    pub main: bool,
}

impl GoModule {
    /// A package URL: `pkg:golang/example.com/hello@v1.2.3`.
    pub fn purl(&self) -> String {
        purl(&self.path, &self.version)
    }
}

/// The package URL of module `path` at `version` (none for `(devel)`).
pub fn purl(path: &str, version: &str) -> String {
    if version == "(devel)" || version.is_empty() {
        format!("pkg:golang/{path}")
    } else {
        format!("pkg:golang/{path}@{version}")
    }
}

/// Parse one `go version -m` output. `name` names it in errors.
pub fn parse(name: &str, text: &str) -> Result<GoBinary, String> {
    let mut lines = text.lines();
    let first = lines
        .next()
        .ok_or_else(|| format!("{name}: empty build information"))?;
    let (binary, go_version) = first
        .rsplit_once(": ")
        .ok_or_else(|| format!("{name}: first line is not `<binary>: <go version>`: {first}"))?;
    let mut bin = GoBinary {
        path: binary
            .strip_prefix("/out/")
            .unwrap_or(binary)
            .trim_start_matches('/')
            .to_string(),
        go_version: go_version.trim().to_string(),
        main_package: String::new(),
        modules: Vec::new(),
        stamped_version: None,
    };
    for line in lines {
        let fields: Vec<&str> = line.trim_start().split('\t').collect();
        match fields.as_slice() {
            ["path", p, ..] => bin.main_package = p.to_string(),
            [kind @ ("mod" | "dep"), path, version, rest @ ..] => bin.modules.push(GoModule {
                path: path.to_string(),
                version: version.to_string(),
                sum: rest.first().copied().unwrap_or("").to_string(),
                main: *kind == "mod",
            }),
            // `=> path version sum`: the previous dependency is replaced.
            ["=>", path, version, rest @ ..] => {
                let m = bin.modules.last_mut().ok_or_else(|| {
                    format!("{name}: a replacement (=>) before any module: {line}")
                })?;
                m.path = path.to_string();
                m.version = version.to_string();
                m.sum = rest.first().copied().unwrap_or("").to_string();
            }
            _ => {}
        }
    }
    if bin.main_package.is_empty() {
        return Err(format!(
            "{name}: no `path` line: not `go version -m` output"
        ));
    }
    Ok(bin)
}

/// Every Go binary described in the output `entry` (none if it holds no
/// build information). The output is a recipe's work, so its paths are
/// resolved beneath it ([`kiln_core::beneath`]): a symlink or a FIFO a
/// hostile recipe left is refused, never followed or read.
pub fn read(entry: &Path) -> Result<Vec<GoBinary>, String> {
    let root =
        kiln_core::beneath::Root::open(entry).map_err(|e| format!("{}: {e}", entry.display()))?;
    let mut found = read_dir(&root, entry, Path::new(BUILDINFO_DIR))?;
    // A cross build keeps each platform's in its directory
    // (`linux-arm64/share/kiln/go`, docs/recipes/go.md).
    let mut platforms: Vec<String> = fs::read_dir(entry)
        .map_err(|e| format!("{}: {e}", entry.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "share" && n != "bin")
        .collect();
    platforms.sort();
    for p in platforms {
        if let Ok(Some(rustix::fs::FileType::Directory)) = root.kind(Path::new(&p)) {
            found.extend(read_dir(&root, entry, &Path::new(&p).join(BUILDINFO_DIR))?);
        }
    }
    Ok(found)
}

/// The binaries described in `dir` of the output (none if it has no such
/// directory).
fn read_dir(
    root: &kiln_core::beneath::Root,
    entry: &Path,
    dir: &Path,
) -> Result<Vec<GoBinary>, String> {
    match root.kind(dir) {
        Ok(Some(rustix::fs::FileType::Directory)) => {}
        Ok(None) => return Ok(Vec::new()),
        Ok(Some(kind)) => {
            return Err(format!(
                "{} in {} is a {}, not a directory",
                dir.display(),
                entry.display(),
                kiln_core::beneath::kind_name(kind)
            ));
        }
        Err(e) => return Err(e.to_string()),
    }
    // No component of `dir` is a symlink (checked above), and store
    // entries are read-only: listing it by path lists what was checked.
    let rd = fs::read_dir(entry.join(dir)).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".buildinfo"))
        .collect();
    names.sort();
    let stamped = read_stamp(root, &dir.join(STAMP_FILE))?;
    names
        .iter()
        .map(|n| {
            let rel = dir.join(n);
            let mut text = String::new();
            root.open_file(&rel)
                .map_err(|e| e.to_string())?
                .take(MAX_BUILDINFO)
                .read_to_string(&mut text)
                .map_err(|e| format!("{}: {e}", rel.display()))?;
            let mut bin = parse(&rel.display().to_string(), &text)?;
            bin.stamped_version = stamped.clone();
            Ok(bin)
        })
        .collect()
}

/// The file, beside the buildinfo, holding the version the binaries were
/// stamped with (the go recipe's `params.version`): one line.
const STAMP_FILE: &str = "version";

/// The stamped version at `rel`, if there is one: its one line, at most
/// 128 bytes (a longer or empty one is refused, not shortened).
fn read_stamp(root: &kiln_core::beneath::Root, rel: &Path) -> Result<Option<String>, String> {
    match root.kind(rel) {
        Ok(None) => return Ok(None),
        Ok(Some(rustix::fs::FileType::RegularFile)) => {}
        Ok(Some(kind)) => {
            return Err(format!(
                "{} is a {}, not a file",
                rel.display(),
                kiln_core::beneath::kind_name(kind)
            ));
        }
        Err(e) => return Err(e.to_string()),
    }
    let mut text = String::new();
    root.open_file(rel)
        .map_err(|e| e.to_string())?
        .take(130)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", rel.display()))?;
    let v = text.strip_suffix('\n').unwrap_or(&text);
    // The recipe SDK's rule (kiln_sdk::version::check): a version's
    // characters only, as an SBOM's versionInfo and a purl need.
    let version_chars = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+-~".contains(&b));
    if v.is_empty() || v.len() > 128 || v.starts_with('-') || !version_chars {
        return Err(format!(
            "{}: not one line of at most 128 version characters (A-Z a-z 0-9 . _ + - ~)",
            rel.display()
        ));
    }
    Ok(Some(v.to_string()))
}

/// A `go version -m` report is a few KiB; a larger one is not one.
const MAX_BUILDINFO: u64 = 16 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "/out/bin/hello: go1.27.3
\tpath\texample.com/hello
\tmod\texample.com/hello\t(devel)\t
\tdep\texample.com/greet\tv1.2.0\th1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
\tdep\tgolang.org/x/text\tv0.3.0
\t=>\t../text\t(devel)\t
\tbuild\t-buildmode=exe
\tbuild\tCGO_ENABLED=0
";

    #[test]
    fn parses_main_module_deps_and_replacements() {
        let b = parse("hello.buildinfo", HELLO).unwrap();
        assert_eq!(b.path, "bin/hello");
        assert_eq!(b.go_version, "go1.27.3");
        assert_eq!(b.main_package, "example.com/hello");
        assert_eq!(b.modules.len(), 3);
        assert!(b.modules[0].main);
        assert_eq!(b.modules[0].purl(), "pkg:golang/example.com/hello");
        assert_eq!(
            b.modules[1].sum,
            "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        );
        assert_eq!(b.modules[1].purl(), "pkg:golang/example.com/greet@v1.2.0");
        assert_eq!(b.modules[2].path, "../text");
    }

    #[test]
    fn rejects_what_is_not_buildinfo() {
        assert!(parse("x", "").is_err());
        assert!(parse("x", "hello world").is_err());
        assert!(parse("x", "/out/bin/x: go1.2\n").is_err());
    }
}
