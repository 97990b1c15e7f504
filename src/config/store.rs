//! `store`: which store the gateway opens (embedded, Redis, Redis cluster),
//! where a Redis store's URLs come from, and its near cache.

use super::file::{default_cache_age, default_cache_identities, CacheFile, StoreFile};
use super::{env_name, NearCacheConfig, Problems, RedisUrls, RedisUrlsError, StoreConfig};
use std::path::PathBuf;

impl RedisUrls {
    /// The URLs to connect to. For `Env`, reads the variable now: one URL
    /// for kind redis, a comma-separated list of seed nodes for a cluster.
    pub fn resolve(&self, cluster: bool) -> Result<Vec<String>, RedisUrlsError> {
        self.resolve_with(cluster, |var| std::env::var(var).ok())
    }

    /// [`RedisUrls::resolve`] with `lookup` standing in for the environment.
    fn resolve_with(
        &self,
        cluster: bool,
        lookup: impl FnOnce(&str) -> Option<String>,
    ) -> Result<Vec<String>, RedisUrlsError> {
        let var = match self {
            RedisUrls::Listed(urls) => return Ok(urls.clone()),
            RedisUrls::Env(var) => var,
        };
        let key = if cluster {
            "store.nodes_env"
        } else {
            "store.url_env"
        };
        let value = lookup(var).unwrap_or_default();
        if value.trim().is_empty() {
            return Err(RedisUrlsError::Unset(format!(
                "{key}: the environment variable {var} is not set (or empty); it must hold {}",
                if cluster {
                    "the cluster's seed node URLs, comma-separated"
                } else {
                    "the Redis URL (redis://...)"
                }
            )));
        }
        let urls: Vec<String> = if cluster {
            value
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect()
        } else {
            vec![value.trim().to_string()]
        };
        if urls.is_empty() {
            return Err(RedisUrlsError::Invalid(format!(
                "{key}: the environment variable {var} holds no node URL"
            )));
        }
        for (i, url) in urls.iter().enumerate() {
            if let Some(problem) = redis_url_problem(url) {
                // The value itself stays out of the message: it may hold a password.
                let which = if cluster {
                    format!("{var} (node {})", i + 1)
                } else {
                    var.clone()
                };
                return Err(RedisUrlsError::Invalid(format!(
                    "{key}: the environment variable {which} {problem}"
                )));
            }
        }
        Ok(urls)
    }
}

/// What is wrong with a Redis URL, without repeating it; `None` when it is
/// a redis:// URL with a host.
fn redis_url_problem(url: &str) -> Option<&'static str> {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "redis" && u.host_str().is_some() => None,
        // Refused here rather than failing every request later: the Redis
        // client is built without TLS.
        Ok(u) if u.scheme() == "rediss" => {
            Some("is rediss:// (TLS to Redis), not supported yet; use redis://")
        }
        _ => Some("is not a redis:// URL"),
    }
}

pub(super) fn validate_store(p: &mut Problems, s: &StoreFile) -> Option<StoreConfig> {
    let connect = p.range("store.connect_timeout_ms", s.connect_timeout_ms, 1, 60_000);
    let response = p.range(
        "store.response_timeout_ms",
        s.response_timeout_ms,
        1,
        60_000,
    );
    let retries = p.range("store.retries", s.retries, 0, 10) as usize;
    match s.kind.as_str() {
        "embedded" => {
            for (key, given) in [
                ("store.url", s.url.is_some()),
                ("store.url_env", s.url_env.is_some()),
                ("store.nodes", s.nodes.is_some()),
                ("store.nodes_env", s.nodes_env.is_some()),
            ] {
                if given {
                    p.add(key, "only applies to kind: redis or redis-cluster");
                }
            }
            let path = s
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from("tokengate.redb"));
            if path.as_os_str().is_empty() {
                p.add("store.path", "must not be empty");
            }
            if s.cache.is_some() {
                p.add(
                    "store.cache",
                    "only applies to kind: redis or redis-cluster (the embedded store is in memory already)",
                );
            }
            Some(StoreConfig::Embedded { path })
        }
        "redis" | "redis-cluster" => {
            let cluster = s.kind == "redis-cluster";
            if s.path.is_some() {
                p.add("store.path", "only applies to kind: embedded");
            }
            let urls = validate_redis_urls(p, s, cluster);
            let cache = validate_cache(p, s.cache.as_ref());
            Some(StoreConfig::Redis {
                urls: urls?,
                cluster,
                connect_timeout_ms: connect,
                response_timeout_ms: response,
                retries,
                cache,
            })
        }
        k => {
            p.add(
                "store.kind",
                format!("'{k}' is not embedded, redis or redis-cluster"),
            );
            None
        }
    }
}

/// Where a Redis store's URLs come from: written in the file (`url` for
/// kind redis, `nodes` for a cluster) or named by an environment variable
/// (`url_env`, `nodes_env`), exactly one of the two.
fn validate_redis_urls(p: &mut Problems, s: &StoreFile, cluster: bool) -> Option<RedisUrls> {
    let (listed, env, list_key, env_key) = if cluster {
        if s.url.is_some() || s.url_env.is_some() {
            let key = if s.url.is_some() {
                "store.url"
            } else {
                "store.url_env"
            };
            p.add(key, "kind: redis-cluster takes nodes: [urls] or nodes_env");
            return None;
        }
        (
            s.nodes.clone(),
            &s.nodes_env,
            "store.nodes",
            "store.nodes_env",
        )
    } else {
        if s.nodes.is_some() || s.nodes_env.is_some() {
            let key = if s.nodes.is_some() {
                "store.nodes"
            } else {
                "store.nodes_env"
            };
            p.add(
                key,
                "only applies to kind: redis-cluster (use url or url_env)",
            );
            return None;
        }
        (
            s.url.clone().map(|u| vec![u]),
            &s.url_env,
            "store.url",
            "store.url_env",
        )
    };
    match (listed, env) {
        (Some(_), Some(_)) => {
            p.add(env_key, format!("give {list_key} or {env_key}, not both"));
            None
        }
        (None, None) if cluster => {
            p.add(
                list_key,
                "at least one node URL is required for kind: redis-cluster (or nodes_env)",
            );
            None
        }
        (None, None) => {
            p.add(list_key, "is required for kind: redis (or url_env)");
            None
        }
        (None, Some(var)) => env_name(p, env_key, var).then(|| RedisUrls::Env(var.clone())),
        (Some(urls), None) if urls.is_empty() => {
            p.add(
                list_key,
                "at least one node URL is required for kind: redis-cluster",
            );
            None
        }
        (Some(urls), None) => {
            let mut ok = true;
            for (i, url) in urls.iter().enumerate() {
                if let Some(problem) = redis_url_problem(url) {
                    let key = if cluster {
                        format!("{list_key}[{i}]")
                    } else {
                        list_key.to_string()
                    };
                    // The value stays out of the message, as for `url_env`:
                    // it may carry a password, and a refused reload logs it.
                    p.add(&key, format!("the URL {problem}"));
                    ok = false;
                }
            }
            ok.then_some(RedisUrls::Listed(urls))
        }
    }
}

/// `store.cache` of a Redis store: on unless `enabled: false`.
fn validate_cache(p: &mut Problems, c: Option<&CacheFile>) -> Option<NearCacheConfig> {
    let (enabled, age, identities) = match c {
        None => (true, default_cache_age(), default_cache_identities()),
        Some(c) => (c.enabled, c.max_age_seconds, c.max_identities),
    };
    let max_age_seconds = p.range("store.cache.max_age_seconds", age, 1, 3600);
    let max_identities = p.range("store.cache.max_identities", identities, 1, 10_000_000) as usize;
    enabled.then_some(NearCacheConfig {
        max_age_seconds,
        max_identities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixed_keys_changed;
    use crate::config::parse;
    use crate::config::tests::{errors, MINIMAL};

    #[test]
    fn redis_and_cluster_stores() {
        let c = parse(&format!(
            "{MINIMAL}store: {{kind: redis-cluster, nodes: ['redis://a:1', 'redis://b:2']}}\n"
        ))
        .unwrap();
        assert!(
            matches!(c.store, StoreConfig::Redis { cluster: true, urls: RedisUrls::Listed(ref urls), .. } if urls.len() == 2)
        );
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: redis-cluster, nodes: ['http://a:1']}}\n"
        ));
        assert!(e.contains("store.nodes[0]"), "{e}");
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: redis, nodes: ['redis://a:1']}}\n"
        ));
        assert!(e.contains("store.nodes"), "{e}");
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: embedded, url: 'redis://a:1'}}\n"
        ));
        assert!(e.contains("store.url"), "{e}");
    }

    /// The `store` of a configuration with `store` set to `yaml`.
    fn store_of(yaml: &str) -> StoreConfig {
        parse(&format!("{MINIMAL}store: {yaml}\n")).unwrap().store
    }

    #[test]
    fn redis_address_from_the_environment() {
        assert!(matches!(
            store_of("{kind: redis, url_env: REDIS_URL}"),
            StoreConfig::Redis { urls: RedisUrls::Env(ref v), cluster: false, .. } if v == "REDIS_URL"
        ));
        assert!(matches!(
            store_of("{kind: redis-cluster, nodes_env: REDIS_NODES}"),
            StoreConfig::Redis { urls: RedisUrls::Env(ref v), cluster: true, .. } if v == "REDIS_NODES"
        ));
        // Exactly one source per kind, and none of them on the embedded store.
        for (yaml, key) in [
            (
                "{kind: redis, url: 'redis://a:1', url_env: R}",
                "store.url_env",
            ),
            ("{kind: redis, nodes_env: R}", "store.nodes_env"),
            ("{kind: redis-cluster, url_env: R}", "store.url_env"),
            (
                "{kind: redis-cluster, nodes: ['redis://a:1'], nodes_env: R}",
                "store.nodes_env",
            ),
            ("{kind: redis-cluster}", "nodes_env"),
            ("{kind: redis}", "url_env"),
            ("{kind: embedded, url_env: R}", "store.url_env"),
            ("{kind: embedded, nodes_env: R}", "store.nodes_env"),
            ("{kind: redis, url_env: ''}", "store.url_env"),
            ("{kind: redis, url_env: 'A=B'}", "store.url_env"),
        ] {
            let e = errors(&format!("{MINIMAL}store: {yaml}\n"));
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }

    #[test]
    fn redis_address_variable_is_read_when_resolved() {
        let single = RedisUrls::Env("REDIS_URL".into());
        let secret = "redis://:hunter2-password@redis:6379/0";
        assert_eq!(
            single.resolve_with(false, |v| (v == "REDIS_URL")
                .then(|| format!(" {secret}\n"))),
            Ok(vec![secret.to_string()])
        );
        for unset in [None, Some(String::new()), Some("  ".into())] {
            let e = single.resolve_with(false, |_| unset.clone()).unwrap_err();
            assert!(matches!(e, RedisUrlsError::Unset(_)), "{e:?}");
            assert!(
                e.to_string().contains("store.url_env") && e.to_string().contains("REDIS_URL"),
                "{e}"
            );
        }
        // A wrong URL written in the file is not repeated either.
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: redis, url: 'rediss://:hunter2-password@redis:6379'}}\n"
        ));
        assert!(e.contains("store.url") && !e.contains("hunter2"), "{e}");
        // A wrong value is named by its variable, and not repeated: it may
        // carry a password.
        for bad in [
            "http://:hunter2-password@redis:6379",
            "rediss://:hunter2-password@redis:6379",
            "hunter2-password",
        ] {
            let e = single
                .resolve_with(false, |_| Some(bad.into()))
                .unwrap_err();
            assert!(matches!(e, RedisUrlsError::Invalid(_)), "{bad}: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains("REDIS_URL"), "{msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
        }

        let nodes = RedisUrls::Env("REDIS_NODES".into());
        assert_eq!(
            nodes.resolve_with(true, |_| Some("redis://a:1, redis://b:2,".into())),
            Ok(vec!["redis://a:1".to_string(), "redis://b:2".to_string()])
        );
        let e = nodes
            .resolve_with(true, |_| Some("redis://a:1,http://b:2".into()))
            .unwrap_err();
        assert!(
            e.to_string().contains("store.nodes_env") && e.to_string().contains("(node 2)"),
            "{e}"
        );
        let e = nodes.resolve_with(true, |_| Some(",".into())).unwrap_err();
        assert!(matches!(e, RedisUrlsError::Invalid(_)), "{e:?}");

        // URLs written in the file need no environment.
        let listed = RedisUrls::Listed(vec!["redis://a:1".into()]);
        assert_eq!(
            listed.resolve_with(false, |_| unreachable!()),
            Ok(vec!["redis://a:1".to_string()])
        );
    }

    #[test]
    fn redis_address_variable_is_fixed_like_the_store() {
        let on_url = parse(&format!(
            "{MINIMAL}store: {{kind: redis, url: 'redis://a:1'}}\n"
        ))
        .unwrap();
        let on_env = parse(&format!(
            "{MINIMAL}store: {{kind: redis, url_env: REDIS_URL}}\n"
        ))
        .unwrap();
        let other_env = parse(&format!(
            "{MINIMAL}store: {{kind: redis, url_env: OTHER_REDIS_URL}}\n"
        ))
        .unwrap();
        assert!(fixed_keys_changed(&on_env, &on_env.clone()).is_empty());
        assert_eq!(fixed_keys_changed(&on_url, &on_env), ["store"]);
        assert_eq!(fixed_keys_changed(&on_env, &other_env), ["store"]);
    }

    #[test]
    fn near_cache_is_on_for_redis_and_refused_for_embedded() {
        let c = parse(&format!(
            "{MINIMAL}store: {{kind: redis, url: 'redis://a:1'}}\n"
        ))
        .unwrap();
        assert!(matches!(
            c.store,
            StoreConfig::Redis {
                cache: Some(NearCacheConfig {
                    max_age_seconds: 60,
                    ..
                }),
                ..
            }
        ));
        let c = parse(&format!(
            "{MINIMAL}store: {{kind: redis, url: 'redis://a:1', cache: {{enabled: false}}}}\n"
        ))
        .unwrap();
        assert!(matches!(c.store, StoreConfig::Redis { cache: None, .. }));
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: redis, url: 'redis://a:1', cache: {{max_age_seconds: 0}}}}\n"
        ));
        assert!(e.contains("store.cache.max_age_seconds"), "{e}");
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: embedded, cache: {{}}}}\n"
        ));
        assert!(e.contains("store.cache"), "{e}");
    }

    #[test]
    fn redis_over_tls_is_refused_until_it_is_supported() {
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: redis, url: 'rediss://a:1'}}\n"
        ));
        assert!(
            e.contains("store.url") && e.contains("not supported yet"),
            "{e}"
        );
        let e = errors(&format!(
            "{MINIMAL}store: {{kind: redis-cluster, nodes: ['redis://a:1', 'rediss://b:2']}}\n"
        ));
        assert!(e.contains("store.nodes[1]"), "{e}");
    }
}
