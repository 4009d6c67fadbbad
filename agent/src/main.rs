//! The `store-agent` binary: parse the command line, run it, report errors.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = store_agent::cli::Cli::parse();
    match store_agent::cli::execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("store-agent: {e:#}");
            ExitCode::from(2)
        }
    }
}
