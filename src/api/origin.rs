//! Which browser calls the management API answers: those from a page of the
//! listener's own origin (the console), and calls that are not from a page
//! at all (SDKs, the CLI, curl send neither `Origin` nor `Sec-Fetch-Site`).
//! Anything else a browser sends, from another origin or with headers that
//! cannot be judged, is refused before routing.
//!
//! Why refuse rather than rely on CORS: a browser sends some cross-origin
//! requests (a form post, a `text/plain` fetch) without asking first, and
//! only hides the answer; the request itself would still be served.

use http::HeaderMap;

/// One request header as the check sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Header<'a> {
    #[default]
    Absent,
    One(&'a str),
    /// Sent more than once, or not text: nothing the check can trust.
    Unreadable,
}

impl<'a> Header<'a> {
    fn of(headers: &'a HeaderMap, name: &str) -> Self {
        let mut all = headers.get_all(name).iter();
        match (all.next(), all.next()) {
            (None, _) => Header::Absent,
            (Some(v), None) => v.to_str().map_or(Header::Unreadable, Header::One),
            (Some(_), Some(_)) => Header::Unreadable,
        }
    }
}

/// Where a request says it comes from and which listener it reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Site<'a> {
    /// `Origin`: the page's scheme, host and port.
    pub origin: Header<'a>,
    /// `Sec-Fetch-Site`: the browser's own verdict on the same question.
    pub fetch_site: Header<'a>,
    /// The request's authority (`Host`, or an HTTP/2 `:authority`).
    pub host: Option<&'a str>,
    /// Whether the listener speaks TLS, so that `http://` pages of the same
    /// host and port are not taken for `https://` ones.
    pub tls: bool,
    /// `admin.allowed_hosts`: the host names, besides IP addresses and
    /// `localhost`, a browser may call the API by (on the admin listener,
    /// anyone: `admin.rs` checks every caller).
    pub names: &'a [String],
}

impl<'a> Site<'a> {
    /// The site of a request with these headers and authority.
    pub fn of(headers: &'a HeaderMap, authority: Option<&'a str>, tls: bool) -> Self {
        Site {
            origin: Header::of(headers, "origin"),
            fetch_site: Header::of(headers, "sec-fetch-site"),
            host: authority,
            tls,
            names: &[],
        }
    }

    /// The same, with the host names browsers may use (`admin.allowed_hosts`).
    pub fn with_names(self, names: &'a [String]) -> Self {
        Site { names, ..self }
    }

    /// The site of a request: its headers, and its authority from `Host`
    /// or, for HTTP/2, `:authority`.
    pub fn of_request(parts: &'a http::request::Parts, tls: bool) -> Self {
        Self::of(&parts.headers, request_authority(parts), tls)
    }

    /// Why a browser call from this site is refused; None when it is served.
    pub fn refusal(&self) -> Option<String> {
        match self.fetch_site {
            Header::Absent | Header::One("same-origin" | "none") => {}
            Header::One(v) => {
                return Some(format!(
                    "cross-origin management call refused (Sec-Fetch-Site: {}); \
                     call the API from its own origin or from outside a browser",
                    printable(v)
                ))
            }
            Header::Unreadable => return Some("unreadable Sec-Fetch-Site header".into()),
        }
        // A page of any name can be served from the listener's address (DNS
        // rebinding): its calls would pass as same-origin and spend the
        // operator's lockout. A browser gets answers only under a name the
        // operator chose.
        let from_browser = self.origin != Header::Absent || self.fetch_site != Header::Absent;
        if from_browser {
            if let Some(why) = self.unexpected_name() {
                return Some(why);
            }
        }
        let origin = match self.origin {
            Header::Absent => return None,
            Header::One(v) => v,
            Header::Unreadable => return Some("unreadable Origin header".into()),
        };
        let ours = self.host.and_then(|h| own_origin(h, self.tls));
        let theirs = parse_origin(origin, self.tls);
        match (theirs, ours) {
            (Some(o), Some(h)) if o == h => None,
            (_, None) => Some("a browser call needs a plain Host header".into()),
            _ => Some(format!(
                "cross-origin management call refused: Origin {} is not this listener's origin",
                printable(origin)
            )),
        }
    }
}

impl Site<'_> {
    /// Why the request's host name is not one a browser may use.
    fn unexpected_name(&self) -> Option<String> {
        unlisted_host(self.host, self.names)
    }
}

/// A request's authority: `Host`, or HTTP/2's `:authority` without one.
pub fn request_authority(parts: &http::request::Parts) -> Option<&str> {
    match parts.headers.get(http::header::HOST) {
        Some(host) => host.to_str().ok(),
        None => parts.uri.authority().map(|a| a.as_str()),
    }
}

/// Why `host` (a request's authority) is not one management calls are
/// answered under: the name must be an IP address, `localhost` or one of
/// `names` (`admin.allowed_hosts`). A page of any other name can be served
/// from the gateway's address by DNS rebinding, and its calls would then
/// look like the operator's own.
pub fn unlisted_host(host: Option<&str>, names: &[String]) -> Option<String> {
    let Some((host, _)) = host.and_then(authority) else {
        return Some("a plain Host header is needed".into());
    };
    let name = host.strip_suffix('.').unwrap_or(&host);
    let expected = name.starts_with('[')
        || name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || names.iter().any(|n| n.eq_ignore_ascii_case(name));
    (!expected).then(|| {
        format!(
            "the host name {} is not one this listener answers management calls under: \
             add it to admin.allowed_hosts",
            printable(name)
        )
    })
}

/// A header value as it can be shown in an error: bounded and visible
/// ASCII only.
fn printable(v: &str) -> String {
    v.chars()
        .take(100)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// The host (lowercase) and port of an `Origin` of the listener's scheme.
fn parse_origin(origin: &str, tls: bool) -> Option<(String, u16)> {
    let (scheme, rest) = origin.split_once("://")?;
    let expected = if tls { "https" } else { "http" };
    if !scheme.eq_ignore_ascii_case(expected) {
        return None;
    }
    let (host, port) = authority(rest)?;
    Some((host, port.unwrap_or(default_port(tls))))
}

/// The listener's own (host, port) from the request's authority, the port
/// defaulted as the browser's origin would be.
fn own_origin(host: &str, tls: bool) -> Option<(String, u16)> {
    let (h, p) = authority(host)?;
    Some((h, p.unwrap_or(default_port(tls))))
}

fn default_port(tls: bool) -> u16 {
    if tls {
        443
    } else {
        80
    }
}

/// `host[:port]` as (lowercase host, port), the port absent when not given;
/// None for anything else (a path, user info, an empty or non-numeric port).
fn authority(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = match s.strip_prefix('[') {
        Some(inner) => {
            let (h, _) = inner.split_once(']')?;
            h.parse::<std::net::Ipv6Addr>().ok()?;
            s.split_at(h.len() + 2)
        }
        None => s.split_at(s.find(':').unwrap_or(s.len())),
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')));
    if !host_ok {
        return None;
    }
    let port = match port {
        "" => None,
        p => {
            let digits = p.strip_prefix(':')?;
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            Some(digits.parse::<u16>().ok()?)
        }
    };
    Some((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site<'a>(origin: Option<&'a str>, fetch: Option<&'a str>, host: &'a str) -> Site<'a> {
        Site {
            origin: origin.map_or(Header::Absent, Header::One),
            fetch_site: fetch.map_or(Header::Absent, Header::One),
            host: Some(host),
            tls: false,
            names: &[],
        }
    }

    #[test]
    fn calls_from_outside_a_browser_are_served() {
        assert_eq!(site(None, None, "127.0.0.1:9090").refusal(), None);
        assert_eq!(Site::default().refusal(), None);
    }

    #[test]
    fn the_listener_s_own_origin_is_served() {
        let names = ["admin.example".to_string()];
        for (origin, host) in [
            ("http://127.0.0.1:9090", "127.0.0.1:9090"),
            ("HTTP://Admin.Example:9090", "admin.example:9090"),
            ("http://admin.example", "admin.example:80"),
            ("http://admin.example:80", "admin.example"),
            ("http://[::1]:9090", "[::1]:9090"),
            ("http://localhost:9090", "localhost:9090"),
        ] {
            let s = site(Some(origin), Some("same-origin"), host).with_names(&names);
            assert_eq!(s.refusal(), None, "{origin} on {host}");
        }
        let tls = Site {
            tls: true,
            ..site(Some("https://admin.example"), None, "admin.example:443")
        };
        assert_eq!(tls.with_names(&names).refusal(), None);
    }

    #[test]
    fn a_browser_is_answered_only_under_an_address_or_a_listed_name() {
        let names = ["admin.example".to_string()];
        // DNS rebinding: the page's origin and the Host agree, but the
        // name is not one the operator chose.
        for (origin, fetch, host) in [
            (
                Some("http://rebind.example:9090"),
                None,
                "rebind.example:9090",
            ),
            (None, Some("same-origin"), "rebind.example:9090"),
            (
                Some("http://admin.example.evil:9090"),
                None,
                "admin.example.evil:9090",
            ),
        ] {
            let s = site(origin, fetch, host).with_names(&names);
            assert!(s.refusal().is_some(), "{host}");
        }
        // Not a browser: names do not matter.
        assert_eq!(site(None, None, "rebind.example:9090").refusal(), None);
    }

    #[test]
    fn any_other_origin_is_refused() {
        for origin in [
            "http://127.0.0.1:8080",
            "http://localhost:9090",
            "https://127.0.0.1:9090",
            "http://127.0.0.1:9090/",
            "http://127.0.0.1:9090/ui/",
            "http://user@127.0.0.1:9090",
            "http://127.0.0.1:09090x",
            "http://127.0.0.1:",
            "http://127.0.0.1:99999",
            "http://[::1:9090",
            "null",
            "",
            "127.0.0.1:9090",
            "file://",
            "http://127.0.0.1:9090.evil.example",
        ] {
            let s = site(Some(origin), None, "127.0.0.1:9090");
            assert!(s.refusal().is_some(), "{origin:?} was served");
        }
        let plain_page_on_tls = Site {
            tls: true,
            ..site(Some("http://admin.example"), None, "admin.example:443")
        };
        assert!(plain_page_on_tls.refusal().is_some());
    }

    #[test]
    fn the_browser_s_own_verdict_is_trusted_when_it_refuses() {
        for verdict in ["cross-site", "same-site", "Same-Origin", "other"] {
            let s = site(
                Some("http://127.0.0.1:9090"),
                Some(verdict),
                "127.0.0.1:9090",
            );
            assert!(s.refusal().is_some(), "{verdict}");
        }
        // Typed into the address bar: no page sent it.
        assert_eq!(site(None, Some("none"), "127.0.0.1:9090").refusal(), None);
    }

    #[test]
    fn headers_that_cannot_be_judged_are_refused() {
        let mut s = site(None, None, "127.0.0.1:9090");
        s.origin = Header::Unreadable;
        assert!(s.refusal().is_some());
        let mut s = site(None, None, "127.0.0.1:9090");
        s.fetch_site = Header::Unreadable;
        assert!(s.refusal().is_some());
        let mut s = site(Some("http://127.0.0.1:9090"), None, "127.0.0.1:9090");
        s.host = None;
        assert!(s.refusal().is_some());
        let mut headers = HeaderMap::new();
        let value = http::HeaderValue::from_static("http://127.0.0.1:9090");
        headers.append("origin", value.clone());
        headers.append("origin", value);
        let twice = Site::of(&headers, Some("127.0.0.1:9090"), false);
        assert_eq!(twice.origin, Header::Unreadable);
        assert!(twice.refusal().is_some());
    }

    #[test]
    fn a_refusal_shows_only_visible_ascii() {
        let s = site(Some("http://e\u{7}vil x\u{e9}"), None, "127.0.0.1:9090");
        let why = s.refusal().unwrap_or_default();
        assert!(why.contains("http://e?vil?x?"), "{why}");
    }
}
