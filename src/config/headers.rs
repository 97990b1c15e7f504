//! `headers`: the names of the headers injected into forwarded requests.

use super::file::HeadersFile;
use super::{HeaderNames, Problems};

/// Each name a valid header name, lowercased; no two alike, and none that
/// framing or routing depends on.
pub(super) fn validate(p: &mut Problems, h: &HeadersFile) -> HeaderNames {
    let headers = HeaderNames {
        identity_id: p.header("headers.identity_id", &h.identity_id),
        identity_name: p.header("headers.identity_name", &h.identity_name),
        org_role: p.header("headers.org_role", &h.org_role),
        token_id: p.header("headers.token_id", &h.token_id),
        project_id: p.header("headers.project_id", &h.project_id),
        project_role: p.header("headers.project_role", &h.project_role),
        client_ip: p.header("headers.client_ip", &h.client_ip),
    };
    let names = headers.all();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            p.add("headers", format!("'{n}' is used for two headers"));
        }
        if matches!(
            *n,
            "authorization" | "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            p.add("headers", format!("'{n}' cannot be an injected header"));
        }
    }
    headers
}
