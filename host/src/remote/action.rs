//! A planned step ([`SandboxSpec`]) as a REAPI Action: the input root
//! holds the step's mounts at their sandbox paths, the Command its argv,
//! complete environment and working directory, and the outputs are its
//! writable directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    Action, Command, Digest, Platform, command::EnvironmentVariable, platform::Property,
};
use prost::Message;

use super::RemoteError;
use super::merkle::{self, Blobs, DirBuilder, FileMemo, Node};
use crate::sandbox::SandboxSpec;

/// An Action ready to send, with every blob it needs.
#[derive(Debug)]
pub struct Planned {
    pub action: Digest,
    pub blobs: Blobs,
    /// The step's writable directories: where the sandbox shows each
    /// (`/work`), where it is on this machine, and the output path the
    /// Command names for it.
    pub outputs: Vec<Output>,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub guest: String,
    pub host: PathBuf,
    /// The path the Command names it by (relative to the working directory).
    pub path: String,
}

/// How an entry's cached tree is found: the store's sidecar path for it,
/// or None for a path outside the store (hashed every time).
pub type TreeCache<'a> = &'a dyn Fn(&Path) -> Option<PathBuf>;

/// Plan `spec` as an Action. `platform` is every property, sorted.
pub fn plan(
    spec: &SandboxSpec,
    timeout: std::time::Duration,
    platform: &[(String, String)],
    tree_cache: TreeCache<'_>,
    memo: &FileMemo,
) -> Result<Planned, RemoteError> {
    let mut blobs = Blobs::default();
    let mut placed: Vec<(Vec<String>, Node)> = Vec::new();
    let mut outputs = Vec::new();
    for m in &spec.mounts {
        let at = components(&m.guest)?;
        let node = if m.guest.starts_with("/cache/") {
            // Kept tool caches are this machine's: a remote step starts
            // from an empty one.
            Node::Dir(merkle::empty_dir(&mut blobs))
        } else if m.writable {
            outputs.push(Output {
                guest: m.guest.clone(),
                host: m.host.clone(),
                path: String::new(),
            });
            Node::Dir(merkle::hash_dir(&m.host, memo, &mut blobs)?)
        } else {
            match tree_cache(&m.host) {
                Some(cache) => merkle::entry_tree(&m.host, &cache, memo, &mut blobs)?,
                None => entry_uncached(&m.host, memo, &mut blobs)?,
            }
        };
        placed.push((at, node));
    }
    // The local sandbox's /tmp is a fresh tmpfs: here, an empty directory.
    if !placed
        .iter()
        .any(|(p, _)| p.first().is_some_and(|c| c == "tmp"))
    {
        placed.push((vec!["tmp".into()], Node::Dir(merkle::empty_dir(&mut blobs))));
    }
    let root = compose(placed, &mut blobs)?;

    let wd = spec.cwd.trim_start_matches('/').to_string();
    let depth = if wd.is_empty() {
        0
    } else {
        wd.split('/').count()
    };
    for o in &mut outputs {
        o.path = format!("{}{}", "../".repeat(depth), o.guest.trim_start_matches('/'));
    }
    let mut output_paths: Vec<String> = outputs.iter().map(|o| o.path.clone()).collect();
    output_paths.sort();
    output_paths.dedup();
    let properties: Vec<Property> = platform
        .iter()
        .map(|(name, value)| Property {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    // `output_files`, `output_directories` (v2.0) and the Command's
    // platform (v2.1) are deprecated, but engines of those versions read
    // them: the platform is given in both places, as Bazel does.
    #[allow(deprecated)]
    let command = Command {
        arguments: std::iter::once(spec.program.clone())
            .chain(spec.args.iter().cloned())
            .collect(),
        environment_variables: env_vars(&spec.env),
        output_files: Vec::new(),
        output_directories: Vec::new(),
        output_paths,
        platform: Some(Platform {
            properties: properties.clone(),
        }),
        working_directory: wd,
        output_node_properties: Vec::new(),
        output_directory_format: 0,
    };
    let command_digest = blobs.add_message(command.encode_to_vec());
    let action = Action {
        command_digest: Some(command_digest),
        input_root_digest: Some(root),
        timeout: Some(bazel_remote_apis::google::protobuf::Duration {
            seconds: timeout.as_secs().max(1) as i64,
            nanos: 0,
        }),
        do_not_cache: false,
        salt: Vec::new(),
        platform: Some(Platform { properties }),
    };
    let action = blobs.add_message(action.encode_to_vec());
    Ok(Planned {
        action,
        blobs,
        outputs,
    })
}

/// The environment as REAPI wants it: sorted by name.
fn env_vars(env: &BTreeMap<String, String>) -> Vec<EnvironmentVariable> {
    env.iter()
        .map(|(name, value)| EnvironmentVariable {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

/// A mount outside the store: a file or a directory, hashed now.
fn entry_uncached(path: &Path, memo: &FileMemo, blobs: &mut Blobs) -> Result<Node, RemoteError> {
    Ok(merkle::entry_tree_uncached(path, memo, blobs)?)
}

/// `/inputs/go` as `["inputs", "go"]`; every component plain.
fn components(guest: &str) -> Result<Vec<String>, RemoteError> {
    let parts: Vec<String> = guest
        .trim_start_matches('/')
        .split('/')
        .map(String::from)
        .collect();
    if parts.iter().all(|p| merkle::is_plain_name(p)) {
        Ok(parts)
    } else {
        Err(RemoteError::Setup(format!(
            "the sandbox path {guest:?} cannot be placed in an input root"
        )))
    }
}

/// The directory holding every node at its path.
fn compose(placed: Vec<(Vec<String>, Node)>, blobs: &mut Blobs) -> Result<Digest, RemoteError> {
    let mut here = DirBuilder::default();
    let mut below: BTreeMap<String, Vec<(Vec<String>, Node)>> = BTreeMap::new();
    let mut names = std::collections::BTreeSet::new();
    for (mut path, node) in placed {
        let first = path.remove(0);
        if path.is_empty() {
            if !names.insert(first.clone()) {
                return Err(RemoteError::Setup(format!(
                    "two mounts at {first:?} in one input root"
                )));
            }
            here.node(&first, node);
        } else {
            below.entry(first).or_default().push((path, node));
        }
    }
    for (name, nodes) in below {
        if !names.insert(name.clone()) {
            return Err(RemoteError::Setup(format!(
                "a mount inside another at {name:?}"
            )));
        }
        let d = compose(nodes, blobs)?;
        here.dir(&name, d);
    }
    Ok(here.finish(blobs))
}
