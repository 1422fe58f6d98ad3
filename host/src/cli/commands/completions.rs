//! `kiln completions` and `kiln man`: generated from the flags' own
//! definitions, so they cannot drift from what kiln accepts.

use crate::cli::args::Cli;

/// `kiln completions SHELL`: the shell's completion script on stdout.
pub(super) fn completions(shell: clap_complete::Shell) {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "kiln", &mut std::io::stdout());
}

/// `kiln man`: the manual page (roff) on stdout.
pub(super) fn man() -> anyhow::Result<()> {
    let cmd = <Cli as clap::CommandFactory>::command();
    match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
        // `kiln man | head` closes the pipe early: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}
