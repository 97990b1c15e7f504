//! The operator console's files (`ui/`), compiled into the binary and served
//! on the admin listener under `admin.console.path`, with the headers that
//! keep a page holding an admin credential to itself.
//!
//! The console is a page of the admin listener's origin that calls the
//! management API on that same origin (`admin.rs` answers it there too), so
//! nothing has to be allowed cross-origin, and `api::Site` refuses the rest.

use http::Response;

/// One file of the console.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../ui/index.html"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/console.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/api.js"),
    },
    Asset {
        name: "dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/dom.js"),
    },
    Asset {
        name: "forms.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/forms.js"),
    },
    Asset {
        name: "ips.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/ips.js"),
    },
    Asset {
        name: "state.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/state.js"),
    },
    Asset {
        name: "identities.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/identities.js"),
    },
    Asset {
        name: "tokens.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/tokens.js"),
    },
    Asset {
        name: "memberships.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/memberships.js"),
    },
    Asset {
        name: "status.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/status.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../ui/console.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../ui/favicon.svg"),
    },
];

/// Scripts and styles only from the console's own files, no inline code,
/// calls only to its own origin, never framed, and no form posting away.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The answer for `path` under the console's `prefix` (`/ui/`): a file, a
/// redirect from the prefix without its slash, or None when the path is not
/// the console's. Only GET and HEAD are answered.
pub fn serve(prefix: &str, method: &http::Method, path: &str) -> Option<Response<Vec<u8>>> {
    if path == prefix.trim_end_matches('/') {
        return Some(redirect(prefix));
    }
    let name = path.strip_prefix(prefix)?;
    if method != http::Method::GET && method != http::Method::HEAD {
        return Some(with_headers(
            Response::builder()
                .status(405)
                .header("allow", "GET, HEAD")
                .header("content-type", "application/json"),
            br#"{"statusCode":405,"message":"the console's files are read with GET","error":"Method Not Allowed"}"#.to_vec(),
        ));
    }
    let found = ASSETS.iter().find(|a| a.name == name);
    let mut resp = match found {
        Some(a) => with_headers(
            Response::builder()
                .status(200)
                .header("content-type", a.content_type),
            a.body.to_vec(),
        ),
        None => with_headers(
            Response::builder()
                .status(404)
                .header("content-type", "application/json"),
            br#"{"statusCode":404,"message":"no such file in the console","error":"Not Found"}"#
                .to_vec(),
        ),
    };
    // HEAD: the headers of GET, Content-Length included, without the body.
    if method == http::Method::HEAD {
        resp.body_mut().clear();
    }
    Some(resp)
}

fn redirect(prefix: &str) -> Response<Vec<u8>> {
    with_headers(
        Response::builder().status(308).header("location", prefix),
        Vec::new(),
    )
}

/// Every console answer carries the same protections, errors included.
fn with_headers(builder: http::response::Builder, body: Vec<u8>) -> Response<Vec<u8>> {
    builder
        .header("content-security-policy", CONTENT_SECURITY_POLICY)
        .header("x-frame-options", "DENY")
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("cross-origin-opener-policy", "same-origin")
        .header("cross-origin-resource-policy", "same-origin")
        // The files are part of the binary: a new build must never be
        // mixed with a cached older script.
        .header("cache-control", "no-store")
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn every_file_is_served_with_its_type_and_the_protections() {
        for a in ASSETS {
            let resp = serve("/ui/", &Method::GET, &format!("/ui/{}", a.name))
                .unwrap_or_else(|| panic!("{} not served", a.name));
            assert_eq!(resp.status(), 200, "{}", a.name);
            assert_eq!(resp.headers()["content-type"], a.content_type);
            assert_eq!(
                resp.headers()["content-security-policy"],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(resp.headers()["x-frame-options"], "DENY");
            assert_eq!(resp.body().as_slice(), a.body);
            assert!(!a.body.is_empty(), "{} is empty", a.name);
        }
    }

    #[test]
    fn the_prefix_without_its_slash_redirects_and_other_paths_are_not_ours() {
        let resp = serve("/ui/", &Method::GET, "/ui").unwrap_or_default();
        assert_eq!(resp.status(), 308);
        assert_eq!(resp.headers()["location"], "/ui/");
        assert!(serve("/ui/", &Method::GET, "/api/v1/identities").is_none());
        assert!(serve("/ui/", &Method::GET, "/uix").is_none());
        let missing = serve("/ui/", &Method::GET, "/ui/../admin.rs").unwrap_or_default();
        assert_eq!(missing.status(), 404);
        assert_eq!(
            missing.headers()["content-security-policy"],
            CONTENT_SECURITY_POLICY
        );
    }

    #[test]
    fn only_get_and_head_are_answered() {
        let post = serve("/ui/", &Method::POST, "/ui/").unwrap_or_default();
        assert_eq!(post.status(), 405);
        assert_eq!(post.headers()["allow"], "GET, HEAD");
        let head = serve("/ui/", &Method::HEAD, "/ui/console.js").unwrap_or_default();
        assert_eq!(head.status(), 200);
        assert!(head.body().is_empty());
        let get = serve("/ui/", &Method::GET, "/ui/console.js").unwrap_or_default();
        assert_eq!(
            head.headers()["content-length"],
            get.body().len().to_string().as_str()
        );
    }

    #[test]
    fn every_module_a_script_imports_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = String::from_utf8_lossy(a.body);
            for spec in text
                .split(" from '")
                .skip(1)
                .filter_map(|s| s.split('\'').next())
            {
                // Relative, so the console works under any `admin.console.path`.
                let name = spec.strip_prefix("./").unwrap_or(spec);
                assert!(
                    served.contains(&name),
                    "{} imports {spec}, which is not served",
                    a.name
                );
            }
        }
        let html = String::from_utf8_lossy(ASSETS[0].body);
        assert!(html.contains(r#"<script type="module" src="console.js"></script>"#));
    }

    #[test]
    fn the_page_loads_nothing_inline() {
        let html = String::from_utf8_lossy(ASSETS[0].body).to_ascii_lowercase();
        // Every script tag, whatever its attributes, loads a file.
        for tag in html.split("<script").skip(1) {
            let open = tag.split('>').next().unwrap_or_default();
            assert!(open.contains("src="), "an inline script: <script{open}>");
        }
        assert!(!html.contains("<style"), "an inline style sheet");
        assert!(!html.contains(" style="), "an inline style");
        // Any event-handler attribute (` onclick=`, `\tonload=`, ...).
        let bytes = html.as_bytes();
        for (i, w) in bytes.windows(3).enumerate() {
            if w[0].is_ascii_whitespace() && &w[1..] == b"on" {
                let name: String = html[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .collect();
                let after = html[i + 1 + name.len()..].trim_start();
                assert!(
                    name.len() <= 2 || !after.starts_with('='),
                    "an inline handler: {name}"
                );
            }
        }
    }

    /// The scripts build markup from nodes only: what the API returns
    /// (names, ids, messages) is never parsed as HTML or run as code.
    #[test]
    fn no_script_parses_markup_or_code_from_strings() {
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            // Code only: the modules' comments name what they avoid.
            let js: String = String::from_utf8_lossy(a.body)
                .lines()
                .filter(|l| {
                    let t = l.trim_start();
                    !(t.starts_with("//") || t.starts_with("/*") || t.starts_with('*'))
                })
                .collect::<Vec<_>>()
                .join("\n");
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "setTimeout('",
                "setInterval('",
                "localStorage",
                "sessionStorage",
                "document.cookie",
            ] {
                assert!(!js.contains(sink), "{} uses {sink}", a.name);
            }
        }
    }
}
