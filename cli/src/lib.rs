//! The machine-readable output of the `procwire` command, as types.
//!
//! The command itself is the `procwire` binary of this package (`cargo install procwire-cli`);
//! this library holds what programs that read its output need: [`schema::BenchReport`] is the
//! document `procwire bench --json` prints, and deserializing into it is the supported way to
//! read that output.
//!
//! ```
//! use procwire_cli::schema::BenchReport;
//!
//! fn read(json: &str) -> serde_json::Result<BenchReport> {
//!     serde_json::from_str(json)
//! }
//! # let _ = read;
//! ```

pub mod schema;
