//! Requests for the project-boundary fuzz test: a seeded PRNG, the request draft and its bytes on the wire, the base requests that name `p1` legitimately, and the benign variants any gateway must forward.
//!
//! Requests are bytes, not strings: NULs, control characters and Latin-1
//! header values are part of what the mutation classes (`targets`,
//! `fields`) try.

/// The project the identity is a member of.
pub const P1: &str = "p1";
/// A project it is not a member of.
pub const OTHER: &str = "p-other";

/// splitmix64: tiny, seedable, and good enough to spread choices evenly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// A request under construction.
#[derive(Debug, Clone)]
pub struct Draft {
    pub method: String,
    /// The request target exactly as it goes on the request line.
    pub target: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Members of a JSON object body as raw text (`"key"`, value), written in order.
    pub json: Option<Vec<(String, String)>>,
    /// A raw body; wins over `json`.
    pub body: Option<Vec<u8>>,
    /// `None`: `application/json` for a JSON body, nothing otherwise;
    /// `Some`: exactly these Content-Type lines (none at all when empty).
    pub content_types: Option<Vec<Vec<u8>>>,
    pub chunked: bool,
}

impl Draft {
    fn new(method: &str, target: &str) -> Draft {
        Draft {
            method: method.to_string(),
            target: target.as_bytes().to_vec(),
            headers: Vec::new(),
            json: None,
            body: None,
            content_types: None,
            chunked: false,
        }
    }

    pub fn query_start(&self) -> Option<usize> {
        self.target.iter().position(|&b| b == b'?')
    }

    /// Replaces the part before `?`, keeping the query.
    pub fn set_path(&mut self, path: &[u8]) {
        let end = self.query_start().unwrap_or(self.target.len());
        let mut t = path.to_vec();
        t.extend_from_slice(&self.target[end..]);
        self.target = t;
    }

    pub fn query(&self) -> Vec<u8> {
        self.query_start()
            .map(|i| self.target[i + 1..].to_vec())
            .unwrap_or_default()
    }

    /// Adds `pair` to the query, first or last.
    pub fn add_query(&mut self, rng: &mut Rng, pair: &str) {
        match self.query_start() {
            None => {
                self.target.push(b'?');
                self.target.extend_from_slice(pair.as_bytes());
            }
            Some(i) if rng.chance(50) => {
                let mut t = self.target[..=i].to_vec();
                t.extend_from_slice(pair.as_bytes());
                t.push(b'&');
                t.extend_from_slice(&self.target[i + 1..]);
                self.target = t;
            }
            Some(_) => {
                self.target.push(b'&');
                self.target.extend_from_slice(pair.as_bytes());
            }
        }
    }

    pub fn header(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.headers
            .push((name.as_ref().to_vec(), value.as_ref().to_vec()));
    }

    /// Adds a JSON member at a random place (making the body JSON if it was not).
    pub fn json_member(&mut self, rng: &mut Rng, key: &str, value: &str) {
        let members = self.json.get_or_insert_with(Vec::new);
        let at = rng.below(members.len() + 1);
        members.insert(at, (key.to_string(), value.to_string()));
    }

    /// A raw body with these Content-Type lines, replacing any JSON members.
    pub fn raw_body(&mut self, body: impl AsRef<[u8]>, content_types: &[&[u8]]) {
        self.json = None;
        self.body = Some(body.as_ref().to_vec());
        self.content_types = Some(content_types.iter().map(|c| c.to_vec()).collect());
    }

    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        if let Some(b) = &self.body {
            return Some(b.clone());
        }
        let members = self.json.as_ref()?;
        let inner: Vec<String> = members.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        Some(format!("{{{}}}", inner.join(",")).into_bytes())
    }

    /// The request on the wire, with `Host`, the credential and `Connection: close`.
    pub fn to_bytes(&self, rng: &mut Rng, host: &str, authorization: &str) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        out.extend_from_slice(
            format!("Host: {host}\r\nAuthorization: {authorization}\r\n").as_bytes(),
        );
        for (name, value) in &self.headers {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        let content_types = match (&self.content_types, &self.json, &self.body) {
            (Some(c), _, _) => c.clone(),
            (None, Some(_), None) => vec![b"application/json".to_vec()],
            _ => Vec::new(),
        };
        for ct in content_types {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(&ct);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Connection: close\r\n");
        match self.body_bytes() {
            None => out.extend_from_slice(b"\r\n"),
            Some(body) if self.chunked => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &body[..];
                // At most three data chunks, then the last chunk.
                for _ in 0..3 {
                    if rest.is_empty() {
                        break;
                    }
                    let n = 1 + rng.below(rest.len());
                    out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    out.extend_from_slice(&rest[..n]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                }
                if !rest.is_empty() {
                    out.extend_from_slice(format!("{:x}\r\n", rest.len()).as_bytes());
                    out.extend_from_slice(rest);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            Some(body) => {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                out.extend_from_slice(&body);
            }
        }
        out
    }
}

/// The requests every mutation starts from; each names `p1` one legitimate way.
pub fn bases() -> Vec<(&'static str, Draft)> {
    let json = |method: &str, target: &str, members: &[(&str, &str)]| {
        let mut d = Draft::new(method, target);
        d.json = Some(
            members
                .iter()
                .map(|(k, v)| (format!("\"{k}\""), format!("\"{v}\"")))
                .collect(),
        );
        d
    };
    let mut header = Draft::new("GET", "/api/v1/things");
    header.header("x-project-id", P1);
    vec![
        (
            "query-workspaceId",
            Draft::new("GET", "/api/v3/secrets/raw?workspaceId=p1&environment=dev"),
        ),
        (
            "query-projectId",
            Draft::new("GET", "/api/v1/things?projectId=p1&environment=dev"),
        ),
        (
            "path-v1-projects",
            Draft::new("GET", "/api/v1/projects/p1/secrets"),
        ),
        (
            "path-v1-workspace",
            Draft::new("GET", "/api/v1/workspace/p1/environments"),
        ),
        (
            "path-v2-workspace",
            Draft::new("GET", "/api/v2/workspace/p1"),
        ),
        (
            "path-v3-workspaces",
            Draft::new("GET", "/api/v3/workspaces/p1"),
        ),
        ("header", header),
        (
            "json-post",
            json(
                "POST",
                "/api/v3/secrets/raw/NAME",
                &[
                    ("workspaceId", P1),
                    ("environment", "dev"),
                    ("secretValue", "v"),
                ],
            ),
        ),
        (
            "json-patch",
            json(
                "PATCH",
                "/api/v3/secrets/raw/NAME",
                &[("projectId", P1), ("secretValue", "v")],
            ),
        ),
    ]
}

/// What a mutation needs besides the draft.
pub struct Ctx<'a> {
    /// The project to name: [`OTHER`] for most cases, [`P1`] for some.
    pub v: &'a str,
    /// The gateway's own authority, "127.0.0.1:P".
    pub gateway: &'a str,
    /// The upstream's authority.
    pub upstream: &'a str,
}

pub type Mutate = fn(&mut Rng, &mut Draft, &Ctx);

// ---------------------------------------------------------------------------
// Spellings shared by the mutation classes.

const FIELDS: [&str; 2] = ["workspaceId", "projectId"];

pub fn field(rng: &mut Rng) -> &'static str {
    rng.pick(&FIELDS)
}

/// Flips the case of some letters, at least one.
pub fn case_flip(rng: &mut Rng, s: &str) -> String {
    let flip = |c: char| {
        if c.is_ascii_uppercase() {
            c.to_ascii_lowercase()
        } else {
            c.to_ascii_uppercase()
        }
    };
    let out: String = s
        .chars()
        .map(|c| if rng.chance(50) { flip(c) } else { c })
        .collect();
    if out != s {
        return out;
    }
    let first = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(0);
    s.char_indices()
        .map(|(i, c)| if i == first { flip(c) } else { c })
        .collect()
}

/// Inserts one or two of `seps` at random places after the first character.
pub fn insert_seps(rng: &mut Rng, s: &str, seps: &[&str]) -> String {
    let mut chars: Vec<String> = s.chars().map(String::from).collect();
    for _ in 0..1 + rng.below(2) {
        let at = 1 + rng.below(chars.len());
        chars.insert(at, rng.pick(seps).to_string());
    }
    chars.concat()
}

/// Percent-encodes some characters, at least one.
pub fn pct_some(rng: &mut Rng, s: &str) -> String {
    let forced = rng.below(s.len().max(1));
    s.bytes()
        .enumerate()
        .map(|(i, b)| {
            if i == forced || rng.chance(40) {
                if rng.chance(50) {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                }
            } else {
                (b as char).to_string()
            }
        })
        .collect()
}

/// JSON-escapes some characters as `\u00XX`, at least one.
pub fn json_escape_some(rng: &mut Rng, s: &str) -> String {
    let forced = rng.below(s.len().max(1));
    s.bytes()
        .enumerate()
        .map(|(i, b)| {
            if i == forced || rng.chance(40) {
                format!("\\u{:04x}", b)
            } else {
                (b as char).to_string()
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Benign variants: still name only p1, in ways any gateway must accept.

fn benign_base(_: &mut Rng, _: &mut Draft, _: &Ctx) {}

fn benign_extra_query(rng: &mut Rng, d: &mut Draft, _: &Ctx) {
    let pair = rng.pick(&[
        "secretPath=%2F",
        "recursive=false",
        "environment=prod",
        "tag=a+b",
    ]);
    d.add_query(rng, pair);
}

fn benign_extra_header(rng: &mut Rng, d: &mut Draft, _: &Ctx) {
    let (n, v) = rng.pick(&[
        ("X-Request-Id", "r-123"),
        ("Accept", "application/json"),
        ("User-Agent", "boundary-fuzz/1"),
    ]);
    d.header(n, v);
}

fn benign_json_format(rng: &mut Rng, d: &mut Draft, _: &Ctx) {
    match d.json.as_mut() {
        Some(members) => {
            members.push(("\"type\"".into(), "\"shared\"".into()));
            rng.shuffle(members);
            for (k, _) in members.iter_mut() {
                *k = format!("\n  {k} ");
            }
        }
        None => d.add_query(rng, "recursive=false"),
    }
}

fn benign_chunked(_: &mut Rng, d: &mut Draft, _: &Ctx) {
    d.chunked = d.json.is_some();
}

fn benign_charset(_: &mut Rng, d: &mut Draft, _: &Ctx) {
    if d.json.is_some() {
        d.content_types = Some(vec![b"application/json; charset=utf-8".to_vec()]);
    } else {
        d.header("Accept", "application/json; charset=utf-8");
    }
}

fn benign_header_case(_: &mut Rng, d: &mut Draft, _: &Ctx) {
    match d.headers.iter_mut().find(|(n, _)| n == b"x-project-id") {
        Some((n, _)) => *n = b"X-Project-Id".to_vec(),
        None => d.header("X-Project-Id", P1),
    }
}

pub const BENIGN: &[(&str, Mutate)] = &[
    ("benign.base", benign_base),
    ("benign.extra-query", benign_extra_query),
    ("benign.extra-header", benign_extra_header),
    ("benign.json-format", benign_json_format),
    ("benign.chunked", benign_chunked),
    ("benign.charset", benign_charset),
    ("benign.header-case", benign_header_case),
];
