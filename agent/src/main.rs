//! `shoal`: the agent daemon and its command-line client in one binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    // A per-container shim is this binary too; it must run before any
    // thread exists (it forks).
    if let Some(code) = shoal_agent::executor::container::shim::run_if_shim() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = shoal_agent::cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
                .unwrap_or_else(|_| "warn,shoal::lifecycle=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
