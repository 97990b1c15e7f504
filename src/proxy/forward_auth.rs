//! Forward-auth mode: reading the original request that a calling gateway
//! (nginx `auth_request`, Caddy `forward_auth`, Traefik ForwardAuth, Envoy
//! `ext_authz`) describes in an auth subrequest, so the one decision of the
//! proxy mode can be made about it. Pure: headers in, a description or the
//! reason it is refused out.
//!
//! The calling gateway describes it in one of two ways, fixed by
//! `forward_auth.describe` (never guessed per request, or a client could
//! pick the way its request is read):
//!
//! - `path`: the original path and query after the endpoint
//!   (`/_tokengate/auth/api/v1/x?y=1`: Envoy's `path_prefix`, nginx's
//!   `proxy_pass .../_tokengate/auth$request_uri`), with the original method
//!   and Host as the subrequest's own. The calling gateway builds the target
//!   itself, so a client cannot describe its request differently from what
//!   the API receives; headers that claim to describe it are not read.
//! - `headers`: at the endpoint itself, with the original in headers the
//!   calling gateway sets, replacing any client copy (Traefik, Caddy): the
//!   method in `X-Forwarded-Method` or `X-Original-Method`, else the
//!   subrequest's own; the path and query in `X-Forwarded-Uri` or
//!   `X-Original-URI`; the host in `X-Forwarded-Host` or `X-Original-Host`,
//!   else `Host`. Where two spellings are both present they must agree, and
//!   none may be given twice.

use crate::config::{Describe, ForwardAuth};
use http::HeaderMap;

/// The original request, as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub method: String,
    /// Path and query as the client sent them (still to be checked like any
    /// request target: `proxy::target`, `proxy::path`).
    pub target: String,
    pub host: Option<String>,
}

const METHOD: [&str; 2] = ["x-original-method", "x-forwarded-method"];
const URI: [&str; 2] = ["x-original-uri", "x-forwarded-uri"];
const HOST: [&str; 2] = ["x-original-host", "x-forwarded-host"];

/// True for the name of a header that describes the original request (at
/// the endpoint itself such headers are the description, not an attempt to
/// override the URL or method as elsewhere: `proxy::target::check_headers`).
pub fn describes(name: &str) -> bool {
    [METHOD, URI, HOST]
        .iter()
        .flatten()
        .any(|d| d.eq_ignore_ascii_case(name))
}

/// True when `path` (checked) is the endpoint or under it.
pub fn is_endpoint(endpoint: &str, path: &str) -> bool {
    match path.strip_prefix(endpoint) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The original request of an auth subrequest whose path is `path` (checked,
/// under the endpoint) and query `query`, described as `fa.describe` says.
pub fn describe(
    fa: &ForwardAuth,
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Original, &'static str> {
    // The calling gateway passes the client's headers on to the API too; one
    // spelled with "_" may be read there as its "-" spelling (X_Forwarded_For,
    // X_Tokengate_Org_Role), which tokengate never checked.
    if headers.keys().any(|n| n.as_str().contains('_')) {
        return Err("header names with '_' are not accepted: the API behind the calling gateway may read them as '-'");
    }
    let rest = path.strip_prefix(fa.path.as_str()).unwrap_or_default();
    let original = match fa.describe {
        Describe::Path => {
            if rest.is_empty() {
                return Err(
                    "the original path must follow the endpoint (forward_auth.describe: path)",
                );
            }
            // Description headers are not read here: they would be the
            // client's own, passed along (the URL ones are refused as
            // overrides before this, as on every request).
            Original {
                method: method.to_string(),
                target: match query {
                    Some(q) => format!("{rest}?{q}"),
                    None => rest.to_string(),
                },
                host: single(headers, "host")?.map(str::to_string),
            }
        }
        Describe::Headers => {
            if !rest.is_empty() {
                return Err("ask at the endpoint itself, with the original in headers (forward_auth.describe: headers)");
            }
            let target = one_of(headers, &URI)?
                .ok_or("no original URI: send X-Forwarded-Uri or X-Original-URI")?;
            // Caddy keeps the original query on the subrequest: then it
            // must be the described one.
            if query.is_some_and(|q| target.split_once('?').map(|(_, tq)| tq) != Some(q)) {
                return Err("the endpoint's query differs from the original URI's");
            }
            let host = match one_of(headers, &HOST)? {
                Some(h) => Some(h),
                None => single(headers, "host")?,
            };
            Original {
                method: one_of(headers, &METHOD)?.unwrap_or(method).to_string(),
                target: target.to_string(),
                host: host.map(str::to_string),
            }
        }
    };
    if !original.target.starts_with('/') {
        return Err("the original URI must be a path (and query)");
    }
    // A fragment is never sent by a client that means it, and servers
    // disagree on where it ends: some read `#` as part of the path.
    if original.target.contains('#') {
        return Err("the original URI must not contain '#'");
    }
    if original.method.is_empty() || !original.method.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the original method is not a method");
    }
    // CONNECT's target is an authority, not a path: a calling gateway
    // describes it as some path it is not (Caddy sends `/`). Proxy mode
    // refuses authority-form targets too.
    if original.method.eq_ignore_ascii_case("CONNECT") {
        return Err("CONNECT is not accepted");
    }
    Ok(original)
}

/// The value of whichever of `names` is present (all present must agree).
fn one_of<'h>(headers: &'h HeaderMap, names: &[&str]) -> Result<Option<&'h str>, &'static str> {
    let mut found: Option<&str> = None;
    for name in names {
        if let Some(v) = single(headers, name)? {
            if found.is_some_and(|f| f != v) {
                return Err("the original request is described twice, differently");
            }
            found = Some(v);
        }
    }
    Ok(found)
}

/// The one value of `name`, if present; refused when given more than once
/// or not as text.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, &'static str> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("a header describing the original request is given more than once");
    }
    first
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| "a header describing the original request is not text")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const EP: &str = "/_tokengate/auth";

    fn fa(describe: Describe) -> ForwardAuth {
        ForwardAuth {
            path: EP.into(),
            describe,
        }
    }

    #[test]
    fn the_endpoint_and_what_is_under_it() {
        assert!(is_endpoint(EP, "/_tokengate/auth"));
        assert!(is_endpoint(EP, "/_tokengate/auth/api/v3/secrets"));
        assert!(!is_endpoint(EP, "/_tokengate/authx"));
        assert!(!is_endpoint(EP, "/_tokengate"));
    }

    #[test]
    fn in_the_path_the_subrequest_is_the_description() {
        let h = headers(&[
            ("host", "api.example.com"),
            // A client's own, passed along: not read.
            ("x-forwarded-method", "GET"),
            ("x-forwarded-host", "public.example.com"),
            ("x-original-host", "public.example.com"),
        ]);
        let o = describe(
            &fa(Describe::Path),
            "PATCH",
            "/_tokengate/auth/v1/x",
            Some("a=1"),
            &h,
        )
        .unwrap();
        assert_eq!(o.method, "PATCH");
        assert_eq!(o.target, "/v1/x?a=1");
        assert_eq!(o.host.as_deref(), Some("api.example.com"));
        // The bare endpoint is not a description in this shape, whatever
        // headers come with it.
        let h = headers(&[("x-original-uri", "/status")]);
        assert!(describe(&fa(Describe::Path), "GET", EP, Some("q"), &h).is_err());
    }

    #[test]
    fn in_headers_the_calling_gateway_describes() {
        let traefik = headers(&[
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/v1/things/1"),
            ("x-forwarded-host", "things.example.com"),
            ("host", "tokengate:8080"),
        ]);
        let o = describe(&fa(Describe::Headers), "GET", EP, None, &traefik).unwrap();
        assert_eq!(o.method, "DELETE");
        assert_eq!(o.target, "/v1/things/1");
        assert_eq!(o.host.as_deref(), Some("things.example.com"));
        // Not in the path, in this shape.
        assert!(describe(
            &fa(Describe::Headers),
            "GET",
            "/_tokengate/auth/v1/x",
            None,
            &traefik
        )
        .is_err());
        assert!(describe(&fa(Describe::Headers), "GET", EP, Some("a=1"), &traefik).is_err());
        // Caddy keeps the original query on the subrequest as well.
        let caddy = headers(&[("x-forwarded-uri", "/v1/x?a=1")]);
        assert!(describe(&fa(Describe::Headers), "GET", EP, Some("a=1"), &caddy).is_ok());
        assert!(describe(&fa(Describe::Headers), "GET", EP, Some("a=2"), &caddy).is_err());
    }

    #[test]
    fn ambiguous_or_missing_descriptions_are_refused() {
        let h = fa(Describe::Headers);
        let none = headers(&[("host", "h")]);
        assert!(describe(&h, "GET", EP, None, &none).is_err());
        let twice = headers(&[("x-original-uri", "/a"), ("x-original-uri", "/b")]);
        assert!(describe(&h, "GET", EP, None, &twice).is_err());
        let disagree = headers(&[("x-original-uri", "/a"), ("x-forwarded-uri", "/b")]);
        assert!(describe(&h, "GET", EP, None, &disagree).is_err());
        let agree = headers(&[("x-original-uri", "/a"), ("x-forwarded-uri", "/a")]);
        assert_eq!(describe(&h, "GET", EP, None, &agree).unwrap().target, "/a");
        let methods = headers(&[
            ("x-original-uri", "/a"),
            ("x-original-method", "GET"),
            ("x-forwarded-method", "DELETE"),
        ]);
        assert!(describe(&h, "GET", EP, None, &methods).is_err());
        let absolute = headers(&[("x-original-uri", "http://evil/a")]);
        assert!(describe(&h, "GET", EP, None, &absolute).is_err());
        let connect = headers(&[("x-forwarded-uri", "/"), ("x-forwarded-method", "CONNECT")]);
        assert!(describe(&h, "GET", EP, None, &connect).is_err());
        let fragment = headers(&[("x-forwarded-uri", "/v1/secrets#?projectId=p2")]);
        assert!(describe(&h, "GET", EP, None, &fragment).is_err());
        let hosts = headers(&[
            ("x-original-uri", "/a"),
            ("x-forwarded-host", "a"),
            ("x-forwarded-host", "b"),
        ]);
        assert!(describe(&h, "GET", EP, None, &hosts).is_err());
    }

    #[test]
    fn underscored_header_names_are_refused_in_either_shape() {
        for shape in [Describe::Path, Describe::Headers] {
            let h = headers(&[
                ("x-forwarded-uri", "/v1/x"),
                ("x-tokengate-org_role", "admin"),
            ]);
            let path = if shape == Describe::Path {
                "/_tokengate/auth/v1/x"
            } else {
                EP
            };
            assert!(describe(&fa(shape), "GET", path, None, &h).is_err());
        }
    }
}
