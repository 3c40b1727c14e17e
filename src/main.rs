//! The `roster` binary: parse the command line, run it, and turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = roster::cli::Cli::parse();
    roster::telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("roster: cannot start the async runtime: {e}");
            return ExitCode::from(roster::report::EXIT_ERROR);
        }
    };
    match runtime.block_on(roster::cli::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("roster: {e:#}");
            ExitCode::from(roster::report::EXIT_ERROR)
        }
    }
}
