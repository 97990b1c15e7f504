//! The operator subcommands for identities, Token Auth and tokens: their
//! arguments, and the management API request each one becomes (pure, no I/O).
//! Project memberships are in `project`.

use super::client::{Method, Request};
use super::output::View;
use clap::{ArgGroup, Args, Subcommand};
use serde_json::{json, Map, Value};

const IDENTITIES: [&str; 3] = ["api", "v1", "identities"];
const TOKEN_AUTH: [&str; 5] = ["api", "v1", "auth", "token-auth", "identities"];
const TOKENS: [&str; 5] = ["api", "v1", "auth", "token-auth", "tokens"];
const RENEW: [&str; 5] = ["api", "v1", "auth", "token", "renew"];

/// Machine identities (org level).
#[derive(Debug, Subcommand)]
pub enum IdentityCmd {
    /// Create an identity.
    Create {
        /// A name for people; need not be unique.
        #[arg(long)]
        name: String,
        /// Org role: admin, member, no-access or a custom slug (gateway default if omitted).
        #[arg(long)]
        role: Option<String>,
        /// Organization id (the gateway requires `organizationId`).
        #[arg(long, env = "TOKENGATE_ORG_ID")]
        org_id: String,
        /// Refuse deletion until this is turned off.
        #[arg(long)]
        delete_protection: bool,
        /// Print only the new identity's id, for `ID=$(tokengate identity create ... --quiet)`.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show one identity.
    Get {
        /// The identity's id.
        identity_id: String,
    },
    /// Change an identity's name, role or delete protection.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["name", "role", "delete_protection", "no_delete_protection"])))]
    Update {
        /// The identity's id.
        identity_id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New org role (no more privileged than your own).
        #[arg(long)]
        role: Option<String>,
        /// Turn delete protection on.
        #[arg(long, conflicts_with = "no_delete_protection")]
        delete_protection: bool,
        /// Turn delete protection off.
        #[arg(long)]
        no_delete_protection: bool,
    },
    /// Delete an identity (revokes all its tokens).
    Delete {
        /// The identity's id.
        identity_id: String,
    },
    /// List identities.
    List(Page),
}

/// Token Auth configuration of an identity.
#[derive(Debug, Subcommand)]
pub enum TokenAuthCmd {
    /// Attach Token Auth to an identity (unset fields take the gateway's defaults).
    Attach {
        /// The identity's id.
        identity_id: String,
        #[command(flatten)]
        fields: TokenAuthFields,
    },
    /// Show an identity's Token Auth configuration.
    Get {
        /// The identity's id.
        identity_id: String,
    },
    /// Change the configuration (affects tokens created afterwards only,
    /// except the rate limit, which applies at once).
    Update {
        /// The identity's id.
        identity_id: String,
        #[command(flatten)]
        fields: TokenAuthFields,
    },
    /// Remove Token Auth from an identity (revokes every token it issued).
    Remove {
        /// The identity's id.
        identity_id: String,
    },
}

/// The five Token Auth fields and tokengate's rate limit; only those given are sent.
#[derive(Debug, Args, Default)]
pub struct TokenAuthFields {
    /// Token lifetime from creation or last renewal (seconds, or 30m/12h/30d); 0 = no TTL.
    #[arg(long, value_parser = parse_seconds)]
    pub ttl: Option<u64>,
    /// Hard cap from creation (seconds, or 30m/12h/30d); 0 = no cap.
    #[arg(long, value_parser = parse_seconds)]
    pub max_ttl: Option<u64>,
    /// Requests a token may authenticate; 0 = unlimited.
    #[arg(long)]
    pub num_uses_limit: Option<u64>,
    /// Address or CIDR block tokens may be used from; repeat or comma-separate.
    /// On update the list replaces the old one.
    #[arg(long = "trusted-ip", value_name = "CIDR", value_delimiter = ',')]
    pub trusted_ips: Vec<String>,
    /// Periodic tokens: each renewal resets the lifetime to this (seconds, or 30m/12h/30d).
    #[arg(long, value_parser = parse_seconds)]
    pub period: Option<u64>,
    /// Rate limit as REQUESTS/WINDOW (`10/1s`, `600/1m`); applies at once to
    /// every token of the identity. Replaces the previous limit whole.
    #[arg(long, value_name = "REQUESTS/WINDOW", value_parser = parse_rate, conflicts_with = "no_rate_limit")]
    pub rate_limit: Option<(u64, u64)>,
    /// Requests allowed at once after a quiet spell (default: REQUESTS).
    #[arg(long, requires = "rate_limit")]
    pub rate_limit_burst: Option<u64>,
    /// Count the rate limit per identity (default) or per token.
    #[arg(long, value_name = "identity|token", requires = "rate_limit", value_parser = ["identity", "token"])]
    pub rate_limit_per: Option<String>,
    /// Remove the rate limit.
    #[arg(long)]
    pub no_rate_limit: bool,
}

/// `10/1s` -> (10, 1): requests per window, the window as `parse_seconds` reads it.
pub fn parse_rate(s: &str) -> Result<(u64, u64), String> {
    let (requests, window) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not REQUESTS/WINDOW (e.g. 10/1s)"))?;
    let requests = requests
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {requests:?} is not a number of requests"))?;
    Ok((requests, parse_seconds(window)?))
}

/// Access tokens.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create an access token; the token is shown this once only.
    Create {
        /// The identity's id.
        identity_id: String,
        /// A label shown in listings.
        #[arg(long)]
        name: Option<String>,
        /// Print only the token, for `TOKEN=$(tokengate token create ID --quiet)`.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List an identity's tokens, newest first.
    List {
        /// The identity's id.
        identity_id: String,
        #[command(flatten)]
        page: Page,
    },
    /// Show one token's metadata.
    Get {
        /// The token's id (not the token itself).
        token_id: String,
    },
    /// Rename a token.
    Rename {
        /// The token's id (not the token itself).
        token_id: String,
        /// The new name.
        name: String,
    },
    /// Revoke a token by its id.
    Revoke {
        /// The token's id (not the token itself).
        token_id: String,
    },
    /// Renew an access token (the token authenticates itself; no admin key is sent).
    Renew {
        /// The access token; prefer the environment so it stays out of `ps` and shell history.
        #[arg(long, env = "TOKENGATE_TOKEN", hide_env_values = true)]
        token: String,
    },
}

/// Paging for list commands (the gateway's defaults when omitted).
#[derive(Debug, Args, Default)]
pub struct Page {
    /// Entries to skip.
    #[arg(long)]
    pub offset: Option<u64>,
    /// Entries per page (the gateway caps it).
    #[arg(long)]
    pub limit: Option<u64>,
}

impl IdentityCmd {
    pub fn plan(&self) -> (Request, View) {
        match self {
            IdentityCmd::Create {
                name,
                role,
                org_id,
                delete_protection,
                quiet,
            } => {
                let mut body = Map::new();
                body.insert("name".into(), json!(name));
                body.insert("organizationId".into(), json!(org_id));
                if let Some(role) = role {
                    body.insert("role".into(), json!(role));
                }
                body.insert("hasDeleteProtection".into(), json!(delete_protection));
                let req = Request::new(Method::Post, path(&IDENTITIES, &[]));
                let view = if *quiet {
                    View::NewIdentityId
                } else {
                    View::Identity
                };
                (req.body(Value::Object(body)), view)
            }
            IdentityCmd::Get { identity_id } => (
                Request::new(Method::Get, path(&IDENTITIES, &[identity_id])),
                View::Identity,
            ),
            IdentityCmd::Update {
                identity_id,
                name,
                role,
                delete_protection,
                no_delete_protection,
            } => {
                let mut body = Map::new();
                if let Some(name) = name {
                    body.insert("name".into(), json!(name));
                }
                if let Some(role) = role {
                    body.insert("role".into(), json!(role));
                }
                if *delete_protection || *no_delete_protection {
                    body.insert("hasDeleteProtection".into(), json!(delete_protection));
                }
                let req = Request::new(Method::Patch, path(&IDENTITIES, &[identity_id]));
                (req.body(Value::Object(body)), View::Identity)
            }
            IdentityCmd::Delete { identity_id } => (
                Request::new(Method::Delete, path(&IDENTITIES, &[identity_id])),
                View::Identity,
            ),
            IdentityCmd::List(page) => (
                page.apply(Request::new(Method::Get, path(&IDENTITIES, &[]))),
                View::Identities,
            ),
        }
    }
}

impl TokenAuthCmd {
    pub fn plan(&self) -> (Request, View) {
        let (method, id, body) = match self {
            TokenAuthCmd::Attach {
                identity_id,
                fields,
            } => (Method::Post, identity_id, Some(fields.body())),
            TokenAuthCmd::Get { identity_id } => (Method::Get, identity_id, None),
            TokenAuthCmd::Update {
                identity_id,
                fields,
            } => (Method::Patch, identity_id, Some(fields.body())),
            TokenAuthCmd::Remove { identity_id } => (Method::Delete, identity_id, None),
        };
        let mut req = Request::new(method, path(&TOKEN_AUTH, &[id]));
        req.body = body;
        (req, View::TokenAuth)
    }
}

impl TokenAuthFields {
    /// The JSON body: only the fields given, in the contract's names.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        let fields = [
            ("accessTokenTTL", self.ttl),
            ("accessTokenMaxTTL", self.max_ttl),
            ("accessTokenNumUsesLimit", self.num_uses_limit),
            ("accessTokenPeriod", self.period),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                body.insert(key.into(), json!(v));
            }
        }
        if !self.trusted_ips.is_empty() {
            let ips: Vec<Value> = self
                .trusted_ips
                .iter()
                .map(|ip| json!({ "ipAddress": ip.trim() }))
                .collect();
            body.insert("accessTokenTrustedIps".into(), Value::Array(ips));
        }
        if let Some((requests, window)) = self.rate_limit {
            let mut limit = json!({"requests": requests, "windowSeconds": window});
            if let Some(burst) = self.rate_limit_burst {
                limit["burst"] = json!(burst);
            }
            if let Some(per) = &self.rate_limit_per {
                limit["per"] = json!(per);
            }
            body.insert("accessTokenRateLimit".into(), limit);
        } else if self.no_rate_limit {
            body.insert("accessTokenRateLimit".into(), Value::Null);
        }
        Value::Object(body)
    }
}

impl TokenCmd {
    pub fn plan(&self) -> (Request, View) {
        match self {
            TokenCmd::Create {
                identity_id,
                name,
                quiet,
            } => {
                let mut body = Map::new();
                if let Some(name) = name {
                    body.insert("name".into(), json!(name));
                }
                let req = Request::new(Method::Post, path(&TOKEN_AUTH, &[identity_id, "tokens"]));
                (
                    req.body(Value::Object(body)),
                    View::NewToken { quiet: *quiet },
                )
            }
            TokenCmd::List { identity_id, page } => {
                let req = Request::new(Method::Get, path(&TOKEN_AUTH, &[identity_id, "tokens"]));
                (page.apply(req), View::Tokens)
            }
            TokenCmd::Get { token_id } => (
                Request::new(Method::Get, path(&TOKENS, &[token_id])),
                View::Token,
            ),
            TokenCmd::Rename { token_id, name } => {
                let req = Request::new(Method::Patch, path(&TOKENS, &[token_id]));
                (req.body(json!({ "name": name })), View::Token)
            }
            TokenCmd::Revoke { token_id } => (
                Request::new(Method::Post, path(&TOKENS, &[token_id, "revoke"])),
                View::Message,
            ),
            TokenCmd::Renew { token } => {
                let mut req = Request::new(Method::Post, path(&RENEW, &[]))
                    .body(json!({ "accessToken": token.trim() }));
                req.auth = false;
                (req, View::Renewed)
            }
        }
    }
}

impl Page {
    pub(super) fn apply(&self, req: Request) -> Request {
        req.query("offset", self.offset).query("limit", self.limit)
    }
}

pub(super) fn path(prefix: &[&str], rest: &[&str]) -> Vec<String> {
    prefix.iter().chain(rest).map(|s| s.to_string()).collect()
}

/// Seconds as a plain number, or with one unit suffix (s, m, h, d), because
/// `--ttl 30d` is easier to get right than `--ttl 2592000`.
pub fn parse_seconds(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds (or 30m, 12h, 30d)"))?;
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
}
