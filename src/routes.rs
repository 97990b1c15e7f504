//! Routes (pure): the per-path policy of the request path. A route is a path
//! prefix of whole segments (`*` stands for any one segment) with an auth
//! policy (`token` or `public`), whether a project is required there,
//! whether its bodies may carry a project, and a default rate limit for
//! identities whose Token Auth configuration has none. The longest matching prefix wins.
//! Public routes match exactly (case and spelling), every other route matches
//! case-insensitively and ignoring `-`, `_` and `.`: a spelling an upstream
//! might route the same way may loosen nothing and must not escape a rule
//! that tightens.

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

    /// Longer prefixes win, then those with more literal segments.
    fn rank(&self) -> (usize, usize) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        (self.segments.len(), literals)
    }
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

    /// The route for a (checked) request path.
    pub fn select(&self, path: &str) -> &Route {
        let mut best: Option<&Route> = None;
        for r in self.routes.iter().filter(|r| r.covers(path)) {
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
        assert_eq!(t.select("/api/v3/secrets/raw").path, "/api/*/secrets");
        assert_eq!(t.select("/api/v4/secrets").path, "/api/*/secrets");
        assert_eq!(
            t.select("/api/v3/secrets/health").path,
            "/api/v3/secrets/health"
        );
        assert_eq!(t.select("/public/x").auth, Auth::Public);
        assert_eq!(t.select("/uploads/a").body, BodyRule::NoProject);
        assert_eq!(t.select("/other").path, "/");
        assert_eq!(t.select("/api/v3").path, "/");
    }

    #[test]
    fn only_tightening_rules_match_loosely() {
        let t = table();
        assert_eq!(
            t.select("/API/V3/Secrets/raw").project,
            ProjectRule::Required
        );
        assert_eq!(t.select("/api/v3/se_crets").project, ProjectRule::Required);
        assert_eq!(
            t.select("/api/v3/secrets.json").project,
            ProjectRule::Required
        );
        assert_eq!(
            t.select("/api/v3/secrets%20/raw").project,
            ProjectRule::Required
        );
        assert_eq!(t.select("/PUBLIC/x").auth, Auth::Token);
        // Public prefixes match whole segments, with or without a trailing '/'.
        assert_eq!(t.select("/public").auth, Auth::Public);
        assert_eq!(t.select("/publicXYZ/secret").auth, Auth::Token);
        let slash = Routes::new(vec![route("/public/", Auth::Public, ProjectRule::Optional)]);
        assert_eq!(slash.select("/public/x").auth, Auth::Public);
        assert_eq!(slash.select("/other").auth, Auth::Token);
        assert_eq!(t.select("/publicity").auth, Auth::Token);
        assert_eq!(t.select("/api/v3/secrets/Health").auth, Auth::Token);
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
