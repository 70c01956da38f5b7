//! The `ssm` command line.
//!
//! Each subcommand lives in its own file with its `clap` arguments and a `run` function, so that
//! the command line mirrors the library's modules. Every command exits 0 on success and 1 with a
//! one-line reason on stderr on any failure.

use clap::{Parser, Subcommand};

pub mod ams_server;
pub mod bench;
pub mod broker;
pub mod check;
pub mod demo;
pub mod dropin;
pub mod enqueue;
pub mod generate;
pub mod open;
pub mod queue;
pub mod receive;
pub mod seal;
pub mod send;
pub mod status;

/// Secure STOMP Messenger: signed, encrypted store-and-forward messaging over STOMP brokers.
#[derive(Debug, Parser)]
#[command(name = "ssm", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `ssm`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole protocol on this machine: PKI, embedded broker, receiver and sender.
    Demo(demo::Args),
    /// Send the messages of an outgoing queue to a receiver through a broker.
    Send(send::Args),
    /// Receive messages from a broker, verify them and store them in the incoming queue.
    Receive(receive::Args),
    /// Run the embedded STOMP broker (in memory, not durable: for tests and demos).
    Broker(broker::Args),
    /// Run an AMS-compatible HTTPS server (in memory, not durable: for tests and demos, not a
    /// production service).
    AmsServer(ams_server::Args),
    /// Sign and encrypt a message as a sender does (`openssl smime` compatible).
    Seal(seal::Args),
    /// Decrypt and verify a message as a receiver does (`openssl smime` compatible).
    Open(open::Args),
    /// Add files (or stdin) to an outgoing queue, as the accounting client does.
    Enqueue(enqueue::Args),
    /// Inspect or clean an outgoing queue.
    Queue(queue::Args),
    /// Measure end-to-end throughput, latency and memory.
    Bench(bench::Args),
    /// Check a configuration without starting: files, keys, expiry, CAs, broker, destination.
    Check(check::Args),
    /// Print queue depths and the oldest message's age.
    Status(status::Args),
    /// Write man pages generated from these definitions into a directory (for packagers).
    #[command(hide = true)]
    GenerateMan(generate::ManArgs),
    /// Print a shell completion script (for packagers).
    #[command(hide = true)]
    Completions(generate::CompletionArgs),
}

/// Parses the command line, runs the command and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Send(args) => send::run(args),
        Command::Receive(args) => receive::run(args),
        Command::Broker(args) => broker::run(args),
        Command::AmsServer(args) => ams_server::run(args),
        Command::Seal(args) => seal::run(args),
        Command::Open(args) => open::run(args),
        Command::Enqueue(args) => enqueue::run(args),
        Command::Queue(args) => queue::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Check(args) => check::run(args),
        Command::Status(args) => status::run(args),
        Command::GenerateMan(args) => generate::man(args),
        Command::Completions(args) => generate::completions(args),
    };
    match result {
        Ok(()) => 0,
        Err(err) => {
            // The error may quote a peer (a DN, a header): escaped like a log line.
            let text = crate::logging::escape_controls(format_args!("{err:#}"));
            eprintln!("ssm: error: {text}");
            1
        }
    }
}

/// Waits for SIGINT or SIGTERM (Ctrl-C elsewhere): how the standalone servers (`ssm broker`,
/// `ssm ams-server`) are stopped.
#[cfg(unix)]
pub(crate) async fn wait_for_signal() -> anyhow::Result<()> {
    use anyhow::Context as _;
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) async fn wait_for_signal() -> anyhow::Result<()> {
    use anyhow::Context as _;
    tokio::signal::ctrl_c().await.context("cannot watch Ctrl-C")
}
