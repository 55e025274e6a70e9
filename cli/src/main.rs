//! The `procwire` command: `bench` measures every transport against a hand-written raw-socket
//! baseline (and, if asked, CPython's `multiprocessing.connection`) in one run; `echo` and
//! `ping` check a deployment or a peer written in another language.
//!
//! Exit codes: see [`EXIT_CODES`].

mod bench;
mod echo;
mod units;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// The exit codes, shown under every `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure: a run failed, a connection broke, the server refused a message, ...
  2  bad command line
  3  authentication failed (ping: the two sides have different keys)";

#[derive(Parser, Debug)]
#[command(
    name = "procwire",
    version,
    about = "Fast authenticated messaging between processes: benchmark, echo server, ping",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure every transport: streaming, ping-pong and connect rates, beside a raw baseline.
    #[command(after_help = EXIT_CODES)]
    Bench(bench::BenchArgs),
    /// Run an authenticated echo server: every message comes back as it was.
    #[command(after_help = EXIT_CODES)]
    Echo(echo::EchoArgs),
    /// Time round trips against an echo server, like ping.
    #[command(after_help = EXIT_CODES)]
    Ping(echo::PingArgs),
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
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

/// Writes the completion script for `shell` to stdout.
fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    // The command without its hidden worker subcommand, which no one types.
    let full = Cli::command();
    let mut cmd = clap::Command::new("procwire")
        .version(env!("CARGO_PKG_VERSION"))
        .about(full.get_about().cloned().unwrap_or_default())
        .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "procwire", &mut out);
    // A closed stdout is an error to report, not a panic (as `print!` would have it).
    std::io::stdout().write_all(&out).map_err(|e| Failure::new(format!("cannot write the script: {e}")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, r) = match &cli.command {
        Command::Bench(a) => ("bench", bench::run(a)),
        Command::Echo(a) => ("echo", echo::echo(a)),
        Command::Ping(a) => ("ping", echo::ping(a)),
        Command::Completions { shell } => ("completions", completions(*shell)),
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
