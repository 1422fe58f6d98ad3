//! Where a tool step runs: this machine's sandbox ([`crate::sandbox`]) or a
//! Remote Execution API engine ([`crate::remote`]). The runtime plans every
//! step as a [`SandboxSpec`] either way; this is the one place that picks.
//!
//! The choice is the user's (flags, user config, environment), never a
//! kiln.toml's: a project may not choose where its code runs. Fixed-output
//! steps always run here (they need the network and a pin); see
//! `runtime/host/fixed_output.rs`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::sandbox::{self, SandboxError, SandboxMode, SandboxOutput, SandboxSpec};

/// Where one step ran, when it was not here: for the build record and
/// `kiln audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The engine's address, without credentials (`grpc://host:port`).
    pub executor: String,
    /// The REAPI instance name (empty: the default instance).
    pub instance: String,
    /// The action's digest (`sha256 hex/size`).
    pub action: String,
    /// The worker the engine names, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Whether the engine answered from its action cache (nothing ran).
    pub cached: bool,
}

/// A remote engine that runs planned steps.
pub trait RemoteRunner: Send + Sync + std::fmt::Debug {
    /// Run `spec` remotely (or, for a cache, answer it from the action
    /// cache or run it here): its writable mounts then hold what the step
    /// left, after every check a local run's output gets. The placement
    /// says where the answer came from when it was not this machine.
    fn run(&self, spec: &SandboxSpec) -> Result<(SandboxOutput, Option<Placement>), SandboxError>;

    /// Whether steps run on the engine (false: it is only a cache in front
    /// of this machine's sandbox).
    fn executes(&self) -> bool;
}

/// Where this build's tool steps run.
#[derive(Debug, Clone)]
pub enum Executor {
    /// This machine's sandbox, in this mode.
    Local(SandboxMode),
    /// A remote engine (or its action cache, in front of this machine's
    /// sandbox).
    Remote(Arc<dyn RemoteRunner>),
}

impl Default for Executor {
    fn default() -> Self {
        Executor::Local(SandboxMode::Hermetic)
    }
}

impl Executor {
    /// Run `spec` to completion where this executor runs steps.
    pub fn run(
        &self,
        spec: &SandboxSpec,
    ) -> Result<(SandboxOutput, Option<Placement>), SandboxError> {
        match self {
            Executor::Local(mode) => sandbox::run(spec, *mode).map(|out| (out, None)),
            Executor::Remote(remote) => {
                crate::interrupt::check()?;
                remote.run(spec)
            }
        }
    }

    /// Whether steps run on a remote engine.
    pub fn is_remote(&self) -> bool {
        matches!(self, Executor::Remote(r) if r.executes())
    }
}
