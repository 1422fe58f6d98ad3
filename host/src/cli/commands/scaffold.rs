//! Scaffolding: `kiln new-recipe` (a recipe crate whose own `cargo test`
//! runs it under kiln), `kiln init` (a kiln.toml for the Go module in the
//! current directory). Nothing here overwrites a file: an existing one is
//! an error that names it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::cli::args::{InitArgs, NewRecipeArgs};

const RECIPE_FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../templates/recipe/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../templates/recipe/src/lib.rs"),
    ),
    (
        "tests/recipe.rs",
        include_str!("../../../templates/recipe/tests/recipe.rs"),
    ),
    (
        "kiln.toml",
        include_str!("../../../templates/recipe/kiln.toml"),
    ),
    (
        ".gitignore",
        include_str!("../../../templates/recipe/.gitignore"),
    ),
];

pub(super) fn new_recipe(a: NewRecipeArgs, quiet: bool) -> anyhow::Result<()> {
    let name = &a.name;
    let valid = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "{name:?} is not a recipe crate name: use lowercase letters, digits, '-' and '_', starting with a letter"
        );
    }
    let dir = a.path.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        bail!("{} exists; pick another name or --path", dir.display());
    }
    let sdk_root = match &a.sdk {
        Some(p) => std::path::absolute(p)?,
        // The kiln source tree this binary was built from.
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes"),
    };
    let (sdk, recipe_test) = (sdk_root.join("sdk"), sdk_root.join("test"));
    for crate_dir in [&sdk, &recipe_test] {
        if !crate_dir.join("Cargo.toml").is_file() {
            bail!(
                "no kiln recipe crates at {}: pass --sdk DIR, the recipes/ directory of a kiln source tree",
                sdk_root.display()
            );
        }
    }
    let sdk = fs::canonicalize(&sdk)?;
    let recipe_test = fs::canonicalize(&recipe_test)?;
    for (rel, template) in RECIPE_FILES {
        let text = template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &toml_string(&path_text(&sdk)?))
            .replace("{{recipe_test}}", &toml_string(&path_text(&recipe_test)?));
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap_or(&dir))?;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if !quiet {
        errln!(
            "created recipe crate {name} in {}\n  cd {} && cargo test    # builds it for wasm32-wasip2 and runs it under kiln",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// `s` as a TOML basic string, quotes and escapes included (the toml crate
/// writes it): no name kiln puts in a generated file can end the string
/// and add a key or a table.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A path as text for a generated file: UTF-8, no control characters.
fn path_text(p: &Path) -> anyhow::Result<String> {
    let text = p.to_str().with_context(|| {
        format!(
            "{} is not UTF-8; kiln cannot write it into a file",
            p.display()
        )
    })?;
    representable(text, "path")?;
    Ok(text.to_string())
}

/// Refuse a name with control characters: a generated file could carry it
/// escaped, but no program or path should be called that.
fn representable(s: &str, what: &str) -> anyhow::Result<()> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        bail!(
            "the {what} {:?} holds the control character {c:?}; rename it (kiln writes only names it can represent plainly)",
            s
        );
    }
    Ok(())
}

/// A main package of a Go module: its directory (relative, `.` for the
/// root) and the binary name `go build` gives it.
#[derive(Debug, PartialEq, Eq)]
struct MainPackage {
    dir: String,
    binary: String,
}

pub(super) fn init(a: InitArgs, quiet: bool) -> anyhow::Result<()> {
    kiln_core::hash::Sha256Hash::parse(&a.go_hash)
        .with_context(|| format!("--go-hash {}", a.go_hash))?;
    let root = std::env::current_dir()?;
    let manifest = root.join("kiln.toml");
    if fs::symlink_metadata(&manifest).is_ok() {
        bail!(
            "{} exists; kiln init writes a new one only",
            manifest.display()
        );
    }
    let go_mod = kiln_core::sidefile::read_to_string(
        &root.join("go.mod"),
        kiln_core::sidefile::Links::Follow,
        kiln_core::sidefile::limits::TEXT,
    )
    .with_context(|| {
        format!(
            "no go.mod in {}: kiln init sets up a Go module (run it at the module's root)",
            root.display()
        )
    })?;
    let module = go_mod
        .lines()
        .find_map(|l| l.trim().strip_prefix("module "))
        .map(|m| m.trim().trim_matches('"').to_string())
        .context("go.mod has no module line")?;
    representable(&module, "module path in go.mod")?;
    let mains = main_packages(&root, &module)?;
    for m in &mains {
        representable(&m.dir, "package directory")?;
        representable(&m.binary, "binary name")?;
    }
    if mains.is_empty() {
        bail!(
            "no main package in module {module}: kiln init builds programs (a directory with `package main`)"
        );
    }
    let name = target_name(mains.first().map_or(&module, |m| &m.binary));
    let deps = dependencies(&root, &go_mod)?;
    let text = render_init(&name, &mains, &deps, &a.go_url, &a.go_hash);
    // A workspace above is joined; whether it can be is known before
    // anything is written.
    let join = crate::cli::project::plan_join(&root)?;
    // A new file, never through a link a checkout planted (create_new
    // refuses an existing name, a dangling symlink included).
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&manifest)
        .with_context(|| format!("writing {}", manifest.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("writing {}", manifest.display()))?;
    if let Some(j) = &join {
        j.apply()?;
    }
    if !quiet {
        let list: Vec<String> = mains.iter().map(|m| format!("./{}", m.dir)).collect();
        errln!(
            "wrote kiln.toml: target {name} builds {} with Go (pinned), target image puts /bin/{} in an image",
            list.join(" "),
            mains[0].binary
        );
        match &deps {
            Deps::Download { count, proxy } => {
                match proxy {
                    Some(Proxy::Dir(rel)) => errln!(
                        "its {count} required module(s) come from the GOPROXY directory {rel} (input proxy)"
                    ),
                    Some(Proxy::Url(url)) => {
                        errln!("its {count} required module(s) come from GOPROXY {url}")
                    }
                    Some(Proxy::Secret) => errln!(
                        "warning: GOPROXY's URL holds credentials, so kiln.toml does not name it (it is committed, and params are recorded): set params.goproxy to a URL without them"
                    ),
                    Some(Proxy::Outside(dir)) => errln!(
                        "warning: GOPROXY points at {} outside the module, which a build may not read: copy it into the module and set inputs.proxy and params.goproxy as docs/recipes/go.md says",
                        dir.display()
                    ),
                    None => {
                        errln!("its {count} required module(s) come from https://proxy.golang.org")
                    }
                }
                errln!(
                    "next, download them once and pin their hash in kiln.lock (commit it with kiln.toml):\n  kiln lock\nthen:"
                );
            }
            Deps::Vendored => errln!("its dependencies are vendored (vendor/): no download"),
            Deps::None => {}
        }
        errln!("  kiln build image && podman load -i result/image.tar");
        match &join {
            Some(j) if j.adds() => errln!(
                "added \"{}\" to [workspace] members in {}: its targets are {}:{name} and {}:image",
                j.package,
                j.root.display(),
                j.package,
                j.package
            ),
            Some(j) => errln!(
                "a package of the workspace: its targets are {}:{name} and {}:image",
                j.package,
                j.package
            ),
            None => {}
        }
    }
    Ok(())
}

/// Mozilla's CA bundle as PyPI's certifi wheel ships it, and the NAR hash
/// of the unpacked wheel (`kiln prefetch --unpack URL`).
const CERTIFI_URL: &str = "https://files.pythonhosted.org/packages/7a/3e/9ddb6d78c2ffd17604c05745f553614bfbecd2cc6741bbaa5181bc8b2496/certifi-2026.10.19.post1-py3-none-any.whl";
const CERTIFI_HASH: &str = "sha256-9QakUjTUm6aohW4muNplwknJE/cL1m8LHSY/iq42TUI=";

/// How the module gets its dependencies, as init sees it.
#[derive(Debug, PartialEq, Eq)]
enum Deps {
    /// go.mod requires nothing.
    None,
    /// `vendor/modules.txt` is there: Go builds from vendor/.
    Vendored,
    /// `count` requirements, downloaded by the go recipe's pinned step.
    Download { count: usize, proxy: Option<Proxy> },
}

/// Where the environment's `GOPROXY` says modules come from, when not the
/// default.
#[derive(Debug, PartialEq, Eq)]
enum Proxy {
    /// A `file://` proxy inside the module, relative to it.
    Dir(String),
    /// A `file://` proxy outside: a build may not read it.
    Outside(PathBuf),
    /// Another https:// proxy.
    Url(String),
    /// An https:// proxy whose URL holds credentials (user:password@ or
    /// a query): not written into kiln.toml, nor printed.
    Secret,
}

/// The module's dependencies: its go.mod's `require`s, `vendor/`, and a
/// `GOPROXY` in init's environment.
fn dependencies(root: &Path, go_mod: &str) -> anyhow::Result<Deps> {
    let count = requirements(go_mod);
    if count == 0 {
        return Ok(Deps::None);
    }
    if root.join("vendor/modules.txt").is_file() {
        return Ok(Deps::Vendored);
    }
    let goproxy = std::env::var("GOPROXY").unwrap_or_default();
    let proxy = proxy_of(&goproxy, root)?;
    Ok(Deps::Download { count, proxy })
}

/// Where the first entry of a `GOPROXY` list says modules come from, as
/// init writes it (None: the default proxy, `direct` or `off`).
fn proxy_of(goproxy: &str, root: &Path) -> anyhow::Result<Option<Proxy>> {
    let first = goproxy
        .split([',', '|'])
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    Ok(if let Some(dir) = first.strip_prefix("file://") {
        let dir = fs::canonicalize(dir).with_context(|| format!("GOPROXY={first}"))?;
        let base = fs::canonicalize(root)?;
        match dir.strip_prefix(&base) {
            Ok(rel) if !rel.as_os_str().is_empty() => Some(Proxy::Dir(path_text(rel)?)),
            _ => Some(Proxy::Outside(dir)),
        }
    } else if first.starts_with("https://") && first != "https://proxy.golang.org" {
        representable(&first, "GOPROXY")?;
        // kiln.toml is committed and its params land in build records:
        // a proxy URL carrying credentials is not written there.
        let authority = first["https://".len()..].split('/').next().unwrap_or("");
        if authority.contains('@') || first.contains('?') {
            Some(Proxy::Secret)
        } else {
            Some(Proxy::Url(first))
        }
    } else {
        None
    })
}

/// How many modules go.mod requires (`require x v` lines and the lines of
/// `require ( … )` blocks).
fn requirements(go_mod: &str) -> usize {
    let mut count = 0;
    let mut in_block = false;
    for line in go_mod.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        if in_block {
            if line == ")" {
                in_block = false;
            } else if !line.is_empty() {
                count += 1;
            }
        } else if let Some(rest) = line.strip_prefix("require") {
            let rest = rest.trim();
            if rest == "(" {
                in_block = true;
            } else if !rest.is_empty() && line.starts_with("require ") {
                count += 1;
            }
        }
    }
    count
}

/// The [target.NAME] lines for the module's dependencies.
fn deps_lines(name: &str, deps: &Deps) -> String {
    let Deps::Download { count, proxy } = deps else {
        return String::new();
    };
    let mut out = String::new();
    match proxy {
        Some(Proxy::Dir(rel)) => out.push_str(&format!(
            "# Modules come from the GOPROXY directory init found, as an input.\ninputs.proxy = {{ path = {} }}\nparams.goproxy = \"file:///inputs/proxy\"\n",
            toml_string(rel)
        )),
        Some(Proxy::Url(url)) => {
            out.push_str(&format!("params.goproxy = {}\n", toml_string(url)))
        }
        Some(Proxy::Outside(_)) | Some(Proxy::Secret) | None => {}
    }
    out.push_str(&format!(
        "# go.mod requires {count} module(s). The go recipe downloads them in one step,\n# the only one with network, and keeps what it fetched only if it hashes to\n# its pin. `kiln lock` runs that step once and pins the hash in kiln.lock\n# (`kiln lock --update` after a go.sum change); to pin it here instead:\n# params.vendor_hash = \"sha256-…\"   (`kiln build --fetch-unpinned {name}` prints it)\n"
    ));
    out
}

fn render_init(
    name: &str,
    mains: &[MainPackage],
    deps: &Deps,
    go_url: &str,
    go_hash: &str,
) -> String {
    // Every string from outside (directory and binary names, the URL and
    // hash flags) is written by the toml crate; `name` is [A-Za-z0-9_-].
    let q = toml_string;
    let packages: Vec<String> = mains
        .iter()
        .map(|m| {
            if m.dir == "." {
                q(".")
            } else {
                q(&format!("./{}", m.dir))
            }
        })
        .collect();
    let contents: Vec<String> = mains
        .iter()
        .map(|m| {
            format!(
                "  {{ from = {}, path = {}, dest = {} }},",
                q(name),
                q(&format!("bin/{}", m.binary)),
                q(&format!("/bin/{}", m.binary))
            )
        })
        .collect();
    format!(
        r#"# Written by `kiln init`; see docs/kiln-toml.md and docs/recipes/ for what
# each setting does. `kiln build NAME` builds one target and links ./result
# to it; `kiln build` builds every target and links result-NAME for each.
# Every setting is a `params.KEY = …` line, so a line can be added to it (the
# README's `params.platforms = […]`, say).

# The module's main packages, built into static binaries (bin/ in the
# output) after `go test ./...` passes. The toolchain is pinned by its hash.
[target.{name}]
recipe = "go"
inputs.src = {{ path = "."{src_exclude} }}
inputs.go = {{ url = {go_url}, unpack = true, hash = {go_hash} }}
params.packages = [{packages}]
{deps}
# A single-layer image holding the binaries: `kiln build image` links
# ./result to it, with result/image.tar for `docker load` / `podman load`
# and result/oci/ for registries.
[target.image]
recipe = "oci-image"
inputs.{name} = {{ target = "{name}" }}
params.name = {quoted_name}
params.tag = "kiln"
params.contents = [
{contents}
]
params.entrypoint = [{first}]
params.directories = [{{ path = "/tmp", mode = "1777" }}]
# CA certificates, for HTTPS from inside the image (Mozilla's bundle, from
# PyPI's certifi wheel, pinned by hash): uncomment both lines to install it
# at /etc/ssl/certs/ca-certificates.crt.
# inputs.certs = {{ url = "{CERTIFI_URL}", unpack = true, hash = "{CERTIFI_HASH}" }}
# params.ca_certificates = {{ input = "certs", path = "certifi/cacert.pem" }}
"#,
        packages = packages.join(", "),
        contents = contents.join("\n"),
        first = q(&format!("/bin/{}", mains[0].binary)),
        go_url = q(go_url),
        go_hash = q(go_hash),
        quoted_name = q(name),
        deps = deps_lines(name, deps),
        src_exclude = match deps {
            Deps::Download {
                proxy: Some(Proxy::Dir(rel)),
                ..
            } => format!(", exclude = [{}]", q(&format!("/{rel}"))),
            _ => String::new(),
        },
    )
}

/// `s` as a kiln.toml target name: letters, digits, `-` and `_` (others
/// become `-`); `fallback` when nothing is left.
pub(super) fn target_name_from(s: &str, fallback: &str) -> String {
    let name: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        fallback.to_string()
    } else {
        name
    }
}

/// A kiln.toml target name from a binary name (not `image`, the other target).
fn target_name(binary: &str) -> String {
    match target_name_from(binary, "app") {
        n if n == "image" => "app".into(),
        n => n,
    }
}

/// Every directory of the module with a non-test `.go` file declaring
/// `package main`, as `go build ./...` would find them (skipping vendor,
/// testdata, and names starting with `.` or `_`), sorted.
fn main_packages(root: &Path, module: &str) -> anyhow::Result<Vec<MainPackage>> {
    fn walk(dir: &Path, rel: &str, module: &str, out: &mut Vec<MainPackage>) -> anyhow::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        let mut is_main = false;
        for e in &entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let ft = e.file_type()?;
            if ft.is_file()
                && name.ends_with(".go")
                && !name.ends_with("_test.go")
                && !is_main
                && declares_main(&e.path())
            {
                is_main = true;
            }
        }
        if is_main {
            let last = if rel == "." {
                module.rsplit('/').next().unwrap_or(module)
            } else {
                rel.rsplit('/').next().unwrap_or(rel)
            };
            out.push(MainPackage {
                dir: rel.to_string(),
                binary: last.to_string(),
            });
        }
        for e in &entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if !e.file_type()?.is_dir()
                || name.starts_with('.')
                || name.starts_with('_')
                || name == "vendor"
                || name == "testdata"
                || e.path().join("go.mod").exists()
            {
                continue;
            }
            let sub = if rel == "." {
                name
            } else {
                format!("{rel}/{name}")
            };
            walk(&e.path(), &sub, module, out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, ".", module, &mut out)?;
    Ok(out)
}

/// Whether a Go file's package clause says `main`.
fn declares_main(file: &Path) -> bool {
    let Ok(text) = kiln_core::sidefile::read_to_string(
        file,
        kiln_core::sidefile::Links::Refuse,
        kiln_core::sidefile::limits::TEXT,
    ) else {
        return false;
    };
    let mut in_comment = false;
    for line in text.lines() {
        let mut l = line.trim();
        if in_comment {
            match l.find("*/") {
                Some(i) => {
                    in_comment = false;
                    l = l[i + 2..].trim();
                }
                None => continue,
            }
        }
        if l.is_empty() || l.starts_with("//") {
            continue;
        }
        if l.starts_with("/*") {
            if !l.contains("*/") {
                in_comment = true;
            }
            continue;
        }
        return l
            .strip_prefix("package")
            .map(|rest| rest.split_whitespace().next() == Some("main"))
            .unwrap_or(false);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_packages_are_found_as_go_build_would() {
        let d = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = d.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        };
        w("go.mod", "module example.com/tool\n");
        w("main.go", "// Tool does things.\npackage main\n");
        w(
            "cmd/serve/serve.go",
            "/* a\n multi-line comment */\npackage main\n",
        );
        w("greet/greet.go", "package greet\n");
        w("greet/greet_test.go", "package main\n");
        w("testdata/x/main.go", "package main\n");
        w("vendor/v/main.go", "package main\n");
        w("_old/main.go", "package main\n");
        w("sub/go.mod", "module other\n");
        w("sub/main.go", "package main\n");
        let mains = main_packages(d.path(), "example.com/tool").unwrap();
        assert_eq!(
            mains,
            vec![
                MainPackage {
                    dir: ".".into(),
                    binary: "tool".into()
                },
                MainPackage {
                    dir: "cmd/serve".into(),
                    binary: "serve".into()
                },
            ]
        );
        let text = render_init(
            "tool",
            &mains,
            &Deps::None,
            "file:///go.whl",
            crate::recipes::GO_TOOLCHAIN_HASH,
        );
        let m = kiln_core::manifest::parse_manifest(Path::new("/p/kiln.toml"), &text).unwrap();
        assert_eq!(m.targets.len(), 2, "{text}");
        assert!(
            text.contains("packages = [\".\", \"./cmd/serve\"]"),
            "{text}"
        );
        assert!(text.contains("entrypoint = [\"/bin/tool\"]"), "{text}");
    }

    #[test]
    fn a_goproxy_with_credentials_is_not_written() {
        let root = Path::new("/");
        for secret in [
            "https://alice:s3cret@goproxy.corp.example/api/go,direct",
            "https://goproxy.corp.example/go?token=s3cret",
        ] {
            assert_eq!(super::proxy_of(secret, root).unwrap(), Some(Proxy::Secret));
        }
        assert_eq!(
            super::proxy_of("https://goproxy.corp.example/go|direct", root).unwrap(),
            Some(Proxy::Url("https://goproxy.corp.example/go".into()))
        );
        assert_eq!(super::proxy_of("off", root).unwrap(), None);
    }

    #[test]
    fn requirements_are_counted_in_lines_and_blocks() {
        let go_mod = "module m\n\nrequire a.com/x v1.0.0\nrequire (\n\tb.com/y v1.0.0 // indirect\n\n\tc.com/z v0.1.0\n)\n// require d.com/w v1\nrequired_x v1\n";
        assert_eq!(super::requirements(go_mod), 3);
        assert_eq!(super::requirements("module m\n\ngo 1.22\n"), 0);
    }

    #[test]
    fn a_name_cannot_add_a_key_or_a_table() {
        // A directory named to close the string and start a table.
        let evil = "x\" }]\n[target.pwn]\nrecipe = \"go";
        let mains = vec![MainPackage {
            dir: format!("cmd/{evil}"),
            binary: evil.to_string(),
        }];
        // And a GOPROXY directory named the same way.
        let deps = Deps::Download {
            count: 1,
            proxy: Some(Proxy::Dir(evil.to_string())),
        };
        let text = render_init(
            "tool",
            &mains,
            &deps,
            "file:///go.whl\"\nx = \"1",
            crate::recipes::GO_TOOLCHAIN_HASH,
        );
        let m = kiln_core::manifest::parse_manifest(Path::new("/p/kiln.toml"), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let names: Vec<&String> = m.targets.keys().collect();
        assert_eq!(names, ["image", "tool"], "{text}");
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            v["target"]["image"]["params"]["entrypoint"][0].as_str(),
            Some(format!("/bin/{evil}").as_str())
        );
        assert_eq!(
            v["target"]["tool"]["inputs"]["proxy"]["path"].as_str(),
            Some(evil)
        );
        // A control character is refused by name.
        assert!(representable("a\u{1b}[2J", "binary name").is_err());
        assert!(representable("fine-name", "binary name").is_ok());
    }
}
