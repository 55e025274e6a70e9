//! The `procwire` command: `bench` measures every transport against a hand-written raw-socket
//! baseline (and, if asked, CPython's `multiprocessing.connection`) in one run; `echo` and
//! `ping` check a deployment or a peer written in another language.
//!
//! Exit codes: 0 success, 1 failure, 2 bad command line, 3 authentication failed.

mod bench;
mod echo;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "procwire",
    version,
    about = "Fast authenticated messaging between processes: benchmark, echo server, ping"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure every transport: streaming, ping-pong and connect rates, beside a raw baseline.
    Bench(bench::BenchArgs),
    /// Run an authenticated echo server: every message comes back as it was.
    Echo(echo::EchoArgs),
    /// Time round trips against an echo server, like ping.
    Ping(echo::PingArgs),
    /// One side of a benchmark run (bench starts the binary again with this).
    #[command(name = "__worker", hide = true)]
    Worker(bench::worker::WorkerArgs),
}

/// Why the command failed, and its exit code.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// A failure with exit code 1.
    pub fn new(message: impl Into<String>) -> Failure {
        Failure { code: 1, message: message.into() }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, r) = match &cli.command {
        Command::Bench(a) => ("bench", bench::run(a)),
        Command::Echo(a) => ("echo", echo::echo(a)),
        Command::Ping(a) => ("ping", echo::ping(a)),
        Command::Worker(a) => ("worker", bench::worker::run(a)),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("procwire {name}: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
