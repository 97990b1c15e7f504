//! The `tokengate` command line: `serve`, `check-config`, and the operator
//! commands that drive a running gateway's management API over HTTP.
//!
//! Submodules: `commands` and `project` (operator arguments -> API requests,
//! pure), `client` (the HTTP client), `output` (tables, JSON, formatting) and
//! `views` (how each resource is shown).

mod client;
mod commands;
mod output;
mod project;
mod views;

#[cfg(test)]
mod tests;

use clap::{Args, Parser, Subcommand};
use client::{Client, Request};
use commands::{IdentityCmd, TokenAuthCmd, TokenCmd};
use output::{Format, View};
use project::ProjectCmd;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status for a configuration that does not validate (serve and check-config).
const EXIT_BAD_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "tokengate",
    version,
    about = "A reverse proxy that enforces Token Auth for machine identities",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// The YAML configuration file.
        #[arg(long, short, value_name = "FILE", env = "TOKENGATE_CONFIG")]
        config: PathBuf,
        /// Take over from a running gateway: receive its listening sockets
        /// on `server.upgrade_socket`, then send the old process SIGQUIT.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate configuration files and exit (non-zero if any is invalid).
    CheckConfig {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Manage machine identities.
    Identity {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        cmd: IdentityCmd,
    },
    /// Manage an identity's Token Auth configuration.
    TokenAuth {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        cmd: TokenAuthCmd,
    },
    /// Create, list, rename, revoke and renew access tokens.
    Token {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Manage identities' project memberships.
    Project {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        cmd: ProjectCmd,
    },
}

/// Where the management API is and how to talk to it. Global, so the options
/// may follow the subcommand (`tokengate token list ID --output json`).
#[derive(Debug, Args)]
pub struct Remote {
    /// The gateway's base URL (plain HTTP).
    #[arg(
        long,
        global = true,
        help_heading = "Gateway",
        env = "TOKENGATE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub gateway: String,
    /// The admin key, or an access token of an identity with org role admin.
    /// Prefer the environment variable: arguments are visible in `ps`.
    #[arg(
        long,
        global = true,
        help_heading = "Gateway",
        env = "TOKENGATE_ADMIN_KEY",
        hide_env_values = true
    )]
    pub admin_key: Option<String>,
    /// Tables for people, or the gateway's JSON answer for scripts.
    #[arg(
        long,
        short,
        global = true,
        help_heading = "Gateway",
        value_enum,
        default_value_t = Format::Table
    )]
    pub output: Format,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version also come this way, with status 0.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    run(cli)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config, upgrade } => serve(&config, upgrade),
        Command::CheckConfig { files } => check_config(&files),
        Command::Identity { remote, cmd } => call(&remote, cmd.plan()),
        Command::TokenAuth { remote, cmd } => call(&remote, cmd.plan()),
        Command::Token { remote, cmd } => call(&remote, cmd.plan()),
        Command::Project { remote, cmd } => call(&remote, cmd.plan(&now_rfc3339())),
    }
}

fn serve(path: &Path, upgrade: bool) -> ExitCode {
    let cfg = match crate::config::load(path) {
        Ok(cfg) => cfg,
        Err(e) => {
            error(&format!("{}: {e}", path.display()));
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    crate::logging::init_with(&cfg.log);
    match crate::server::run(cfg, path, upgrade) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn check_config(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    let mut stdout = io::stdout().lock();
    for file in files {
        // The TLS files are read too, as `serve` would: a key that does not
        // match its certificate is found before the deploy, not at it.
        let checked = crate::config::load(file).and_then(|cfg| {
            crate::server::load_tls(&cfg).map_err(crate::config::ConfigError)?;
            store_env_warning(&cfg).map_err(|e| crate::config::ConfigError(vec![e]))
        });
        match checked {
            Ok(warning) => {
                let _ = writeln!(stdout, "{}: ok", file.display());
                if let Some(warning) = warning {
                    let _ = stdout.flush();
                    let _ = writeln!(io::stderr(), "{}: warning: {warning}", file.display());
                }
            }
            Err(e) => {
                failed = true;
                let _ = stdout.flush();
                let _ = writeln!(io::stderr(), "{}: {e}", file.display());
            }
        }
    }
    if failed {
        ExitCode::from(EXIT_BAD_CONFIG)
    } else {
        ExitCode::SUCCESS
    }
}

/// The Redis address variable (`store.url_env`, `store.nodes_env`) as
/// `serve` would read it. Unset is only a warning: the file is often checked
/// where the gateway does not run (CI, a laptop), without the secret; set
/// but wrong is an error, since this machine has the value `serve` would use.
fn store_env_warning(cfg: &crate::config::Config) -> Result<Option<String>, String> {
    use crate::config::{RedisUrlsError, StoreConfig};
    let StoreConfig::Redis { urls, cluster, .. } = &cfg.store else {
        return Ok(None);
    };
    match urls.resolve(*cluster) {
        Ok(_) => Ok(None),
        Err(RedisUrlsError::Unset(e)) => Ok(Some(format!(
            "{e}; `tokengate serve` refuses to start without it"
        ))),
        Err(RedisUrlsError::Invalid(e)) => Err(e),
    }
}

/// Sends one planned request and prints the answer.
fn call(remote: &Remote, (req, view): (Request, View)) -> ExitCode {
    let answer = Client::new(&remote.gateway, remote.admin_key.clone()).and_then(|c| c.send(&req));
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            // Gateway messages are echoed: escape anything that could drive the terminal.
            error(&output::clean(&e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = io::stdout().lock();
    let printed =
        output::render(view, remote.output, &answer, &mut stdout).and_then(|()| stdout.flush());
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        // `tokengate identity list | head -3` is not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            error(&format!("cannot write the answer: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// One `error: ...` line on stderr; `eprintln!` would panic if stderr is closed.
fn error(message: &str) {
    let _ = writeln!(io::stderr(), "error: {message}");
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    output::fmt_millis(now.unix_timestamp_nanos() / 1_000_000)
}
