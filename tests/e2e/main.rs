//! Black-box tests: they run the `kiln` binary as a user would, each with its
//! own temporary `KILN_HOME`, sharing one cache of compiled recipes.

#![expect(
    clippy::unwrap_used,
    reason = "a test that cannot set up its world should fail loudly"
)]

#[path = "../fixtures.rs"]
mod fixtures;
mod support;

mod audit;
mod base_image;
mod binary_cache;
mod binary_cache_servers;
mod caches;
mod go_image;
mod hash_cli;
mod hostile_images;
mod hostile_inputs;
mod hostile_recipes;
mod hostile_sandbox;
mod hostile_tools;
mod inputs;
mod oci_image;
mod python_recipe;
mod registry;
mod regressions;
mod remote;
mod runtime;
mod scaffold;
mod sdk_doctests;
mod store_hygiene;
mod timings;
mod trace;
mod watch;
mod workspace;
mod writing_recipes;
