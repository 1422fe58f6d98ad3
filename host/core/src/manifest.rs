//! `kiln.toml`: targets, their recipe, inputs and params.
//!
//! Parsing is pure: it reads the text it is given and never touches the
//! filesystem, so every error points into the file (`kiln.toml:7:9`) and says
//! what would be valid. Checking that paths exist and hashes match is the
//! orchestrator's job.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::address::{self, Naming};
use crate::hash::Sha256Hash;

/// A place in kiln.toml, printed `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A kiln.toml that could not be used, with the place that is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ManifestError {
    pub location: Location,
    pub message: String,
}

/// A parsed kiln.toml.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The kiln.toml file itself.
    pub file: PathBuf,
    /// Its directory: kiln.lock lives here.
    pub dir: PathBuf,
    /// Targets by address (plain names without a workspace).
    pub targets: BTreeMap<String, Target>,
    /// `[cache]`: binary caches the project suggests.
    pub cache: ProjectCaches,
    /// How targets are addressed.
    pub naming: Naming,
    /// `[workspace]`, when this file declares one.
    pub workspace: Option<WorkspaceDecl>,
    /// Every kiln.toml read to make this manifest (the root first).
    pub files: Vec<PathBuf>,
    /// In a workspace, every member package's directory, loaded or not
    /// (lexically normalised): their kiln.toml files are settings, never
    /// another package's source. Empty outside a workspace.
    pub package_dirs: std::collections::BTreeSet<PathBuf>,
}

/// `[workspace]`: which directories below the root are packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceDecl {
    /// Globs of package directories, relative to the root (`services/*`).
    pub members: Vec<String>,
    /// Globs of directories the members' globs leave out.
    pub exclude: Vec<String>,
    pub at: Location,
}

/// The binary caches a kiln.toml suggests (`[cache]`). A suggestion only:
/// trusting a cache's key lets it decide what a build's output is, which a
/// project cannot grant itself, so kiln uses these only when the user
/// accepts them (`--accept-project-caches` or the user's config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectCaches {
    pub substituters: Vec<String>,
    /// `name:base64` public keys.
    pub trusted_public_keys: Vec<String>,
    /// Where the table is.
    pub at: Option<Location>,
}

/// One `[target.NAME]` table.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its address: the key in [`Manifest::targets`] (a plain name
    /// without a workspace, `services/api:image` in one).
    pub name: String,
    /// Its name within its package (`image`): store entries are named so.
    pub local: String,
    /// Its package: the directory path below the workspace root ("" for
    /// the root, and for a project without a workspace).
    pub package: String,
    /// Its package's directory: `path` inputs are relative to it and stay
    /// inside it.
    pub dir: PathBuf,
    pub recipe: RecipeRef,
    pub inputs: BTreeMap<String, Input>,
    /// The `params` table, as JSON: handed to the recipe as is.
    pub params: serde_json::Value,
    /// Set for fixed-output targets: the NAR hash the output must have.
    /// Only such targets may give their tools network access.
    pub output_hash: Option<Sha256Hash>,
    pub at: Location,
}

/// Which recipe builds a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipeRef {
    /// A recipe that ships inside kiln (`recipe = "go"`).
    Standard(String),
    /// A component on disk (`recipe = { path = "r.wasm", hash = "sha256-…" }`).
    Wasm {
        path: PathBuf,
        hash: Option<Sha256Hash>,
        hash_at: Option<Location>,
    },
}

/// One input of a target.
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub source: Source,
    /// The pinned hash, when kiln.toml gives one (else kiln.lock pins it).
    pub hash: Option<Sha256Hash>,
    /// Where the input is declared.
    pub at: Location,
    /// Where its hash is written, when it is.
    pub hash_at: Option<Location>,
}

/// Where an input's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file or directory, relative to kiln.toml (stored here resolved).
    Path { path: PathBuf, exclude: Vec<String> },
    /// A download; `unpack` extracts an archive like `nix-prefetch-url --unpack`.
    Url { url: String, unpack: bool },
    /// Another target's output, by address.
    Target(String),
    /// A container image from a registry, pinned by digest
    /// (`REGISTRY/REPO[:TAG]@sha256:…`), stored as an OCI layout.
    Image { reference: String },
}

impl Source {
    /// A short description for messages and audits: `path ./src`, `url …`, `target hello`.
    pub fn describe(&self, base: &Path) -> String {
        match self {
            Source::Path { path, .. } => {
                format!(
                    "path {}",
                    path.strip_prefix(base)
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| path.display().to_string())
                )
            }
            Source::Url { url, .. } => format!("url {url}"),
            Source::Target(t) => format!("target {t}"),
            Source::Image { reference } => format!("image {reference}"),
        }
    }
}

/// What `path` inputs leave out unless they say otherwise: VCS metadata,
/// kiln's own result links (which would otherwise change the source's hash
/// on every build), and kiln's own files beside them: a target is keyed on
/// its own table in kiln.toml and its own pins in kiln.lock, so editing
/// another target (or a comment) does not rebuild a `path = "."` target.
pub const DEFAULT_EXCLUDES: &[&str] = &[".git", "/result", "/result-*", "/kiln.toml", "/kiln.lock"];

/// A param named `*_hash` written as a sha256 hash is a pin a recipe's
/// fixed-output step names, and so is `vendor_hash` (the go recipe's
/// download pin) whatever it holds: checked here, where its place is
/// known, not when the recipe reaches it. Other values (a `commit_hash =
/// "3f2a…"`) are the recipe's business.
fn check_param_pin(key: &str, value: &Spanned<toml::Value>) -> Result<(), String> {
    match value.get_ref() {
        toml::Value::String(s)
            if key == "vendor_hash" || (key.ends_with("_hash") && s.starts_with("sha256")) =>
        {
            Sha256Hash::parse(s)
                .map(|_| ())
                .map_err(|e| format!("params.{key}: {e}"))
        }
        _ => Ok(()),
    }
}

/// A path input's patterns: `exclude` added to [`DEFAULT_EXCLUDES`]
/// (unless `default_excludes = false` drops them), each once.
fn excludes(exclude: Option<Vec<String>>, defaults: bool) -> Vec<String> {
    let mut all: Vec<String> = if defaults {
        DEFAULT_EXCLUDES.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    for p in exclude.unwrap_or_default() {
        if !all.contains(&p) {
            all.push(p);
        }
    }
    all
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    target: BTreeMap<String, Spanned<RawTarget>>,
    cache: Option<Spanned<RawCache>>,
    workspace: Option<Spanned<RawWorkspace>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspace {
    members: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCache {
    #[serde(default)]
    substituters: Vec<String>,
    #[serde(default)]
    trusted_public_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    recipe: Spanned<toml::Value>,
    #[serde(default)]
    inputs: BTreeMap<Spanned<String>, Spanned<RawInput>>,
    #[serde(default)]
    params: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    output_hash: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    path: Option<String>,
    url: Option<String>,
    target: Option<String>,
    image: Option<String>,
    hash: Option<Spanned<String>>,
    #[serde(default)]
    unpack: bool,
    exclude: Option<Vec<String>>,
    default_excludes: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWasmRecipe {
    path: String,
    hash: Option<String>,
}

/// Whether kiln.toml's `text` has a `[workspace]` table (false for text
/// that is not TOML: parsing it properly then says what is wrong).
pub fn declares_workspace(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Peek {
        workspace: Option<serde::de::IgnoredAny>,
    }
    toml::from_str::<Peek>(text).is_ok_and(|p| p.workspace.is_some())
}

/// Whether the `[workspace]` in kiln.toml's `text` may name the directory
/// `rel` (a `/`-separated path below its root) as a member: false only
/// when its `members` and `exclude` read as lists of strings and no
/// member glob matches `rel` (or an exclude does). A workspace that does
/// not claim a directory, broken or not, is no business of the project
/// there; one that may is opened, and its errors are said.
pub fn workspace_may_name(text: &str, rel: &str) -> bool {
    #[derive(Deserialize)]
    struct Peek {
        workspace: Decl,
    }
    #[derive(Deserialize)]
    struct Decl {
        #[serde(default)]
        members: Vec<String>,
        #[serde(default)]
        exclude: Vec<String>,
    }
    let Ok(Peek { workspace }) = toml::from_str::<Peek>(text) else {
        return true;
    };
    let hit = |g: &String| crate::pathfilter::glob_match(g.as_bytes(), rel.as_bytes());
    workspace.members.iter().any(hit) && !workspace.exclude.iter().any(hit)
}

/// Parse `text`, the contents of the kiln.toml at `file`: a project of
/// its own, whose `target = "…"` inputs name targets of this file.
pub fn parse_manifest(file: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let manifest = parse_package(file, text, Naming::Single, "")?;
    manifest.check_target_refs()?;
    Ok(manifest)
}

/// Parse the kiln.toml at `file` as package `package` of a project named
/// by `naming`; its targets are keyed by address. References to other
/// packages are not checked here (see [`Manifest::check_target_refs`]).
pub fn parse_package(
    file: &Path,
    text: &str,
    naming: Naming,
    package: &str,
) -> Result<Manifest, ManifestError> {
    let lines = LineIndex::new(text);
    let at = |span: std::ops::Range<usize>| lines.location(file, span.start);
    let err = |span: std::ops::Range<usize>, message: String| ManifestError {
        location: at(span),
        message,
    };

    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        err(span, explain_toml_error(e.message()))
    })?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();

    let mut targets = BTreeMap::new();
    for (name, raw_target) in raw.target {
        let target_at = at(raw_target.span());
        let raw_target = raw_target.into_inner();
        check_name(&name).map_err(|m| ManifestError {
            location: target_at.clone(),
            message: format!("target '{name}': {m}"),
        })?;
        let addr = address::address(naming, package, &name);

        let recipe = parse_recipe(&raw_target.recipe, &dir, &at)?;
        let mut inputs = BTreeMap::new();
        for (input_name, raw_input) in raw_target.inputs {
            let name_span = input_name.span();
            let input_name = input_name.into_inner();
            check_name(&input_name)
                .map_err(|m| err(name_span.clone(), format!("input '{input_name}': {m}")))?;
            let input_at = at(raw_input.span());
            let input = parse_input(
                &input_name,
                raw_input.into_inner(),
                (&dir, naming, package),
                input_at,
                &at,
            )?;
            inputs.insert(input_name, input);
        }
        let output_hash = match raw_target.output_hash {
            None => None,
            Some(h) => Some(
                Sha256Hash::parse(h.get_ref())
                    .map_err(|e| err(h.span(), format!("output_hash: {e}")))?,
            ),
        };
        let mut table = toml::Table::new();
        for (key, value) in raw_target.params {
            check_param_pin(key.get_ref(), &value).map_err(|m| err(value.span(), m))?;
            table.insert(key.into_inner(), value.into_inner());
        }
        let params = serde_json::to_value(&table).map_err(|e| ManifestError {
            location: target_at.clone(),
            message: format!("target '{name}': params cannot be handed to the recipe: {e}"),
        })?;
        targets.insert(
            addr.clone(),
            Target {
                name: addr,
                local: name,
                package: package.to_string(),
                dir: dir.clone(),
                recipe,
                inputs,
                params,
                output_hash,
                at: target_at,
            },
        );
    }

    let cache = match raw.cache {
        None => ProjectCaches::default(),
        Some(c) => {
            let cache_at = at(c.span());
            let c = c.into_inner();
            ProjectCaches {
                substituters: c.substituters,
                trusted_public_keys: c.trusted_public_keys,
                at: Some(cache_at),
            }
        }
    };
    let workspace = raw.workspace.map(|w| {
        let at = at(w.span());
        let w = w.into_inner();
        WorkspaceDecl {
            members: w.members,
            exclude: w.exclude,
            at,
        }
    });
    Ok(Manifest {
        file: file.to_path_buf(),
        dir,
        targets,
        cache,
        naming,
        workspace,
        files: vec![file.to_path_buf()],
        package_dirs: Default::default(),
    })
}

fn parse_recipe(
    value: &Spanned<toml::Value>,
    dir: &Path,
    at: &impl Fn(std::ops::Range<usize>) -> Location,
) -> Result<RecipeRef, ManifestError> {
    let err = |message: String| ManifestError {
        location: at(value.span()),
        message,
    };
    match value.get_ref() {
        toml::Value::String(name) => Ok(RecipeRef::Standard(name.clone())),
        toml::Value::Table(t) => {
            let raw: RawWasmRecipe =
                toml::Value::Table(t.clone())
                    .try_into()
                    .map_err(|e: toml::de::Error| {
                        err(format!("recipe: {}", explain_toml_error(e.message())))
                    })?;
            let (hash, hash_at) = match raw.hash {
                None => (None, None),
                Some(h) => {
                    // The span of a value inside an inline table re-parsed from a
                    // Value is lost, so the recipe table's place stands in for it.
                    let parsed =
                        Sha256Hash::parse(&h).map_err(|e| err(format!("recipe hash: {e}")))?;
                    (Some(parsed), Some(at(value.span())))
                }
            };
            Ok(RecipeRef::Wasm {
                path: dir.join(raw.path),
                hash,
                hash_at,
            })
        }
        other => Err(err(format!(
            "recipe must be a standard recipe's name (\"go\", \"oci-image\") or {{ path = \"my-recipe.wasm\", hash = \"sha256-…\" }}, not a {}",
            other.type_str()
        ))),
    }
}

fn parse_input(
    name: &str,
    raw: RawInput,
    (dir, naming, package): (&Path, Naming, &str),
    input_at: Location,
    at: &impl Fn(std::ops::Range<usize>) -> Location,
) -> Result<Input, ManifestError> {
    let err = |message: String| ManifestError {
        location: input_at.clone(),
        message: format!("input '{name}': {message}"),
    };
    let sources = [
        raw.path.is_some(),
        raw.url.is_some(),
        raw.target.is_some(),
        raw.image.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if sources != 1 {
        return Err(err(
            "give exactly one of path = \"…\", url = \"…\", target = \"…\" or image = \"…\""
                .to_string(),
        ));
    }
    if let Some(reference) = raw.image {
        if raw.hash.is_some() {
            return Err(err(
                "an image is pinned by the digest in its reference (…@sha256:…); remove hash"
                    .to_string(),
            ));
        }
        if raw.unpack || raw.exclude.is_some() || raw.default_excludes.is_some() {
            return Err(err(
                "unpack, exclude and default_excludes do not apply to an image".to_string(),
            ));
        }
        check_image_pin(&reference).map_err(err)?;
        return Ok(Input {
            name: name.to_string(),
            source: Source::Image { reference },
            hash: None,
            at: input_at,
            hash_at: None,
        });
    }
    if raw.unpack && raw.url.is_none() {
        return Err(err("unpack = true only applies to url inputs".to_string()));
    }
    if (raw.exclude.is_some() || raw.default_excludes.is_some()) && raw.path.is_none() {
        return Err(err(
            "exclude and default_excludes only apply to path inputs".to_string(),
        ));
    }
    let source = if let Some(p) = raw.path {
        Source::Path {
            path: dir.join(p),
            exclude: excludes(raw.exclude, raw.default_excludes.unwrap_or(true)),
        }
    } else if let Some(url) = raw.url {
        if !(url.starts_with("http://")
            || url.starts_with("https://")
            || url.starts_with("file://"))
        {
            return Err(err(format!(
                "url '{url}' must start with http://, https:// or file://"
            )));
        }
        Source::Url {
            url,
            unpack: raw.unpack,
        }
    } else {
        let t = raw.target.unwrap_or_default();
        if raw.hash.is_some() {
            return Err(err(format!(
                "a target input takes its hash from target '{t}' itself; remove hash (use output_hash on '{t}' to pin it)"
            )));
        }
        Source::Target(address::resolve_ref(naming, package, &t).map_err(err)?)
    };
    let (hash, hash_at) = match raw.hash {
        None => (None, None),
        Some(h) => {
            let loc = at(h.span());
            let parsed = Sha256Hash::parse(h.get_ref()).map_err(|e| ManifestError {
                location: loc.clone(),
                message: format!("input '{name}': {e}"),
            })?;
            (Some(parsed), Some(loc))
        }
    };
    Ok(Input {
        name: name.to_string(),
        source,
        hash,
        at: input_at,
        hash_at,
    })
}

fn check_name(name: &str) -> Result<(), String> {
    address::check_name(name)
}

/// An image reference must end in `@sha256:` and 64 hex digits: the digest
/// is the pin (the rest of the reference is checked when it is pulled).
fn check_image_pin(reference: &str) -> Result<(), String> {
    let digest = reference.rsplit_once('@').map(|(_, d)| d);
    match digest.and_then(|d| d.strip_prefix("sha256:")) {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "image '{reference}' is not pinned by digest: write REGISTRY/REPO[:TAG]@sha256:<64 hex digits> (`skopeo inspect --format '{{{{.Digest}}}}' docker://REF` prints it); a tag alone can change under you"
        )),
    }
}

impl Target {
    /// The targets whose outputs this target consumes, by address.
    pub fn target_deps(&self) -> impl Iterator<Item = &str> {
        self.inputs.values().filter_map(|i| match &i.source {
            Source::Target(t) => Some(t.as_str()),
            _ => None,
        })
    }
}

impl Manifest {
    /// The patterns a `path` input at `path` leaves out: its `exclude` and,
    /// while the default excludes stand (they leave out `/kiln.toml`), the
    /// kiln.toml of every workspace package below `path`. A package's
    /// settings are not its parent's source: editing a member's kiln.toml
    /// rebuilds only the targets it defines, not a root `path = "."`.
    pub fn source_excludes<'a>(
        &self,
        path: &Path,
        exclude: &'a [String],
    ) -> std::borrow::Cow<'a, [String]> {
        if self.package_dirs.is_empty() || !exclude.iter().any(|p| p == "/kiln.toml") {
            return std::borrow::Cow::Borrowed(exclude);
        }
        let root = lexical(path);
        // Component order keeps a directory's descendants together.
        // Member names are plain (letters, digits, '-', '_', '.'): no glob.
        let below: Vec<String> = self
            .package_dirs
            .range(root.clone()..)
            .map_while(|dir| dir.strip_prefix(&root).ok())
            .filter(|rel| !rel.as_os_str().is_empty())
            .map(|rel| format!("/{}/kiln.toml", rel.display()))
            .collect();
        if below.is_empty() {
            return std::borrow::Cow::Borrowed(exclude);
        }
        std::borrow::Cow::Owned([exclude, &below[..]].concat())
    }

    /// Every `target = "…"` input names a target here, and the targets
    /// form no cycle.
    pub fn check_target_refs(&self) -> Result<(), ManifestError> {
        for t in self.targets.values() {
            for i in t.inputs.values() {
                if let Source::Target(dep) = &i.source
                    && !self.targets.contains_key(dep)
                {
                    return Err(ManifestError {
                        location: i.at.clone(),
                        message: format!("input '{}': {}", i.name, self.why_unknown(dep)),
                    });
                }
            }
        }
        // Depth-first, iteratively (a chain of 10,000 targets is fine);
        // `stack` is the current path, for the message.
        #[derive(Clone, Copy, PartialEq)]
        enum State {
            Open,
            Done,
        }
        let mut state: std::collections::HashMap<&str, State> =
            std::collections::HashMap::with_capacity(self.targets.len());
        for root in self.targets.keys() {
            if state.contains_key(root.as_str()) {
                continue;
            }
            let mut stack: Vec<(&str, Vec<&str>)> =
                vec![(root, self.targets[root].target_deps().collect())];
            state.insert(root, State::Open);
            while let Some((name, deps)) = stack.last_mut() {
                let name = *name;
                let Some(dep) = deps.pop() else {
                    state.insert(name, State::Done);
                    stack.pop();
                    continue;
                };
                match state.get(dep) {
                    Some(State::Done) => {}
                    Some(State::Open) => {
                        let pos = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        let mut cycle: Vec<&str> = stack[pos..].iter().map(|(n, _)| *n).collect();
                        cycle.push(dep);
                        return Err(ManifestError {
                            location: self.targets[dep].at.clone(),
                            message: format!(
                                "targets form a cycle: {}; a target cannot depend on its own output",
                                cycle.join(" -> ")
                            ),
                        });
                    }
                    None => {
                        state.insert(dep, State::Open);
                        stack.push((dep, self.targets[dep].target_deps().collect()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Why `address` names no target here, with what would.
    pub fn why_unknown(&self, address: &str) -> String {
        if self.naming == Naming::Single {
            let known: Vec<_> = self.targets.keys().map(String::as_str).collect();
            return format!(
                "no target '{address}' in this file (targets: {})",
                known.join(", ")
            );
        }
        let (pkg, _) = address::split(address);
        let known: Vec<&str> = self
            .targets
            .values()
            .filter(|t| t.package == pkg)
            .map(|t| t.local.as_str())
            .collect();
        if known.is_empty() {
            format!("no target '{address}': the workspace has no package '{pkg}' with targets")
        } else {
            format!(
                "no target '{address}' (package '{pkg}' declares: {})",
                known.join(", ")
            )
        }
    }

    /// `names` and everything they depend on, dependencies first.
    pub fn build_order(&self, names: &[String]) -> Result<Vec<&Target>, UnknownTarget> {
        let mut order: Vec<&Target> = Vec::new();
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for n in names {
            let Some(root) = self.targets.get(n) else {
                return Err(UnknownTarget {
                    file: self.file.clone(),
                    name: n.clone(),
                    known: self.targets.keys().cloned().collect(),
                });
            };
            if !seen.insert(&root.name) {
                continue;
            }
            // Post-order, iteratively: a target after its dependencies.
            let mut stack: Vec<(&Target, Vec<&str>)> = vec![(root, root.target_deps().collect())];
            while let Some((t, deps)) = stack.last_mut() {
                match deps.pop() {
                    Some(d) => {
                        if seen.insert(d) {
                            let dt = &self.targets[d];
                            stack.push((dt, dt.target_deps().collect()));
                        }
                    }
                    None => {
                        order.push(t);
                        stack.pop();
                    }
                }
            }
        }
        Ok(order)
    }
}

/// A target name that kiln.toml does not declare.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} has no target '{name}' (targets: {})", file.display(), known.join(", "))]
pub struct UnknownTarget {
    pub file: PathBuf,
    pub name: String,
    pub known: Vec<String>,
}

/// toml's messages, with the valid keys spelled out where serde lists them.
fn explain_toml_error(message: &str) -> String {
    let raw = message.trim().replace('`', "'");
    // `params = { … }` then `params.platforms = […]`: TOML closes an inline
    // table where it is written.
    if raw.contains("inline table") && (raw.contains("dotted key") || raw.contains("extend")) {
        return format!(
            "{raw}: a table written inline (`params = {{ … }}`) is complete where it stands, so a later `params.KEY = …` line cannot add to it. Put the key inside the braces, or write the table as lines (`params.a = 1` for each key, or a `[target.NAME.params]` section)"
        );
    }
    raw
}

/// Where each line of a text starts, to turn byte offsets into places
/// without rescanning the text for each one.
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// 1-based line and column of byte `offset`.
    fn location(&self, file: &Path, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|s| *s <= offset);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |l| l.chars().count())
            + 1;
        Location {
            file: file.to_path_buf(),
            line,
            column,
        }
    }
}

/// `path` with `.` and `..` resolved as written (no symlinks followed).
pub fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests;
