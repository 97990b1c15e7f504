//! Routes (pure): the per-path policy of the request path. A route is a path
//! prefix of whole segments (`*` stands for any one segment), optionally for
//! one host, with an auth policy (`token` or `public`), whether a project is
//! required there, whether its bodies may carry a project, the upstream it
//! sends to, and a default rate limit for identities whose Token Auth
//! configuration has none. The longest matching prefix wins; at equal length
//! a route for the request's host beats one for any host.
//! Public routes match exactly (case and spelling), every other route matches
//! case-insensitively and ignoring `-`, `_` and `.`: a spelling an upstream
//! might route the same way may loosen nothing and must not escape a rule
//! that tightens.

use crate::auth::Needs;
use crate::proxy::names::loosely_equal;
use crate::rate_limit::RateLimit;

/// Whether a route needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Token,
    Public,
}

/// Whether a request on a route must name a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectRule {
    /// A project is checked when the request names one.
    Optional,
    /// A request that names no project is refused (400).
    Required,
}

/// Whether the bodies of a route are read for project claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRule {
    /// Read and parsed; a body that cannot be parsed is refused (415).
    Parse,
    /// The operator declares these bodies carry no project: never read.
    NoProject,
}

/// The roles a route needs: an org role and a project role (each a
/// comma-separated list of which any one will do), for every method, and per
/// method where `methods` says otherwise (its fields replace those it sets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    pub org_role: Option<String>,
    pub project_role: Option<String>,
    /// (METHOD, org role, project role).
    pub methods: Vec<(String, Option<String>, Option<String>)>,
}

impl Requirements {
    /// Do the needs differ by method? Then the method a request carries
    /// must be one the upstream reads the same way (`proxy.rs`).
    pub fn by_method(&self) -> bool {
        !self.methods.is_empty()
    }

    /// Does any method need a project role (so requests must name a project)?
    pub fn needs_project_role(&self) -> bool {
        self.project_role.is_some() || self.methods.iter().any(|(_, _, p)| p.is_some())
    }
}

/// One segment of a route prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The prefix as configured (for messages).
    pub path: String,
    pub segments: Vec<Segment>,
    /// The host it is for (`host_pattern`); any host when `None`.
    pub host: Option<String>,
    /// The named upstream it sends to; the default upstream when `None`.
    pub upstream: Option<String>,
    /// The roles a request on it needs.
    pub require: Requirements,
    pub auth: Auth,
    pub project: ProjectRule,
    pub body: BodyRule,
    /// Applies when the identity's Token Auth configuration has no rate limit.
    pub rate_limit: Option<RateLimit>,
}

impl Route {
    /// A route for `path` (`/a/*/b`) with the token policy and nothing required.
    pub fn new(path: &str) -> Result<Route, String> {
        Ok(Route {
            path: path.to_string(),
            segments: parse_prefix(path)?,
            host: None,
            upstream: None,
            require: Requirements::default(),
            auth: Auth::Token,
            project: ProjectRule::Optional,
            body: BodyRule::Parse,
            rate_limit: None,
        })
    }

    /// The policy for every path no configured route matches.
    pub fn fallback() -> Route {
        Route {
            path: "/".into(),
            segments: Vec::new(),
            host: None,
            upstream: None,
            require: Requirements::default(),
            auth: Auth::Token,
            project: ProjectRule::Optional,
            body: BodyRule::Parse,
            rate_limit: None,
        }
    }

    /// Does this route cover `segments` (the request path split on `/`)?
    fn covers(&self, path: &str) -> bool {
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let exact = self.auth == Auth::Public;
        self.segments.iter().all(|s| match (s, segments.next()) {
            (_, None) => false,
            (Segment::Any, Some(_)) => true,
            (Segment::Literal(lit), Some(seg)) if exact => lit == seg,
            (Segment::Literal(lit), Some(seg)) => loosely_equal(lit, seg),
        })
    }

    /// The roles a `method` request on this route needs.
    pub fn needs(&self, method: &str) -> Needs<'_> {
        let r = &self.require;
        // A HEAD request runs the GET handler in most servers: it needs
        // what GET needs unless the route says otherwise.
        let entry = |m: &str| r.methods.iter().find(|(name, _, _)| name == m);
        let over = entry(method).or_else(|| (method == "HEAD").then(|| entry("GET")).flatten());
        Needs {
            org_role: over
                .and_then(|(_, o, _)| o.as_deref())
                .or(r.org_role.as_deref()),
            project_role: over
                .and_then(|(_, _, p)| p.as_deref())
                .or(r.project_role.as_deref()),
        }
    }

    /// Is this route for `host` (the request's, lowercase, without port)?
    fn serves(&self, host: Option<&str>) -> bool {
        let Some(pattern) = &self.host else {
            return true;
        };
        let Some(host) = host else {
            return false;
        };
        match pattern.strip_prefix("*.") {
            // At least one label before the suffix: `*.a.com` is not `a.com`.
            Some(suffix) => host
                .strip_suffix(suffix)
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
            None => host == pattern,
        }
    }

    /// Longer prefixes win, then those with more literal segments, then
    /// those for a host.
    fn rank(&self) -> (usize, usize, bool) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        (self.segments.len(), literals, self.host.is_some())
    }
}

/// A route's `host` as matched: lowercase, no port, no trailing dot; a
/// leading `*.` stands for one or more labels.
pub fn host_pattern(host: &str) -> Result<String, String> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    let name = h.strip_prefix("*.").unwrap_or(&h);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(h)
    } else {
        Err(format!(
            "'{host}' is not a host name (letters, digits, '-', dots; '*.' in front for any subdomain)"
        ))
    }
}

/// The request's host for route matching: the `Host` value without port,
/// lowercase, without its one trailing dot; `None` for anything that is not
/// a plain host name, IPv4 or bracketed IPv6 address with an optional
/// numeric port (`a..b`, `a.com..`, `a.com:x`, `a b`). Such a value is
/// refused, never normalised: the upstream receives the Host as sent, and
/// a server that compares it exactly would pick another site than the
/// route tokengate picked.
pub fn request_host(authority: &str) -> Option<String> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (h, rest) = authority.split_at(end + 1);
        let inside = &h[1..h.len() - 1];
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return None;
        }
        let port = match rest {
            "" => None,
            r => Some(r.strip_prefix(':')?),
        };
        (h, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    if !host.starts_with('[') {
        let name = host.strip_suffix('.').unwrap_or(host);
        let plain = |label: &str| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !name.split('.').all(plain) {
            return None;
        }
        return Some(name.to_ascii_lowercase());
    }
    Some(host.to_ascii_lowercase())
}

/// Splits `/a/*/b/` into segments; `*` must be a whole segment.
fn parse_prefix(path: &str) -> Result<Vec<Segment>, String> {
    let Some(body) = path.strip_prefix('/') else {
        return Err(format!("'{path}' must start with '/'"));
    };
    let body = body.strip_suffix('/').unwrap_or(body);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split('/')
        .map(|s| match s {
            "" => Err(format!("'{path}' has an empty segment")),
            "*" => Ok(Segment::Any),
            s if s.contains('*') => Err(format!("'{path}': '*' must be a whole segment")),
            // Requests are matched decoded; a route written encoded would
            // match none of the requests it spells, and its rules (a
            // required project, roles) would silently apply to nothing.
            s if s.contains('%') => Err(format!(
                "'{path}': '%' is not accepted; write the path decoded, as it is matched"
            )),
            s => Ok(Segment::Literal(s.to_string())),
        })
        .collect()
}

/// The configured routes and the fallback for everything else.
#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<Route>,
    fallback: Route,
}

impl Routes {
    pub fn new(routes: Vec<Route>) -> Routes {
        Routes {
            routes,
            fallback: Route::fallback(),
        }
    }

    pub fn all(&self) -> &[Route] {
        &self.routes
    }

    /// Does any route name a host? If none does, the request's host is
    /// not needed (and not worked out) to choose one.
    pub fn by_host(&self) -> bool {
        self.routes.iter().any(|r| r.host.is_some())
    }

    /// The route for a (checked) request path on `host` (`request_host`).
    pub fn select(&self, host: Option<&str>, path: &str) -> &Route {
        let mut best: Option<&Route> = None;
        for r in self
            .routes
            .iter()
            .filter(|r| r.serves(host) && r.covers(path))
        {
            if best.is_none_or(|b| r.rank() > b.rank()) {
                best = Some(r);
            }
        }
        best.unwrap_or(&self.fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, auth: Auth, project: ProjectRule) -> Route {
        Route {
            auth,
            project,
            ..Route::new(path).unwrap()
        }
    }

    fn table() -> Routes {
        Routes::new(vec![
            route("/api/*/secrets", Auth::Token, ProjectRule::Required),
            route("/public", Auth::Public, ProjectRule::Optional),
            route(
                "/api/v3/secrets/health",
                Auth::Public,
                ProjectRule::Optional,
            ),
            Route {
                body: BodyRule::NoProject,
                ..Route::new("/uploads/").unwrap()
            },
        ])
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table();
        assert_eq!(t.select(None, "/api/v3/secrets/raw").path, "/api/*/secrets");
        assert_eq!(t.select(None, "/api/v4/secrets").path, "/api/*/secrets");
        assert_eq!(
            t.select(None, "/api/v3/secrets/health").path,
            "/api/v3/secrets/health"
        );
        assert_eq!(t.select(None, "/public/x").auth, Auth::Public);
        assert_eq!(t.select(None, "/uploads/a").body, BodyRule::NoProject);
        assert_eq!(t.select(None, "/other").path, "/");
        assert_eq!(t.select(None, "/api/v3").path, "/");
    }

    #[test]
    fn only_tightening_rules_match_loosely() {
        let t = table();
        assert_eq!(
            t.select(None, "/API/V3/Secrets/raw").project,
            ProjectRule::Required
        );
        assert_eq!(
            t.select(None, "/api/v3/se_crets").project,
            ProjectRule::Required
        );
        assert_eq!(
            t.select(None, "/api/v3/secrets.json").project,
            ProjectRule::Required
        );
        assert_eq!(
            t.select(None, "/api/v3/secrets%20/raw").project,
            ProjectRule::Required
        );
        assert_eq!(t.select(None, "/PUBLIC/x").auth, Auth::Token);
        // Public prefixes match whole segments, with or without a trailing '/'.
        assert_eq!(t.select(None, "/public").auth, Auth::Public);
        assert_eq!(t.select(None, "/publicXYZ/secret").auth, Auth::Token);
        let slash = Routes::new(vec![route("/public/", Auth::Public, ProjectRule::Optional)]);
        assert_eq!(slash.select(None, "/public/x").auth, Auth::Public);
        assert_eq!(slash.select(None, "/other").auth, Auth::Token);
        assert_eq!(t.select(None, "/publicity").auth, Auth::Token);
        assert_eq!(t.select(None, "/api/v3/secrets/Health").auth, Auth::Token);
    }

    #[test]
    fn hosts_narrow_routes_and_win_ties() {
        let on = |host: &str, path: &str, upstream: &str| Route {
            host: Some(host_pattern(host).unwrap()),
            upstream: Some(upstream.into()),
            ..Route::new(path).unwrap()
        };
        let t = Routes::new(vec![
            Route::new("/v1").unwrap(),
            on("Billing.Example.com.", "/v1", "billing"),
            on("*.example.com", "/v1/admin", "wild"),
        ]);
        let pick = |host: Option<&str>, path| t.select(host, path).upstream.clone();
        assert_eq!(
            pick(Some("billing.example.com"), "/v1/x"),
            Some("billing".into())
        );
        assert_eq!(pick(Some("other.com"), "/v1/x"), None);
        assert_eq!(
            pick(None, "/v1/x"),
            None,
            "no Host: host routes never match"
        );
        // A longer prefix wins over a host of its own.
        assert_eq!(
            pick(Some("billing.example.com"), "/v1/admin/a"),
            Some("wild".into())
        );
        assert_eq!(
            pick(Some("a.b.example.com"), "/v1/admin"),
            Some("wild".into())
        );
        assert_eq!(
            pick(Some("example.com"), "/v1/admin"),
            None,
            "'*.' needs a label"
        );
        assert_eq!(pick(Some("xexample.com"), "/v1/admin"), None);
        assert_eq!(
            request_host("Billing.Example.COM.:8443").as_deref(),
            Some("billing.example.com")
        );
        assert_eq!(request_host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(request_host("10.0.0.1").as_deref(), Some("10.0.0.1"));
        for odd in [
            "public.example.com..",
            "a..b",
            ".a.com",
            "a.com:",
            "a.com:x",
            "a.com:123456",
            "a com",
            "a_b.com",
            "[::1",
            "[zz]",
            "[::1]x",
            "",
        ] {
            assert_eq!(request_host(odd), None, "{odd:?}");
        }
        assert!(host_pattern("a b").is_err() && host_pattern("*.").is_err());
        assert!(host_pattern("a..b").is_err() && host_pattern("").is_err());
    }

    #[test]
    fn method_requirements_replace_what_they_set() {
        let r = Route {
            require: Requirements {
                org_role: Some("member,admin".into()),
                project_role: Some("viewer,admin".into()),
                methods: vec![("DELETE".into(), None, Some("admin".into()))],
            },
            ..Route::new("/x").unwrap()
        };
        assert_eq!(
            r.needs("GET"),
            Needs {
                org_role: Some("member,admin"),
                project_role: Some("viewer,admin")
            }
        );
        assert_eq!(
            r.needs("DELETE"),
            Needs {
                org_role: Some("member,admin"),
                project_role: Some("admin")
            }
        );
        assert!(r.require.needs_project_role());
        assert_eq!(Route::new("/y").unwrap().needs("DELETE"), Needs::ANY);
        // HEAD needs what GET needs, unless it is listed itself.
        let get_only = Route {
            require: Requirements {
                methods: vec![("GET".into(), Some("admin".into()), None)],
                ..Requirements::default()
            },
            ..Route::new("/z").unwrap()
        };
        assert_eq!(get_only.needs("HEAD").org_role, Some("admin"));
        assert_eq!(get_only.needs("POST").org_role, None);
        assert!(get_only.require.by_method());
    }

    #[test]
    fn prefixes() {
        assert_eq!(parse_prefix("/").unwrap(), vec![]);
        assert_eq!(
            parse_prefix("/a/*/b/").unwrap(),
            vec![
                Segment::Literal("a".into()),
                Segment::Any,
                Segment::Literal("b".into())
            ]
        );
        assert!(parse_prefix("a").is_err());
        assert!(parse_prefix("/a//b").is_err());
        assert!(parse_prefix("/a*").is_err());
    }
}
