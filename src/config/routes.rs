//! `routes` and `public_routes`: per-path policy (public or token, project
//! required, bodies read, upstream, required roles, rate limit).

use super::file::{default_routes, File, OneOrMany, RateLimitFile, RequireFile};
use super::Problems;
use crate::rate_limit::{Field as RateLimitField, Per, RateLimit};
use crate::routes::{Auth, BodyRule, ProjectRule, Requirements, Route, Routes};

/// Role names as `auth::Needs` takes them: comma-joined, each a slug.
fn roles(p: &mut Problems, key: &str, v: &Option<OneOrMany>) -> Option<String> {
    let list = match v.as_ref()? {
        OneOrMany::One(r) => vec![r.clone()],
        OneOrMany::Many(rs) => rs.clone(),
    };
    let slug = |r: &String| {
        !r.is_empty()
            && r.len() <= 64
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    if list.is_empty() || !list.iter().all(slug) {
        p.add(
            key,
            "is a role name or a list of them (lowercase letters, digits, '-', '_')",
        );
        return None;
    }
    Some(list.join(","))
}

fn validate_require(p: &mut Problems, key: &str, r: &RequireFile) -> Requirements {
    let mut methods = Vec::new();
    for (method, m) in &r.methods {
        let mk = format!("{key}.methods.{method}");
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            p.add(
                &mk,
                "a method is an uppercase HTTP method name (GET, DELETE, ...)",
            );
            continue;
        }
        methods.push((
            method.clone(),
            roles(p, &format!("{mk}.org_role"), &m.org_role),
            roles(p, &format!("{mk}.project_role"), &m.project_role),
        ));
    }
    Requirements {
        org_role: roles(p, &format!("{key}.org_role"), &r.org_role),
        project_role: roles(p, &format!("{key}.project_role"), &r.project_role),
        methods,
    }
}

/// The routes: `routes` (Infisical's project-scoped APIs when left out and
/// projects are checked), then `public_routes` as public routes.
pub(super) fn validate_routes(p: &mut Problems, f: &File, projects_on: bool) -> Routes {
    let (key, files) = match &f.routes {
        Some(r) => ("routes", r.iter().collect::<Vec<_>>()),
        None => ("routes (default)", Vec::new()),
    };
    let defaults = if f.routes.is_none() && projects_on {
        default_routes()
    } else {
        Vec::new()
    };
    let mut routes = Vec::new();
    for (i, r) in files.into_iter().chain(defaults.iter()).enumerate() {
        let key = format!("{key}[{i}]");
        let mut route = match Route::new(&r.path) {
            Ok(route) => route,
            Err(e) => {
                p.add(&format!("{key}.path"), e);
                continue;
            }
        };
        match r.auth.as_deref() {
            None | Some("token") => {}
            Some("public") => route.auth = Auth::Public,
            Some(o) => p.add(
                &format!("{key}.auth"),
                format!("'{o}' is not token or public"),
            ),
        }
        match r.project.as_deref() {
            None | Some("optional") => {}
            Some("required") => route.project = ProjectRule::Required,
            Some(o) => p.add(
                &format!("{key}.project"),
                format!("'{o}' is not required or optional"),
            ),
        }
        match r.body.as_deref() {
            None | Some("parse") => {}
            Some("no-project") => route.body = BodyRule::NoProject,
            Some(o) => p.add(
                &format!("{key}.body"),
                format!("'{o}' is not parse or no-project"),
            ),
        }
        if let Some(host) = &r.host {
            match crate::routes::host_pattern(host) {
                Ok(h) => route.host = Some(h),
                Err(e) => p.add(&format!("{key}.host"), e),
            }
        }
        if let Some(name) = &r.upstream {
            if name != "default" && !f.upstreams.contains_key(name) {
                p.add(
                    &format!("{key}.upstream"),
                    format!("'{name}' is not in upstreams"),
                );
            }
            route.upstream = Some(name.clone());
        }
        if let Some(req) = &r.require {
            route.require = validate_require(p, &format!("{key}.require"), req);
            if route.auth == Auth::Public {
                p.add(
                    &format!("{key}.require"),
                    "a public route has no identity to check",
                );
            }
            if route.require.needs_project_role() && route.project != ProjectRule::Required {
                p.add(
                    &format!("{key}.require.project_role"),
                    "needs project: required on the route (a request must name the project whose role is checked)",
                );
            }
        }
        if let Some(rl) = &r.rate_limit {
            route.rate_limit = route_rate_limit(p, &format!("{key}.rate_limit"), rl);
            if route.auth == Auth::Public {
                p.add(
                    &format!("{key}.rate_limit"),
                    "a public route has no identity to limit",
                );
            }
        }
        if route.auth == Auth::Public && route.project == ProjectRule::Required {
            p.add(&key, "a public route cannot require a project");
        }
        if route.project == ProjectRule::Required && !projects_on {
            p.add(
                &format!("{key}.project"),
                "a project cannot be required while project.sources is empty",
            );
        }
        routes.push(route);
    }
    for (i, r) in f.public_routes.iter().enumerate() {
        match Route::new(r) {
            Ok(route) => routes.push(Route {
                auth: Auth::Public,
                ..route
            }),
            Err(e) => p.add(&format!("public_routes[{i}]"), e),
        }
    }
    Routes::new(routes)
}

/// A route's default rate limit, with the bounds of `RateLimit::validate`.
fn route_rate_limit(p: &mut Problems, key: &str, f: &RateLimitFile) -> Option<RateLimit> {
    let number = |v: i64| u32::try_from(v).unwrap_or(0);
    let per = match f.per.as_deref() {
        None => Per::Identity,
        Some(s) => match Per::parse(s) {
            Some(per) => per,
            None => {
                p.add(
                    &format!("{key}.per"),
                    format!("'{s}' is not identity or token"),
                );
                return None;
            }
        },
    };
    let limit = RateLimit {
        requests: number(f.requests),
        window_seconds: number(f.window_seconds),
        burst: number(f.burst.unwrap_or(f.requests)),
        per,
    };
    match limit.validate() {
        Ok(()) => Some(limit),
        Err((field, message)) => {
            let name = match field {
                RateLimitField::Requests => "requests",
                RateLimitField::WindowSeconds => "window_seconds",
                RateLimitField::Burst => "burst",
            };
            p.add(&format!("{key}.{name}"), message);
            None
        }
    }
}
