//! Mutation classes on the request target: forms and spellings of a path that a lenient router reads as naming another project.
//!
//! Each class swaps in one path (keeping the base's query, headers and body),
//! so a leak is attributed to the one trick that caused it.

use crate::request::{case_flip, field, pct_some, Ctx, Draft, Mutate, Rng};

const ROUTES: [&str; 5] = [
    "/api/v1/projects/{v}/secrets",
    "/api/v1/projects/{v}",
    "/api/v1/workspace/{v}/environments",
    "/api/v2/workspace/{v}",
    "/api/v3/workspaces/{v}",
];

/// A configured project route naming `v`.
pub fn route(rng: &mut Rng, v: &str) -> String {
    rng.pick(&ROUTES).replace("{v}", v)
}

/// Routes that reach `{v}` only once `{..}` and `{.}` are resolved.
const DOTTED: [&str; 7] = [
    "/api/v1/projects/p1/{..}/{v}/secrets",
    "/api/v1/projects/p1/{..}/{..}/projects/{v}",
    "/api/v3/secrets/{..}/{..}/v1/projects/{v}/secrets",
    "/x/{..}/api/v1/projects/{v}",
    "/{.}/api/v1/projects/{v}",
    "/api/v1/things/{..}/projects/{v}/secrets",
    "/api/v1/{.}/projects/{v}",
];

fn dotted(rng: &mut Rng, v: &str, dots: &[&str], dot: &[&str]) -> Vec<u8> {
    let t = rng.pick(&DOTTED).replace("{v}", v);
    let t = t.replace("{..}", rng.pick(dots));
    t.replace("{.}", rng.pick(dot)).into_bytes()
}

fn target_absolute(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let scheme = rng.pick(&["http", "https", "HTTP"]);
    let authority = rng.pick(&[
        c.gateway,
        c.upstream,
        "evil.example",
        "127.0.0.1",
        "localhost",
        "user:pw@evil.example",
        "evil.example:80",
    ]);
    let path = route(rng, c.v);
    d.set_path(format!("{scheme}://{authority}{path}").as_bytes());
}

fn target_scheme(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let p = route(rng, c.v);
    let t = match rng.below(5) {
        0 => format!("xyz:{p}"),
        1 => format!("xyz:{}", &p[1..]),
        2 => format!("http:{p}"),
        3 => format!("//evil.example{p}"),
        _ => format!("mailto:{p}"),
    };
    d.set_path(t.as_bytes());
}

fn target_no_slash(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let p = route(rng, c.v);
    let prefix = rng.pick(&["", "./", "../"]);
    d.set_path(format!("{prefix}{}", &p[1..]).as_bytes());
}

fn target_asterisk(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let query = String::from_utf8_lossy(&d.query()).into_owned();
    let pair = format!("{}={}", field(rng), c.v);
    let q = if query.is_empty() || rng.chance(50) {
        pair
    } else {
        format!("{query}&{pair}")
    };
    d.target = format!("*?{q}").into_bytes();
}

fn target_dots(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let t = dotted(rng, c.v, &[".."], &["."]);
    d.set_path(&t);
}

fn target_pct_dots(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let dots = ["%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e"];
    let t = dotted(rng, c.v, &dots, &["%2e", "%2E", "%252e"]);
    d.set_path(&t);
}

fn target_overlong(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let dots = [
        "%c0%ae%c0%ae",
        "%C0%AE%C0%AE",
        "%e0%80%ae%e0%80%ae",
        ".%c0%ae",
    ];
    let mut t = String::from_utf8_lossy(&dotted(rng, c.v, &dots, &["%c0%ae"])).into_owned();
    if rng.chance(30) {
        // An overlong slash after the dots as well.
        t = t.replacen("%c0%ae/", "%c0%ae%c0%af", 1);
    }
    d.set_path(t.as_bytes());
}

fn target_fullwidth(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let dots = ["%ef%bc%8e%ef%bc%8e", "%EF%BC%8E.", "\u{ff0e}\u{ff0e}"];
    let t = dotted(rng, c.v, &dots, &["%ef%bc%8e"]);
    d.set_path(&t);
}

fn target_semicolon(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let t = rng.pick(&[
        "/api/v1/projects/p1/..;/{v}/secrets",
        "/api/v1/projects/p1/..;x=y/{v}",
        "/api;/v1/projects/{v}/secrets",
        "/api/v1;x/projects/{v}",
        "/api/v1/projects;a=b/{v}/secrets",
        "/api/v1/projects/{v};jsessionid=x/secrets",
        "/api/v1/projects/p1;/../{v}",
    ]);
    d.set_path(t.replace("{v}", c.v).as_bytes());
}

fn target_double_slash(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let p = route(rng, c.v);
    let slashes: Vec<usize> = p.match_indices('/').map(|(i, _)| i).collect();
    let at = rng.pick(&slashes);
    let t = format!("{}/{}", &p[..at], &p[at..]);
    d.set_path(t.as_bytes());
}

fn target_backslash(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let p = route(rng, c.v);
    let forced = 1 + rng.below(p.matches('/').count() - 1);
    let mut n = 0;
    let t: String = p
        .chars()
        .map(|ch| {
            if ch != '/' {
                return ch.to_string();
            }
            n += 1;
            if n > 1 && (n - 1 == forced || rng.chance(50)) {
                rng.pick(&["\\", "%5c", "%5C"]).to_string()
            } else {
                "/".to_string()
            }
        })
        .collect();
    d.set_path(t.as_bytes());
}

fn target_pct_encoded(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let t = match rng.below(4) {
        0 => format!("/api/v1/{}/{}/secrets", pct_some(rng, "projects"), c.v),
        1 => format!(
            "/{}/v1/projects/{}",
            pct_some(rng, "api"),
            pct_some(rng, c.v)
        ),
        2 => format!(
            "/api/v1/projects{}{}/secrets",
            rng.pick(&["%2f", "%2F"]),
            c.v
        ),
        _ => {
            // Encoded twice: only a reader that decodes twice sees the id.
            let once = pct_some(rng, c.v);
            format!("/api/v1/projects/{}", once.replace('%', "%25"))
        }
    };
    d.set_path(t.as_bytes());
}

fn target_fragment(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    match rng.below(3) {
        0 => {
            let pair = format!("#&{}={}", field(rng), c.v);
            d.target.extend_from_slice(pair.as_bytes());
        }
        1 => {
            let p = route(rng, c.v);
            d.set_path(format!("{p}#frag").as_bytes());
        }
        _ => d.set_path(format!("/api/v1/things#/../projects/{}", c.v).as_bytes()),
    }
}

fn target_ctl(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let mut p = route(rng, c.v).into_bytes();
    let at = 1 + rng.below(p.len() - 1);
    let ctl: &[u8] = rng.pick(&[&b" "[..], b"\t", b"\x0b", b"\x7f", b"\x00", b"\r"]);
    p.splice(at..at, ctl.iter().copied());
    d.set_path(&p);
}

fn path_case(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let p = route(rng, c.v);
    let segments: Vec<String> = p
        .split('/')
        .map(|s| {
            if s == c.v || s.is_empty() || !rng.chance(60) {
                s.to_string()
            } else {
                case_flip(rng, s)
            }
        })
        .collect();
    let mut t = segments.join("/");
    if t == p {
        t = p.replacen("api", "API", 1);
    }
    d.set_path(t.as_bytes());
}

fn path_other_routes(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let v = rng.pick(&["v", "V"]);
    let n = 1 + rng.below(5);
    let kind = rng.pick(&["projects", "project", "workspace", "workspaces"]);
    let suffix = rng.pick(&["", "/", "/secrets", "/environments", "/tags"]);
    d.set_path(format!("/api/{v}{n}/{kind}/{}{suffix}", c.v).as_bytes());
}

/// Every target class; the name is what the report shows.
pub const CLASSES: &[(&str, Mutate)] = &[
    ("target.absolute-form", target_absolute),
    ("target.scheme-or-authority", target_scheme),
    ("target.no-leading-slash", target_no_slash),
    ("target.asterisk", target_asterisk),
    ("target.dot-segments", target_dots),
    ("target.pct-dots", target_pct_dots),
    ("target.overlong-utf8", target_overlong),
    ("target.fullwidth-dots", target_fullwidth),
    ("target.semicolon-params", target_semicolon),
    ("target.double-slash", target_double_slash),
    ("target.backslash", target_backslash),
    ("target.pct-encoded", target_pct_encoded),
    ("target.fragment", target_fragment),
    ("target.control-chars", target_ctl),
    ("path.case", path_case),
    ("path.other-routes", path_other_routes),
];
