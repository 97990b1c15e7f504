//! `Policy`: what the request path derives from one configuration (routes,
//! the upstream pools, project rules, header names, trusted proxies, the
//! access and audit logs). A reload builds a new one and swaps
//! it in; a request keeps the one it started with to its end.

use super::headers::Injected;
use super::project::ProjectRules;
use crate::access_log::AccessLog;
use crate::audit::AuditLog;
use crate::config::Config;
use crate::config::UpstreamPool;
use crate::upstreams::{Pool, DEFAULT};
use std::collections::HashMap;
use std::sync::Arc;

pub struct Policy {
    pub cfg: Arc<Config>,
    /// Every upstream by name, `default` (the `upstream` section) included.
    pub pools: HashMap<String, Arc<Pool>>,
    /// The `default` pool, which most routes use, without a lookup.
    default_pool: Arc<Pool>,
    pub injected: Injected,
    pub projects: ProjectRules,
    pub access_log: Arc<AccessLog>,
    pub audit: Arc<AuditLog>,
}

impl Policy {
    /// Builds the policy of `cfg`; the pools of `previous` whose settings
    /// are unchanged are kept (with their health and counters).
    pub fn new(
        cfg: Arc<Config>,
        access_log: Arc<AccessLog>,
        audit: Arc<AuditLog>,
        previous: Option<&Policy>,
    ) -> Result<Policy, String> {
        let mut pools = HashMap::new();
        let keep = |name: &str, wanted: &UpstreamPool| {
            previous
                .and_then(|p| p.pools.get(name))
                .filter(|pool| pool.config == *wanted)
                .cloned()
        };
        let default = Pool::default_config(&cfg.upstream);
        let pool = match keep(DEFAULT, &default) {
            Some(pool) => pool,
            None => Pool::start(&default)?,
        };
        let default_pool = pool.clone();
        pools.insert(DEFAULT.to_string(), pool);
        for wanted in &cfg.upstreams {
            let pool = match keep(&wanted.name, wanted) {
                Some(pool) => pool,
                None => Pool::start(wanted)?,
            };
            pools.insert(wanted.name.clone(), pool);
        }
        Ok(Policy {
            injected: Injected::new(&cfg.headers),
            projects: ProjectRules::new(&cfg.project_sources),
            cfg,
            pools,
            default_pool,
            access_log,
            audit,
        })
    }

    /// The pool a route sends to.
    pub fn pool(&self, name: Option<&str>) -> Option<&Arc<Pool>> {
        match name {
            None => Some(&self.default_pool),
            Some(name) => self.pools.get(name),
        }
    }
}
