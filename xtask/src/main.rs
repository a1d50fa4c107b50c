//! Project automation: `cargo xtask <task>`. A small dispatcher; each task
//! is a module.

mod fixtures;
mod fuzz;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "kexec-rs project automation")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Regenerate the synthesized image fixtures in fixtures/.
    Fixtures {
        /// Only check that the committed fixtures match the generator.
        #[arg(long)]
        check: bool,
    },
    /// Build and run every fuzz target in fuzz/ for N seconds each; fail on any crash.
    Fuzz(fuzz::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Fixtures { check } => fixtures::run(check),
        Task::Fuzz(args) => fuzz::run(args),
    }
}
