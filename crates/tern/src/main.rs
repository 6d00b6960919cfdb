//! `tern`: run a node on the embedded default (`tern up`) or measure one (`tern bench`).

mod admin;
mod bench;
mod carriers;
mod node;
mod serve;
mod sim;
mod up;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the node allocates small buffers on every request,
/// PDU and statement across Tokio's worker threads, where glibc's arenas spent 15–17 % of
/// the process's CPU (`perf`, one PostgreSQL node under `tern bench messages`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tern",
    version,
    about = "Tern: a self-hosted, Twilio-compatible communications platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node on the embedded default: SQLite, in-process queue, simulated carrier.
    Up(up::UpArgs),
    /// Run a production node on the store and bus named in its config.
    Serve(serve::ServeArgs),
    /// Operator tasks.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Measure a running node.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Simulators for tests, demos and benchmarks.
    #[command(subcommand)]
    Sim(sim::SimCommand),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Up(args) => runtime.block_on(up::run(args)),
        Command::Serve(args) => runtime.block_on(serve::serve(args)),
        Command::Admin(cmd) => runtime.block_on(admin::run(cmd)),
        Command::Bench(cmd) => runtime.block_on(bench::run(cmd)),
        Command::Sim(cmd) => runtime.block_on(sim::run(cmd)),
    }
}
