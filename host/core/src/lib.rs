//! kiln's core model, free of wasmtime so that it builds and tests fast.
//!
//! * [`beneath`]: paths resolved beneath a root, never through a symlink;
//! * [`hash`]: SHA-256 digests in SRI, Nix base32 and hex;
//! * [`hashpipe`]: SHA-256 on a second thread while the caller reads;
//! * [`nar`]: the NAR serialisation and the Nix-compatible tree hash;
//! * [`listing`]: per-file listings of a tree and their differences;
//! * [`manifest`]: parsing `kiln.toml` into targets, inputs and params;
//! * [`sidefile`]: kiln.toml, kiln.lock, configs, records: regular files, never blocking;
//! * [`store`]: the content-addressed store under `$KILN_HOME`;
//! * [`tarbound`]: a tar reader's headers bounded (no 4 GiB "long name");
//! * [`unpack`]: archives unpacked beneath their directory, bounded;
//! * [`usage`]: how many files and bytes a tree holds.
//!
//! Nothing here runs recipes or tools: that is the `kiln` crate's job.

pub mod address;
pub mod beneath;
pub mod hash;
pub mod hashcache;
pub mod hashpipe;
pub mod key;
pub mod listing;
pub mod lockfile;
pub mod manifest;
pub mod nar;
pub mod nar_restore;
pub mod pathfilter;
pub mod sidefile;
pub mod store;
pub mod tarbound;
pub mod unpack;
pub mod usage;
pub mod workspace;
