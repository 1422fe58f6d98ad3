//! Phase two of argument handling: each command, in its own file, opens
//! what it needs (`open`), turns its flags into options (`options`) and
//! calls the library. Printing happens here and nowhere below.
//!
//! * `build`: `kiln build` (and `--watch`), result links; `run`: `kiln run`;
//! * `hash`: `kiln hash` and `kiln prefetch`; `lock`: `kiln lock`;
//! * `audit`: `kiln audit` and `kiln verify`; `outputs`: what a command
//!   naming an output (a target or a path) means;
//! * `cache`: binary caches (`kiln cache`, `build --push`); `push`: `kiln
//!   push` and `kiln image keygen`; `gc`: `kiln gc`;
//! * `query`: `kiln query` and `kiln graph`;
//! * `run_tool`: `kiln run-tool`;
//! * `scaffold`: `kiln init`, `kiln new-recipe`; `completions`: shell
//!   completions and the man page.

mod audit;
mod build;
mod cache;
mod completions;
mod gc;
mod hash;
mod lock;
mod outputs;
mod push;
mod query;
mod run;
mod run_tool;
mod scaffold;

use super::args::{Cli, Command, ImageCommand};

pub(super) fn run(cli: Cli) -> anyhow::Result<()> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Build(a) => build::build(a, quiet),
        Command::Run(a) => run::run(a, quiet),
        Command::NewRecipe(a) => scaffold::new_recipe(a, quiet),
        Command::Init(a) => scaffold::init(a, quiet),
        Command::RunTool(a) => run_tool::run_tool(a, quiet),
        Command::Completions { shell } => {
            completions::completions(shell);
            Ok(())
        }
        Command::Man => completions::man(),
        Command::Hash(h) => hash::hash(h),
        Command::Prefetch(a) => hash::prefetch(a, quiet),
        Command::Lock(a) => lock::lock(a, quiet),
        Command::Gc(a) => gc::run(a, quiet),
        Command::Audit(a) => audit::audit(a, quiet),
        Command::Verify(a) => audit::verify(a, quiet),
        Command::Cache(c) => cache::run(c, quiet),
        Command::Push(a) => push::run(a, quiet),
        Command::Query(q) => query::query(q),
        Command::Graph(a) => query::graph(a),
        Command::Image(ImageCommand::Keygen { secret_file }) => push::keygen(&secret_file),
        Command::Image(ImageCommand::Inspect { path, json }) => {
            let summary = crate::image::inspect(&path)?;
            if json {
                jsonln!(&summary);
            } else {
                out!("{}", crate::image::render(&summary));
            }
            Ok(())
        }
    }
}
