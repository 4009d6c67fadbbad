//! The `store-agent` binary: parse the command line, run it, report errors.

use clap::Parser;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: store_agent::Allocator = store_agent::Allocator;

fn main() -> ExitCode {
    let cli = store_agent::cli::Cli::parse();
    if !cli.is_daemon() {
        // A short command piped into `head` should end quietly when the pipe closes,
        // as other Unix tools do, instead of panicking on the failed write. The
        // daemon keeps Rust's default (SIGPIPE ignored, EPIPE as an error).
        // SAFETY: called before any thread is started; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match store_agent::cli::execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("store-agent: {}", store_agent::cli::error_chain(&e));
            ExitCode::from(2)
        }
    }
}
