//! The `medic` binary: parses arguments and hands over to the library.

use clap::Parser;
use std::process::ExitCode;

mod cli;

/// mimalloc instead of the system allocator: every record is decoded into and
/// encoded from many small allocations, and glibc malloc took half of the
/// decide benchmark's time (benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("medic: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("medic: {e:#}");
            ExitCode::FAILURE
        }
    }
}
