//! Which project a request is about (pure), read so that it fails closed:
//! every place some framework could read a project from is a claim (path
//! templates matched case-insensitively, query parameters, headers, cookies
//! and body fields whose names are lookalikes of a source, a path segment so
//! named followed by a value), and all claims must agree. A request naming
//! two projects is refused, because the gateway would check one and the
//! upstream might act on the other.

use super::names::{decode_lossy, loosely_equal, pair_readings, NameSet};
use crate::config::{ProjectSource, TemplateSegment};
use crate::model::is_valid_project_id;
use crate::routes::ProjectRule;
use http::HeaderMap;
use std::borrow::Cow;

/// The outcome of reading the claims.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution {
    Project(String),
    NoProject,
    /// The claims name different projects.
    Conflict,
}

/// The project a request is checked against, or why it is refused (400):
/// claims that disagree, a value that is not a valid project id, or no
/// project on a route that requires one.
pub fn decide(resolution: Resolution, rule: ProjectRule) -> Result<Option<String>, &'static str> {
    match resolution {
        Resolution::Conflict => Err("request names more than one project"),
        Resolution::Project(p) if !is_valid_project_id(&p) => Err("invalid project id"),
        Resolution::Project(p) => Ok(Some(p)),
        Resolution::NoProject if rule == ProjectRule::Required => {
            Err("this route requires a project (workspaceId or projectId)")
        }
        Resolution::NoProject => Ok(None),
    }
}

/// The configured sources, prepared once.
#[derive(Debug, Clone)]
pub struct ProjectRules {
    templates: Vec<Vec<TemplateSegment>>,
    names: NameSet,
}

impl ProjectRules {
    pub fn new(sources: &[ProjectSource]) -> ProjectRules {
        let templates = sources
            .iter()
            .filter_map(|s| match s {
                ProjectSource::Path(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        let names = NameSet::new(sources.iter().filter_map(|s| match s {
            ProjectSource::Query(n) | ProjectSource::Header(n) | ProjectSource::Body(n) => {
                Some(n.as_str())
            }
            ProjectSource::Path(_) => None,
        }));
        ProjectRules { templates, names }
    }

    /// The names a lookalike is judged against (for body parsing).
    pub fn names(&self) -> &NameSet {
        &self.names
    }

    /// True when a body could carry a project claim.
    pub fn reads_body(&self) -> bool {
        !self.names.is_empty()
    }

    /// Collects every claim of the request head and of `body_claims` (from
    /// `proxy::body`) and returns the one project they name, if any. `path`
    /// and `query` have passed `proxy::path` and `proxy::target` checks.
    pub fn resolve(
        &self,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body_claims: &[String],
    ) -> Resolution {
        let mut claims = Claims::default();
        let segments: Vec<Cow<'_, str>> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| decode_lossy(s, false))
            .collect();
        for t in &self.templates {
            if let Some(p) = from_template(t, &segments) {
                claims.see(p);
            }
        }
        // `/.../workspaceId/p1`: servers that map path pairs to parameters.
        for pair in segments.windows(2) {
            if self.names.matches(&pair[0]) {
                claims.see(&pair[1]);
            }
        }
        if let Some(q) = query.filter(|_| !self.names.is_empty()) {
            for pair in q.split('&') {
                for (name, value) in pair_readings(pair.as_bytes()) {
                    // Both halves are slices of `pair` cut at ASCII bytes.
                    let text = |b| std::str::from_utf8(b).unwrap_or(super::body::UNUSABLE);
                    if self.names.matches(&form_text(text(name))) {
                        claims.see(&form_text(text(value)));
                    }
                }
            }
        }
        if !self.names.is_empty() {
            for (name, value) in headers {
                let text = value.to_str().unwrap_or(super::body::UNUSABLE);
                if name == http::header::COOKIE {
                    // Cookie parsers split pairs on `;` (RFC 6265), some on
                    // `,` too, others on whitespace as well, and trim around
                    // `=`: every reading's values are claims.
                    let pairs = text.split(';');
                    let legacy = text.split([';', ',']);
                    let words = text.split([';', ',', ' ', '\t']);
                    for c in pairs.chain(legacy).chain(words) {
                        let (n, v) = c.split_once('=').unwrap_or((c, ""));
                        if self.names.matches(n.trim()) {
                            claims.see(&form_text(v.trim()));
                        }
                    }
                } else if self.names.matches(name.as_str()) {
                    claims.see(text);
                }
            }
        }
        for c in body_claims {
            claims.see(c);
        }
        claims.finish()
    }
}

#[derive(Default)]
struct Claims {
    found: Option<String>,
    conflict: bool,
}

impl Claims {
    /// Empty values name nothing; any other value must equal the others.
    fn see(&mut self, v: &str) {
        if v.is_empty() {
            return;
        }
        match &self.found {
            None => self.found = Some(v.to_string()),
            Some(f) if f != v => self.conflict = true,
            Some(_) => {}
        }
    }

    fn finish(self) -> Resolution {
        match (self.conflict, self.found) {
            (true, _) => Resolution::Conflict,
            (false, Some(p)) => Resolution::Project(p),
            (false, None) => Resolution::NoProject,
        }
    }
}

/// Percent-decoded text with `+` as a space, as form and query parsers read it.
fn form_text(raw: &str) -> Cow<'_, str> {
    decode_lossy(raw, true)
}

/// The project a template names in these (decoded) segments. Literals are
/// compared folded (case, `-`, `_`, `.` ignored), as lenient routers might.
fn from_template<'s>(
    template: &[TemplateSegment],
    segments: &'s [Cow<'_, str>],
) -> Option<&'s str> {
    if segments.len() < template.len() {
        return None;
    }
    let mut found = None;
    for (t, seg) in template.iter().zip(segments) {
        match t {
            TemplateSegment::Literal(lit) if loosely_equal(lit, seg) => {}
            TemplateSegment::Literal(_) => return None,
            TemplateSegment::Any => {}
            TemplateSegment::Project => found = Some(seg.as_ref()),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use TemplateSegment::{Any, Literal, Project};

    fn rules() -> ProjectRules {
        ProjectRules::new(&[
            ProjectSource::Path(vec![
                Literal("api".into()),
                Any,
                Literal("projects".into()),
                Project,
            ]),
            ProjectSource::Query("workspaceId".into()),
            ProjectSource::Query("projectId".into()),
            ProjectSource::Header("x-project-id".into()),
            ProjectSource::Body("workspaceId".into()),
        ])
    }

    fn run(path: &str, query: Option<&str>, h: &HeaderMap, body: &[&str]) -> Resolution {
        let body: Vec<String> = body.iter().map(|s| s.to_string()).collect();
        rules().resolve(path, query, h, &body)
    }

    fn p(s: &str) -> Resolution {
        Resolution::Project(s.into())
    }

    #[test]
    fn each_source_alone() {
        let h = HeaderMap::new();
        assert_eq!(run("/api/v1/projects/p1/secrets", None, &h, &[]), p("p1"));
        assert_eq!(run("/API/V9/Pro-Jects/p1", None, &h, &[]), p("p1"));
        assert_eq!(run("/x", Some("a=1&workspaceId=p%202"), &h, &[]), p("p 2"));
        let mut hp = HeaderMap::new();
        hp.insert("x-project-id", "p3".parse().unwrap());
        assert_eq!(run("/x", None, &hp, &[]), p("p3"));
        assert_eq!(run("/x", None, &h, &["p4"]), p("p4"));
        assert_eq!(run("/x", None, &h, &[]), Resolution::NoProject);
        assert_eq!(
            run("/api/v1/projects", None, &h, &[]),
            Resolution::NoProject
        );
    }

    #[test]
    fn lookalikes_are_claims() {
        let h = HeaderMap::new();
        for q in [
            "WorkspaceId=p2",
            "workspace_id=p2",
            "workspaceId[]=p2",
            "workspaceId[0]=p2",
            "workspaceId.=p2",
            "workspaceId%00=p2",
            "project-id=p2",
            "x_project_id=p2",
            "filter=x[workspaceId]=p2",
        ] {
            assert_eq!(run("/x", Some(q), &h, &[]), p("p2"), "{q}");
        }
        let mut hu = HeaderMap::new();
        hu.insert("x_project_id", "p5".parse().unwrap());
        hu.insert("workspaceid", "p5".parse().unwrap());
        assert_eq!(run("/x", None, &hu, &[]), p("p5"));
        let mut hc = HeaderMap::new();
        hc.insert("cookie", "workspaceId=p6,p7".parse().unwrap());
        assert_eq!(run("/x", None, &hc, &[]), Resolution::Conflict);
        let mut hc = HeaderMap::new();
        hc.insert("cookie", "a=b; workspaceId=p6".parse().unwrap());
        assert_eq!(run("/x", None, &hc, &[]), p("p6"));
        for cookie in [
            "a=b, workspaceId=p6",
            "a=b workspaceId=p6",
            "workspaceId= p6",
            "workspaceId =p6",
            "a=1; workspaceId\t=\tp6",
        ] {
            let mut hc = HeaderMap::new();
            hc.insert("cookie", cookie.parse().unwrap());
            assert_eq!(run("/x", None, &hc, &[]), p("p6"), "{cookie}");
        }
        assert_eq!(run("/x/workspaceId/p7", None, &h, &[]), p("p7"));
    }

    #[test]
    fn claims_that_disagree_conflict() {
        let h = HeaderMap::new();
        assert_eq!(
            run("/x", Some("workspaceId=p1&workspaceId=p2"), &h, &[]),
            Resolution::Conflict
        );
        assert_eq!(
            run("/x", Some("workspaceId=p1&WORKSPACEID=p2"), &h, &[]),
            Resolution::Conflict
        );
        assert_eq!(
            run("/api/v1/projects/p1/x", None, &h, &["p2"]),
            Resolution::Conflict
        );
        assert_eq!(run("/x", None, &h, &["p1", "p2"]), Resolution::Conflict);
        let mut hp = HeaderMap::new();
        hp.append("x-project-id", "p1".parse().unwrap());
        hp.append("X_Project_Id", "p2".parse().unwrap());
        assert_eq!(run("/x", None, &hp, &[]), Resolution::Conflict);
    }

    #[test]
    fn claims_that_agree_are_one_project() {
        let h = HeaderMap::new();
        assert_eq!(
            run(
                "/api/v1/projects/p1/x",
                Some("workspaceId=p1&projectId=p1&workspaceId="),
                &h,
                &["p1", ""]
            ),
            p("p1")
        );
    }

    #[test]
    fn decisions() {
        use ProjectRule::{Optional, Required};
        assert_eq!(decide(p("p1"), Required), Ok(Some("p1".into())));
        assert_eq!(decide(Resolution::NoProject, Optional), Ok(None));
        assert!(decide(Resolution::NoProject, Required).is_err());
        assert!(decide(Resolution::Conflict, Optional).is_err());
        assert!(decide(p("p 1"), Optional).is_err());
        assert!(decide(p(super::super::body::UNUSABLE), Optional).is_err());
    }

    #[test]
    fn templates() {
        let t = vec![Literal("api".into()), Project, Literal("x".into())];
        let segs = |s: &[&'static str]| s.iter().map(|x| Cow::Borrowed(*x)).collect::<Vec<_>>();
        assert_eq!(
            from_template(&t, &segs(&["api", "p", "x", "more"])),
            Some("p")
        );
        assert_eq!(from_template(&t, &segs(&["API", "p", "X"])), Some("p"));
        assert_eq!(from_template(&t, &segs(&["api", "p", "y"])), None);
        assert_eq!(from_template(&t, &segs(&["api", "p"])), None);
    }
}
