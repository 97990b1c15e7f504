//! The `tokengate` binary: hands the command line to `tokengate::cli`.
//! Not `#[tokio::main]`: Pingora builds its own runtimes.

fn main() -> std::process::ExitCode {
    tokengate::cli::main()
}
