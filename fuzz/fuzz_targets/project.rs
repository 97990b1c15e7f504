//! Fuzz target `project`: project path templates and source names as the
//! configuration reads them (`config::parse`), and the project a request
//! names through them (`proxy::project::ProjectRules::resolve`, `decide`).
#![no_main]

// Each target uses part of the shared input helpers.
#[allow(dead_code)]
mod common;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tokengate::config::{self, ProjectSource, TemplateSegment};
use tokengate::model::is_valid_project_id;
use tokengate::proxy::body::UNUSABLE;
use tokengate::proxy::names::decode_lossy;
use tokengate::proxy::path;
use tokengate::proxy::project::{decide, ProjectRules, Resolution};
use tokengate::routes::ProjectRule;

struct Input<'a> {
    /// `project.sources` entries: (kind, value).
    sources: Vec<(&'a str, &'a str)>,
    /// The request.
    path: &'a str,
    query: Option<&'a str>,
    headers: Vec<(&'a [u8], &'a [u8])>,
    body_claims: Vec<String>,
    /// A project id for requests built from a template.
    project: &'a str,
    other: String,
}

const BASE: &str =
    "server: {listen: ['127.0.0.1:8080']}\nupstream: {url: 'http://127.0.0.1:3000'}\n";

// Fields: project sources (one a line, `path|query|header|body VALUE`), the
// request path, its query (none when empty), its headers (one a line,
// `name: value`), body claims (one a line), a project id for requests built
// from the templates, another claim (the rest).
fuzz_target!(|data: &[u8]| {
    let mut f = common::Fields::new(data);
    let sources = common::lines(f.text())
        .take(6)
        .map(|l| l.split_once(' ').unwrap_or((l, "")))
        .collect();
    let path = f.text();
    let query = Some(f.text()).filter(|q| !q.is_empty());
    let headers = f
        .bytes()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| match l.iter().position(|b| *b == b':') {
            Some(i) => (&l[..i], l[i + 1..].trim_ascii()),
            None => (l, &b""[..]),
        })
        .collect();
    let body_claims = common::lines(f.text()).map(String::from).collect();
    let project = f.text();
    let other = f.rest_text().to_string();
    let input = Input {
        sources,
        path,
        query,
        headers,
        body_claims,
        project,
        other,
    };
    let Some(sources) = configured(&input) else {
        return;
    };
    let rules = ProjectRules::new(&sources);

    let mut headers = HeaderMap::new();
    for (n, v) in input.headers.iter().take(8) {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) {
            headers.append(n, v);
        }
    }
    let claims: Vec<String> = input.body_claims.iter().take(4).cloned().collect();
    let got = rules.resolve(input.path, input.query, &headers, &claims);
    if let Resolution::Project(p) = &got {
        assert!(!p.is_empty());
        assert!(
            named_in_request(p, input.path, input.query, &headers, &claims),
            "{p:?} is named nowhere in the request"
        );
    }
    decision(&got);
    agreement(&rules, &input, &headers, &claims, &got);
    for s in &sources {
        if let ProjectSource::Path(t) = s {
            template_finds_project(t, input.project);
        }
    }
});

/// The project sources of a configuration holding the fuzzed ones, or `None`
/// when the configuration is refused (which must then say why).
fn configured(input: &Input<'_>) -> Option<Vec<ProjectSource>> {
    let quote = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let mut list = String::new();
    for (kind, value) in &input.sources {
        // The kind is a key of the file model: only the four it knows.
        if !matches!(*kind, "path" | "query" | "header" | "body") {
            continue;
        }
        list.push_str(&format!("    - {{{kind}: {}}}\n", quote(value)));
    }
    if list.is_empty() {
        list.push_str("    []\n");
    }
    let yaml = format!("{BASE}routes: []\nproject:\n  sources:\n{list}");
    let cfg = match config::parse(&yaml) {
        Ok(cfg) => cfg,
        Err(e) => {
            assert!(!e.0.is_empty(), "refused without a reason:\n{yaml}");
            return None;
        }
    };
    for s in &cfg.project_sources {
        match s {
            ProjectSource::Path(t) => {
                let projects = t.iter().filter(|s| **s == TemplateSegment::Project).count();
                assert_eq!(projects, 1, "{t:?}");
                for seg in t {
                    if let TemplateSegment::Literal(l) = seg {
                        assert!(!l.is_empty() && !l.contains('/'));
                    }
                }
            }
            ProjectSource::Query(n) | ProjectSource::Body(n) => assert!(!n.is_empty()),
            ProjectSource::Header(n) => {
                assert_eq!(*n, n.to_ascii_lowercase());
                assert!(HeaderName::from_bytes(n.as_bytes()).is_ok());
            }
        }
    }
    Some(cfg.project_sources)
}

/// Every claim is read out of some part of the request, decoded as a
/// framework would decode that part, so a project must be spelled there.
fn named_in_request(
    p: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    claims: &[String],
) -> bool {
    if p == UNUSABLE || claims.iter().any(|c| c == p) {
        return true;
    }
    if decode_lossy(path, false).contains(p) {
        return true;
    }
    if query.is_some_and(|q| decode_lossy(q, true).contains(p)) {
        return true;
    }
    headers.values().any(|v| {
        v.to_str()
            .is_ok_and(|t| t.contains(p) || decode_lossy(t, true).contains(p))
    })
}

fn decision(got: &Resolution) {
    let again = |r: &Resolution| match r {
        Resolution::Project(p) => Resolution::Project(p.clone()),
        Resolution::NoProject => Resolution::NoProject,
        Resolution::Conflict => Resolution::Conflict,
    };
    for rule in [ProjectRule::Optional, ProjectRule::Required] {
        match (again(got), decide(again(got), rule)) {
            (Resolution::Conflict, d) => assert!(d.is_err()),
            (Resolution::NoProject, d) => {
                assert_eq!(d.is_err(), rule == ProjectRule::Required)
            }
            (Resolution::Project(p), Ok(Some(q))) => {
                assert_eq!(p, q);
                assert!(is_valid_project_id(&q));
            }
            (Resolution::Project(p), Ok(None)) => panic!("{p:?} decided as no project"),
            (Resolution::Project(p), Err(_)) => assert!(!is_valid_project_id(&p)),
        }
    }
}

/// All claims must agree: one more claim of the same project changes
/// nothing, a claim of another makes a conflict, an empty one is no claim.
fn agreement(
    rules: &ProjectRules,
    input: &Input<'_>,
    headers: &HeaderMap,
    claims: &[String],
    got: &Resolution,
) {
    let with = |extra: &str| {
        let mut more = claims.to_vec();
        more.push(extra.to_string());
        rules.resolve(input.path, input.query, headers, &more)
    };
    assert_eq!(with(""), *got);
    let other = &input.other;
    if other.is_empty() {
        return;
    }
    let expected = match got {
        Resolution::NoProject => Resolution::Project(other.clone()),
        Resolution::Project(p) if p == other => Resolution::Project(p.clone()),
        _ => Resolution::Conflict,
    };
    assert_eq!(with(other), expected);
}

/// A request whose path spells a template, with a valid project id in the
/// placeholder, names that project.
fn template_finds_project(t: &[TemplateSegment], project: &str) {
    let project = if is_valid_project_id(project) {
        project
    } else {
        "proj-1"
    };
    let mut p = String::new();
    for seg in t {
        p.push('/');
        match seg {
            // A literal that is itself escaped is compared with the decoded
            // request segment; those are looked at by `named_in_request`.
            TemplateSegment::Literal(l) if l.contains('%') => return,
            TemplateSegment::Literal(l) => p.push_str(l),
            TemplateSegment::Any => p.push_str("v1"),
            TemplateSegment::Project => p.push_str(project),
        }
    }
    if path::check(&p).is_err() {
        return;
    }
    let rules = ProjectRules::new(&[ProjectSource::Path(t.to_vec())]);
    assert_eq!(
        rules.resolve(&p, None, &HeaderMap::new(), &[]),
        Resolution::Project(project.to_string()),
        "{p} through {t:?}"
    );
}
