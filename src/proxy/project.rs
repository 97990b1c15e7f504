//! Which project a request is about: from a path template, a query parameter,
//! a header, or a top-level JSON body field, in the configured order (pure).

use crate::config::ProjectSource;
use http::HeaderMap;
use std::borrow::Cow;

/// The outcome of trying the sources.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution<'a> {
    Project(Cow<'a, str>),
    /// A body source is next and the body has not been read yet.
    NeedsBody,
    NoProject,
}

/// Tries each source in order; the first that yields a value wins. Body
/// sources are skipped with `NeedsBody` until `body` is given.
pub fn resolve<'a>(
    sources: &[ProjectSource],
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: Option<&[u8]>,
) -> Resolution<'a> {
    for source in sources {
        let found: Option<Cow<'a, str>> = match source {
            ProjectSource::Path(template) => from_path(template, path).map(Cow::Borrowed),
            ProjectSource::Query(name) => query.and_then(|q| from_query(q, name)),
            ProjectSource::Header(name) => headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(Cow::Borrowed),
            ProjectSource::Body(field) => match body {
                None => return Resolution::NeedsBody,
                Some(b) => from_body(b, field).map(Cow::Owned),
            },
        };
        if let Some(p) = found {
            return Resolution::Project(p);
        }
    }
    Resolution::NoProject
}

/// True when `id` is a plausible project id (what the management API accepts).
pub fn is_valid_project_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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

fn from_query<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

fn from_body(body: &[u8], field: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Any(serde_json::Map<String, serde_json::Value>);
    let Any(map) = serde_json::from_slice(body).ok()?;
    match map.get(field)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
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
            ProjectSource::Header("x-project-id".into()),
            ProjectSource::Body("workspaceId".into()),
        ]
    }

    #[test]
    fn path_query_header() {
        let h = HeaderMap::new();
        assert_eq!(
            resolve(&sources(), "/api/v1/projects/p1/secrets", None, &h, None),
            Resolution::Project("p1".into())
        );
        assert_eq!(
            resolve(
                &sources(),
                "/api/v3/secrets/raw",
                Some("a=1&workspaceId=p%202"),
                &h,
                None
            ),
            Resolution::Project("p 2".into())
        );
        let mut h = HeaderMap::new();
        h.insert("x-project-id", "p3".parse().unwrap());
        assert_eq!(
            resolve(&sources(), "/x", None, &h, None),
            Resolution::Project("p3".into())
        );
    }

    #[test]
    fn body_is_asked_for_then_read() {
        let h = HeaderMap::new();
        assert_eq!(
            resolve(&sources(), "/x", None, &h, None),
            Resolution::NeedsBody
        );
        let body = br#"{"workspaceId": "p4", "secretValue": "s"}"#;
        assert_eq!(
            resolve(&sources(), "/x", None, &h, Some(body)),
            Resolution::Project("p4".into())
        );
        assert_eq!(
            resolve(&sources(), "/x", None, &h, Some(b"not json")),
            Resolution::NoProject
        );
        assert_eq!(
            resolve(&sources(), "/x", None, &h, Some(br#"{"workspaceId": 5}"#)),
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

    #[test]
    fn project_id_validation() {
        assert!(is_valid_project_id("proj-1.a_b"));
        assert!(!is_valid_project_id(""));
        assert!(!is_valid_project_id("a/b"));
        assert!(!is_valid_project_id(&"a".repeat(129)));
    }
}
