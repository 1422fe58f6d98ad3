//! kiln, a hermetic build orchestrator whose recipes are WebAssembly components.
//!
//! The crate is split by job, dependencies pointing inward:
//!
//! * [`cli`]: argv and env, printing; thin;
//! * [`addresses`]: the address rule project traffic obeys (sandbox and downloads);
//! * [`builder`]: turns a kiln.toml target into a store entry — resolves and
//!   checks inputs, computes the build key, runs the recipe, commits `/out`;
//! * [`runtime`]: wasmtime; the only module that touches it;
//! * [`sandbox`]: running a tool in fresh namespaces;
//! * [`terminal`]: the one rule for untrusted text on its way to a terminal;
//! * [`timeline`]: the report's events, stamped, for `kiln build --trace`
//!   (trace-event JSON) and `--timings` (an HTML page);
//! * [`descriptors`]: no descriptor reaches a process kiln starts unless meant to;
//! * [`gc`]: which store entries are rooted, and deleting the rest;
//! * [`image`]: reading built images back (`kiln image inspect`);
//! * [`audit`]: build records turned into closures, provenance, SBOMs, diffs;
//! * [`recipes`]: the standard recipes compiled into this binary;
//! * [`query`]: the target graph from kiln.toml alone (deps, rdeps, what a
//!   change affects, drawings);
//! * `kiln_core`: hashes, NAR, the manifest and the store, free of wasmtime.

pub mod addresses;
pub mod audit;
pub mod binary_cache;
pub mod builder;
pub mod cli;
pub mod descriptors;
pub mod executor;
pub mod fetch;
pub mod gc;
pub mod image;
pub mod interrupt;
pub mod query;
pub mod recipes;
pub mod record;
pub mod registry;
pub mod remote;
pub mod report;
pub mod run_tool;
pub mod runtime;
pub mod sandbox;
pub mod terminal;
pub mod timeline;
pub mod watch;
