//! Forward-auth mode: reading the original request that a calling gateway
//! (nginx `auth_request`, Caddy `forward_auth`, Traefik ForwardAuth, Envoy
//! `ext_authz`) describes in an auth subrequest, so the one decision of the
//! proxy mode can be made about it. Pure: headers in, a description or the
//! reason it is refused out.
//!
//! Two shapes reach the endpoint (`forward_auth.path`, say `/_tokengate/auth`):
//!
//! - the endpoint followed by the original path and query (Envoy's
//!   `path_prefix`, nginx's `proxy_pass .../_tokengate/auth$request_uri`),
//!   with the original method and host as the subrequest's: the shape a
//!   client cannot describe differently, since the calling gateway builds
//!   the subrequest's target itself;
//! - the endpoint itself, with the original in headers the calling gateway
//!   sets, replacing any client copy (Traefik, Caddy): the method in
//!   `X-Forwarded-Method` or `X-Original-Method`, else the subrequest's own;
//!   the path and query in `X-Forwarded-Uri` or `X-Original-URI`; the host in
//!   `X-Forwarded-Host` or `X-Original-Host`, else `Host`.
//!
//! Where two spellings are both present they must agree, and no header may
//! be given twice: a description the gateway could read two ways is refused.

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
/// under `endpoint`) and query `query`.
pub fn describe(
    endpoint: &str,
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Original, &'static str> {
    let rest = path.strip_prefix(endpoint).unwrap_or_default();
    let in_path = (!rest.is_empty()).then(|| match query {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    });
    let in_headers = one_of(headers, &URI)?;
    let target = match (in_path, in_headers) {
        (Some(p), Some(h)) if p != h => return Err("the original URI is given twice, differently"),
        (Some(p), _) => p,
        (None, Some(h)) => h.to_string(),
        (None, None) => return Err("no original URI: send X-Original-URI or X-Forwarded-Uri"),
    };
    if !target.starts_with('/') {
        return Err("the original URI must be a path (and query)");
    }
    // Traefik and Caddy ask with GET and name the original method in a
    // header they set themselves; nginx and Envoy ask with the original
    // method. A header that disagrees with a method that is not a plain GET,
    // or with the method of Envoy's shape, is a client's own header passed
    // along: refused, never believed.
    let own = method;
    let method = match one_of(headers, &METHOD)? {
        Some(named) if named != own && (!rest.is_empty() || own != "GET") => {
            return Err("the original method is given twice, differently")
        }
        Some(named) => named,
        None => own,
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the original method is not a method");
    }
    let host = match one_of(headers, &HOST)? {
        Some(h) => Some(h),
        None => single(headers, "host")?,
    };
    Ok(Original {
        method: method.to_string(),
        target,
        host: host.map(str::to_string),
    })
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

    #[test]
    fn the_endpoint_and_what_is_under_it() {
        assert!(is_endpoint(EP, "/_tokengate/auth"));
        assert!(is_endpoint(EP, "/_tokengate/auth/api/v3/secrets"));
        assert!(!is_endpoint(EP, "/_tokengate/authx"));
        assert!(!is_endpoint(EP, "/_tokengate"));
    }

    #[test]
    fn nginx_traefik_and_caddy_describe_in_headers() {
        let nginx = headers(&[
            ("x-original-method", "POST"),
            ("x-original-uri", "/api/v3/secrets?workspaceId=p1"),
            ("host", "api.example.com"),
        ]);
        let o = describe(EP, "GET", EP, None, &nginx).unwrap();
        assert_eq!(o.method, "POST");
        assert_eq!(o.target, "/api/v3/secrets?workspaceId=p1");
        assert_eq!(o.host.as_deref(), Some("api.example.com"));

        let traefik = headers(&[
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/v1/things/1"),
            ("x-forwarded-host", "things.example.com"),
            ("host", "tokengate:8080"),
        ]);
        let o = describe(EP, "GET", EP, None, &traefik).unwrap();
        assert_eq!(o.method, "DELETE");
        assert_eq!(o.host.as_deref(), Some("things.example.com"));
    }

    #[test]
    fn envoy_appends_the_original_to_the_endpoint() {
        let h = headers(&[("host", "api.example.com")]);
        let o = describe(EP, "PATCH", "/_tokengate/auth/v1/x", Some("a=1"), &h).unwrap();
        assert_eq!(o.method, "PATCH");
        assert_eq!(o.target, "/v1/x?a=1");
        assert_eq!(o.host.as_deref(), Some("api.example.com"));
    }

    #[test]
    fn ambiguous_or_missing_descriptions_are_refused() {
        let none = headers(&[("host", "h")]);
        assert!(describe(EP, "GET", EP, None, &none).is_err());
        let twice = headers(&[("x-original-uri", "/a"), ("x-original-uri", "/b")]);
        assert!(describe(EP, "GET", EP, None, &twice).is_err());
        let disagree = headers(&[("x-original-uri", "/a"), ("x-forwarded-uri", "/b")]);
        assert!(describe(EP, "GET", EP, None, &disagree).is_err());
        let agree = headers(&[("x-original-uri", "/a"), ("x-forwarded-uri", "/a")]);
        assert_eq!(describe(EP, "GET", EP, None, &agree).unwrap().target, "/a");
        let path_and_header = headers(&[("x-forwarded-uri", "/b")]);
        assert!(describe(EP, "GET", "/_tokengate/auth/a", None, &path_and_header).is_err());
        let methods = headers(&[
            ("x-original-uri", "/a"),
            ("x-original-method", "GET"),
            ("x-forwarded-method", "DELETE"),
        ]);
        assert!(describe(EP, "GET", EP, None, &methods).is_err());
        // A client's own method header cannot change what nginx or Envoy
        // say the method is.
        let lie = headers(&[("x-forwarded-method", "GET")]);
        assert!(describe(EP, "DELETE", "/_tokengate/auth/a", None, &lie).is_err());
        let lie = headers(&[("x-forwarded-method", "DELETE")]);
        assert!(describe(EP, "GET", "/_tokengate/auth/a", None, &lie).is_err());
        let lie = headers(&[("x-original-uri", "/a"), ("x-original-method", "GET")]);
        assert!(describe(EP, "POST", EP, None, &lie).is_err());
        let absolute = headers(&[("x-original-uri", "http://evil/a")]);
        assert!(describe(EP, "GET", EP, None, &absolute).is_err());
        let hosts = headers(&[
            ("x-original-uri", "/a"),
            ("x-forwarded-host", "a"),
            ("x-forwarded-host", "b"),
        ]);
        assert!(describe(EP, "GET", EP, None, &hosts).is_err());
    }
}
