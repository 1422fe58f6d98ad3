//! The `kiln` binary: everything lives in the library; see `kiln::cli`.

fn main() {
    std::process::exit(kiln::cli::main());
}
