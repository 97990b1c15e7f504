//! tokengate: a Pingora reverse proxy that enforces Token Auth for machine identities.
//!
//! Module map (each module owns one thing):
//! - `config`:  YAML file model -> validated `Config` (the only YAML parser)
//! - `token`:   access token format: generate, parse, checksum, hash (pure)
//! - `model`:   identities, Token Auth config, tokens, memberships, bounds (pure)
//! - `auth`:    the decision: token + client IP + now -> allow | deny (pure)
//! - `rate_limit`: rate-limit policies and the GCRA decision, time as a parameter (pure)
//! - `store`:   the `Store` trait; `store::redis` and `store::embedded`
//! - `proxy`:   Pingora `ProxyHttp` glue; `proxy::target`, `proxy::path`, `proxy::names`,
//!   `proxy::body`, `proxy::multipart`, `proxy::project`, `proxy::client_ip`, `proxy::headers`
//! - `routes`:  per-path policy: public or token, project required, bodies read (pure)
//! - `api`:     the Infisical-compatible management API answered by the gateway
//! - `admin`:   the admin listener: /healthz, /readyz, /metrics
//! - `metrics`: the Prometheus metrics, registered on an explicit registry
//! - `error`:   the JSON error body shared by proxy and API
//! - `redact`:  hides tokens, Authorization values and the admin key in text (pure)
//! - `logging`: the process logger: `RUST_LOG` filtering, every record redacted
//! - `connection`: per-connection limits: open connections, request header deadline
//! - `listener`: the proxy listeners' accept loop, one small task per connection
//! - `tls`:     listener TLS: certificate files, SNI choice, client CA, live reload
//! - `server`:  assembles the Pingora server from a `Config`
//! - `cli`:     the `tokengate` command line (serve, check-config, operator commands)

pub mod access_log;
pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connection;
pub mod console;
pub mod error;
pub mod listener;
pub mod lockout;
pub mod log_sink;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod proxy;
pub mod rate_limit;
pub mod redact;
pub mod reload;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod token;
pub mod upstreams;
