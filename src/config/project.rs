//! `project`: where a request names its project (path templates, query,
//! header, body) and how much of a body is read to find it.

use super::file::ProjectFile;
use super::{Problems, ProjectSource, TemplateSegment};

/// The project sources, and `max_body_bytes`.
pub(super) fn validate(p: &mut Problems, f: &ProjectFile) -> (Vec<ProjectSource>, usize) {
    let mut project_sources = Vec::new();
    for (i, s) in f.sources.iter().enumerate() {
        let key = format!("project.sources[{i}]");
        let set = [&s.path, &s.query, &s.header, &s.body]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if set != 1 {
            p.add(&key, "set exactly one of path, query, header, body");
            continue;
        }
        if let Some(t) = &s.path {
            match parse_path_template(t) {
                Ok(segs) => project_sources.push(ProjectSource::Path(segs)),
                Err(e) => p.add(&format!("{key}.path"), e),
            }
        } else if let Some(q) = &s.query {
            if q.is_empty() {
                p.add(&format!("{key}.query"), "must not be empty");
            }
            project_sources.push(ProjectSource::Query(q.clone()));
        } else if let Some(h) = &s.header {
            let h = p.header(&format!("{key}.header"), h);
            project_sources.push(ProjectSource::Header(h));
        } else if let Some(b) = &s.body {
            if b.is_empty() {
                p.add(&format!("{key}.body"), "must not be empty");
            }
            project_sources.push(ProjectSource::Body(b.clone()));
        }
    }
    let max_body_bytes = p.range("project.max_body_bytes", f.max_body_bytes, 1, 65536) as usize;
    (project_sources, max_body_bytes)
}

/// Splits "/api/*/projects/{projectId}/x" into segments with one placeholder.
fn parse_path_template(t: &str) -> Result<Vec<TemplateSegment>, String> {
    if !t.starts_with('/') {
        return Err(format!("'{t}' must start with '/'"));
    }
    let segs: Vec<TemplateSegment> = t
        .trim_matches('/')
        .split('/')
        .map(|s| match s {
            "{projectId}" => TemplateSegment::Project,
            "*" => TemplateSegment::Any,
            s => TemplateSegment::Literal(s.to_string()),
        })
        .collect();
    if segs
        .iter()
        .any(|s| matches!(s, TemplateSegment::Literal(l) if l.is_empty()))
    {
        return Err(format!("'{t}' has an empty segment"));
    }
    match segs
        .iter()
        .filter(|s| **s == TemplateSegment::Project)
        .count()
    {
        1 => Ok(segs),
        _ => Err(format!("'{t}' must contain {{projectId}} exactly once")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_templates() {
        assert_eq!(
            parse_path_template("/api/v1/projects/{projectId}").unwrap(),
            vec![
                TemplateSegment::Literal("api".into()),
                TemplateSegment::Literal("v1".into()),
                TemplateSegment::Literal("projects".into()),
                TemplateSegment::Project
            ]
        );
        assert_eq!(
            parse_path_template("/api/*/x/{projectId}").unwrap()[1],
            TemplateSegment::Any
        );
        assert!(parse_path_template("/api/{projectId}/{projectId}").is_err());
        assert!(parse_path_template("/api").is_err());
    }
}
