//! Header hygiene: remove every spelling of the injected headers (any case,
//! `_` for `-`), every header name with `_`, and Authorization, then inject
//! the resolved identity.

use crate::auth::Grant;
use crate::config::HeaderNames;
use crate::token::Id;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use std::net::IpAddr;

/// True when `name` (lowercase, as the http crate keeps it) is a spelling of an injected header.
fn is_injected(name: &str, names: &HeaderNames) -> bool {
    names.all().iter().any(|n| {
        n.len() == name.len()
            && n.bytes()
                .zip(name.bytes())
                .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
    })
}

/// Removes client-supplied copies of the injected headers, every header
/// whose name holds `_`, and Authorization unless it is to be forwarded.
/// CGI-style servers (gunicorn, PHP) read `X_Forwarded_For` as
/// `X-Forwarded-For` and `SCRIPT_NAME` as their own variable, so such names
/// are dropped, as nginx does by default.
pub fn strip(req: &mut RequestHeader, names: &HeaderNames, forward_authorization: bool) {
    let doomed: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|k| k.as_str().contains('_') || is_injected(k.as_str(), names))
        .cloned()
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
    if !forward_authorization {
        req.remove_header(&http::header::AUTHORIZATION);
    }
}

/// A header value for text the gateway did not choose (identity names):
/// control characters cannot travel in a header, so they become '?'.
fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| {
        let clean: String = s
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        HeaderValue::from_str(&clean).unwrap_or(HeaderValue::from_static("?"))
    })
}

/// The injected header names, prepared once: cloning `Bytes` shares the
/// buffer, so each request pays nothing for them.
#[derive(Debug, Clone)]
pub struct Injected {
    identity_id: Bytes,
    identity_name: Bytes,
    org_role: Bytes,
    token_id: Bytes,
    project_id: Bytes,
    project_role: Bytes,
    client_ip: Bytes,
}

impl Injected {
    pub fn new(names: &HeaderNames) -> Injected {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        Injected {
            identity_id: b(&names.identity_id),
            identity_name: b(&names.identity_name),
            org_role: b(&names.org_role),
            token_id: b(&names.token_id),
            project_id: b(&names.project_id),
            project_role: b(&names.project_role),
            client_ip: b(&names.client_ip),
        }
    }
}

/// An id as a header value, formatted on the stack.
impl Injected {
    /// Every name, for answers that must name each one (forward-auth mode:
    /// an empty value makes the calling gateway replace a client's copy).
    pub fn all(&self) -> [&Bytes; 7] {
        [
            &self.identity_id,
            &self.identity_name,
            &self.org_role,
            &self.token_id,
            &self.project_id,
            &self.project_role,
            &self.client_ip,
        ]
    }
}

fn id_value(id: Id) -> HeaderValue {
    let mut buf = [0u8; 36];
    let text = uuid::Uuid::from_bytes(id.0)
        .hyphenated()
        .encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("?"))
}

/// The caller of an authenticated request, as the upstream is told.
pub struct Caller<'a> {
    pub identity_id: Id,
    pub token_id: Id,
    pub grant: &'a Grant,
    pub project: Option<&'a str>,
    pub client_ip: IpAddr,
}

/// Hands each header of an authenticated request's identity (and project) to
/// `put`: onto the request sent upstream, or onto the answer to an auth
/// subrequest (forward-auth mode).
pub fn inject(
    names: &Injected,
    c: &Caller<'_>,
    mut put: impl FnMut(Bytes, HeaderValue) -> pingora::Result<()>,
) -> pingora::Result<()> {
    let (identity_id, token_id, grant, project) = (c.identity_id, c.token_id, c.grant, c.project);
    put(names.identity_id.clone(), id_value(identity_id))?;
    put(names.identity_name.clone(), value(&grant.identity_name))?;
    put(names.org_role.clone(), value(&grant.org_role))?;
    put(names.token_id.clone(), id_value(token_id))?;
    if let (Some(p), Some(roles)) = (project, &grant.project_roles) {
        put(names.project_id.clone(), value(p))?;
        put(names.project_role.clone(), value(roles))?;
    }
    put(names.client_ip.clone(), value(&c.client_ip.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> HeaderNames {
        crate::config::parse("server: {listen: ['127.0.0.1:1']}\nupstream: {url: 'http://a'}\n")
            .unwrap()
            .headers
    }

    #[test]
    fn strips_every_spelling_and_authorization() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-Tokengate-Identity-Id", "evil")
            .unwrap();
        req.append_header("x_tokengate_identity_id", "evil")
            .unwrap();
        req.append_header("X-TOKENGATE-ORG-ROLE", "admin").unwrap();
        req.append_header("x-tokengate-org-role", "admin").unwrap();
        req.append_header("X_Tokengate_Project_Role", "admin")
            .unwrap();
        req.append_header("authorization", "Bearer x").unwrap();
        req.append_header("x-other", "kept").unwrap();
        req.append_header("X_Forwarded_For", "6.6.6.6").unwrap();
        req.append_header("x_custom", "dropped").unwrap();
        strip(&mut req, &names(), false);
        let left: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-other"]);
    }

    #[test]
    fn keeps_authorization_when_configured() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("authorization", "Bearer x").unwrap();
        strip(&mut req, &names(), true);
        assert!(req.headers.contains_key("authorization"));
    }

    #[test]
    fn injects_identity_and_project() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let grant = Grant {
            identity_name: "ci\nbot".into(),
            org_role: "member".into(),
            project_roles: Some("viewer".into()),
        };
        let (iid, tid) = (Id::random(), Id::random());
        let caller = Caller {
            identity_id: iid,
            token_id: tid,
            grant: &grant,
            project: Some("p1"),
            client_ip: "10.1.2.3".parse().unwrap(),
        };
        inject(&Injected::new(&names()), &caller, |n, v| {
            req.insert_header(n, v)
        })
        .unwrap();
        let h = &req.headers;
        assert_eq!(h["x-tokengate-identity-id"], iid.to_string().as_str());
        assert_eq!(h["x-tokengate-token-id"], tid.to_string().as_str());
        assert_eq!(h["x-tokengate-identity-name"], "ci?bot");
        assert_eq!(h["x-tokengate-project-role"], "viewer");
        assert_eq!(h["x-tokengate-project-id"], "p1");
        assert_eq!(h["x-tokengate-client-ip"], "10.1.2.3");
    }
}
