//! `cargo xtask <task>`: a thin dispatcher over the xtask library's modules.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "kexec-rs project automation")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Fetch kernels and guest userland into the download cache.
    Fetch(xtask::fetch::FetchArgs),
    /// Build the guests and run the QEMU scenario suite through cargo-nextest.
    VmTest(xtask::vm_test::VmTestArgs),
    /// Test kernels (Debian series, Alpine releases, your own): header, config, kexec scenarios.
    Matrix(xtask::matrix::MatrixArgs),
    /// Check (and with --install, install) the host tools the VM tests need.
    Tools {
        /// Install what is missing with apt-get.
        #[arg(long)]
        install: bool,
    },
    /// Regenerate the synthesized image fixtures in fixtures/.
    Fixtures {
        /// Only check that the committed fixtures match the generator.
        #[arg(long)]
        check: bool,
    },
    /// Time loads, kexec transitions and reboots against kexec-tools and firmware reboots.
    Bench(xtask::bench::Args),
    /// Build and run every fuzz target in fuzz/ for N seconds each; fail on any crash.
    Fuzz(xtask::fuzz::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        // Fetching is the first step of the README's test command on a fresh machine: it also
        // brings the tools (apt's dpkg-deb, cargo-nextest, …) that the tests need.
        Task::Fetch(args) => xtask::tools::ensure(true)
            .and_then(|()| {
                xtask::cache::Cache::open(xtask::cache::default_root()).map_err(anyhow::Error::from)
            })
            .and_then(|c| xtask::fetch::run(&c, &args))
            .map(|f| {
                eprintln!(
                    "fetch: {} kernel(s), {} userland role(s) in the manifests",
                    f.kernels.len(),
                    f.userland.len()
                )
            }),
        Task::VmTest(args) => xtask::vm_test::run(&args),
        Task::Matrix(args) => xtask::matrix::main(&args),
        Task::Tools { install } => {
            xtask::tools::ensure(install).map(|_| eprintln!("tools: all present"))
        }
        Task::Fixtures { check } => xtask::fixtures::run(check),
        Task::Fuzz(args) => xtask::fuzz::run(args),
        Task::Bench(args) => xtask::bench::run(&args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
