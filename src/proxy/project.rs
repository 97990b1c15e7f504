//! Which project a request is about: from path templates, query parameters,
//! headers and top-level JSON body fields (pure). Every source is read and
//! they must agree: a request that names two projects (a query parameter
//! given twice, a body that says another project than the path) is refused,
//! because the gateway would check one and the upstream might act on the other.

use crate::config::ProjectSource;
use http::HeaderMap;
use std::borrow::Cow;

/// The outcome of reading the sources.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution<'a> {
    Project(Cow<'a, str>),
    NoProject,
    /// The sources name different projects.
    Conflict,
}

/// What the request body holds, as far as project resolution is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// No body, or one that is not JSON: body sources yield nothing.
    None,
    /// The body as read; it must be valid JSON.
    Json(&'a [u8]),
}

/// A body that claims to be JSON but is not: refused, since the upstream's
/// parser might read a project out of it that the gateway could not.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidJson;

/// True when any source reads the body.
pub fn wants_body(sources: &[ProjectSource]) -> bool {
    sources.iter().any(|s| matches!(s, ProjectSource::Body(_)))
}

/// Reads every source and returns the one project they name, if any.
pub fn resolve<'a>(
    sources: &[ProjectSource],
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: Body<'_>,
) -> Result<Resolution<'a>, InvalidJson> {
    let json = match body {
        Body::Json(b) => Some(parse_object(b)?),
        Body::None => None,
    };
    let mut found: Option<Cow<'a, str>> = None;
    let mut conflict = false;
    let mut see = |v: Cow<'a, str>| {
        if v.is_empty() {
            return;
        }
        match &found {
            None => found = Some(v),
            Some(f) if *f != v => conflict = true,
            Some(_) => {}
        }
    };
    for source in sources {
        match source {
            ProjectSource::Path(template) => {
                if let Some(p) = from_path(template, path) {
                    see(Cow::Borrowed(p));
                }
            }
            // All query sources are read in the one pass below.
            ProjectSource::Query(_) => {}
            ProjectSource::Header(name) => {
                for v in headers.get_all(name.as_str()) {
                    // A value that is not text cannot be compared: it names "some" project.
                    see(v
                        .to_str()
                        .map(Cow::Borrowed)
                        .unwrap_or(Cow::Borrowed("\u{fffd}")));
                }
            }
            ProjectSource::Body(field) => {
                if let Some(v) = json.as_ref().and_then(|m| m.get(field)) {
                    match v {
                        serde_json::Value::String(s) => see(Cow::Owned(s.clone())),
                        serde_json::Value::Null => {}
                        // A number or object where a project id belongs: unusable, and not "none".
                        other => see(Cow::Owned(other.to_string())),
                    }
                }
            }
        }
    }
    // The query string is parsed once; values borrow from it unless decoded.
    if let Some(q) = query.filter(|_| sources.iter().any(|s| matches!(s, ProjectSource::Query(_))))
    {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            if sources
                .iter()
                .any(|s| matches!(s, ProjectSource::Query(n) if *n == k))
            {
                see(v);
            }
        }
    }
    Ok(match (conflict, found) {
        (true, _) => Resolution::Conflict,
        (false, Some(p)) => Resolution::Project(p),
        (false, None) => Resolution::NoProject,
    })
}

/// A JSON body's top-level object (an empty map for other valid JSON).
fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, InvalidJson> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Ok(serde_json::Map::new()),
        Err(_) => Err(InvalidJson),
    }
}

fn from_path<'a>(template: &[Option<String>], path: &'a str) -> Option<&'a str> {
    let mut segs = path.trim_start_matches('/').split('/');
    let mut found = None;
    for t in template {
        let seg = segs.next()?;
        match t {
            Some(lit) if lit == seg => {}
            Some(_) => return None,
            None if !seg.is_empty() => found = Some(seg),
            None => return None,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> Vec<ProjectSource> {
        vec![
            ProjectSource::Path(vec![
                Some("api".into()),
                Some("v1".into()),
                Some("projects".into()),
                None,
            ]),
            ProjectSource::Query("workspaceId".into()),
            ProjectSource::Query("projectId".into()),
            ProjectSource::Header("x-project-id".into()),
            ProjectSource::Body("workspaceId".into()),
            ProjectSource::Body("projectId".into()),
        ]
    }

    fn run<'a>(
        path: &'a str,
        query: Option<&'a str>,
        h: &'a HeaderMap,
        body: Body<'_>,
    ) -> Resolution<'a> {
        resolve(&sources(), path, query, h, body).unwrap()
    }

    #[test]
    fn each_source_alone() {
        let h = HeaderMap::new();
        assert_eq!(
            run("/api/v1/projects/p1/secrets", None, &h, Body::None),
            Resolution::Project("p1".into())
        );
        assert_eq!(
            run(
                "/api/v3/secrets/raw",
                Some("a=1&workspaceId=p%202"),
                &h,
                Body::None
            ),
            Resolution::Project("p 2".into())
        );
        let mut hp = HeaderMap::new();
        hp.insert("x-project-id", "p3".parse().unwrap());
        assert_eq!(
            run("/x", None, &hp, Body::None),
            Resolution::Project("p3".into())
        );
        let body = br#"{"workspaceId": "p4", "secretValue": "s"}"#;
        assert_eq!(
            run("/x", None, &h, Body::Json(body)),
            Resolution::Project("p4".into())
        );
        assert_eq!(run("/x", None, &h, Body::None), Resolution::NoProject);
    }

    #[test]
    fn sources_that_agree_are_one_project() {
        let h = HeaderMap::new();
        let body = br#"{"workspaceId": "p1", "projectId": "p1"}"#;
        assert_eq!(
            run(
                "/api/v1/projects/p1/x",
                Some("workspaceId=p1&workspaceId=p1"),
                &h,
                Body::Json(body)
            ),
            Resolution::Project("p1".into())
        );
    }

    #[test]
    fn sources_that_disagree_conflict() {
        let h = HeaderMap::new();
        assert_eq!(
            run("/x", Some("workspaceId=p1&workspaceId=p2"), &h, Body::None),
            Resolution::Conflict
        );
        assert_eq!(
            run("/x", Some("workspaceId=p1&projectId=p2"), &h, Body::None),
            Resolution::Conflict
        );
        assert_eq!(
            run(
                "/x",
                Some("workspaceId=p1"),
                &h,
                Body::Json(br#"{"workspaceId": "p2"}"#)
            ),
            Resolution::Conflict
        );
        assert_eq!(
            run(
                "/x",
                None,
                &h,
                Body::Json(br#"{"workspaceId": "p1", "projectId": "p2"}"#)
            ),
            Resolution::Conflict
        );
        let mut hp = HeaderMap::new();
        hp.append("x-project-id", "p1".parse().unwrap());
        hp.append("x-project-id", "p2".parse().unwrap());
        assert_eq!(run("/x", None, &hp, Body::None), Resolution::Conflict);
        // A non-string project field is not silently ignored.
        assert_eq!(
            run(
                "/x",
                Some("workspaceId=p1"),
                &h,
                Body::Json(br#"{"workspaceId": 5}"#)
            ),
            Resolution::Conflict
        );
    }

    #[test]
    fn bodies_that_are_not_json_are_refused() {
        let h = HeaderMap::new();
        for bad in [
            &b"not json"[..],
            b"\xEF\xBB\xBF{\"workspaceId\": \"p\"}",
            br#"{"workspaceId": "p"} x"#,
        ] {
            assert_eq!(
                resolve(&sources(), "/x", None, &h, Body::Json(bad)),
                Err(InvalidJson)
            );
        }
        assert_eq!(
            run("/x", None, &h, Body::Json(b"[1, 2]")),
            Resolution::NoProject
        );
    }

    #[test]
    fn path_template_must_match_every_literal() {
        let t = vec![Some("api".into()), None, Some("x".into())];
        assert_eq!(from_path(&t, "/api/p/x/more"), Some("p"));
        assert_eq!(from_path(&t, "/api/p/y"), None);
        assert_eq!(from_path(&t, "/api//x"), None);
        assert_eq!(from_path(&t, "/api/p"), None);
    }
}
