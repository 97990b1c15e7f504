//! `forward_auth`: the endpoint other gateways ask whether a request may
//! pass, and the one way they describe the original request.

use super::file::ForwardAuthFile;
use super::{Describe, ForwardAuth, Problems};

/// The forward-auth endpoint: a path of its own, which every server reads
/// alike, away from the management API (whose requests it would shadow).
pub(super) fn validate_forward_auth(p: &mut Problems, f: &ForwardAuthFile) -> Option<ForwardAuth> {
    let describe = match f.describe.as_deref() {
        Some("path") => Describe::Path,
        Some("headers") => Describe::Headers,
        Some(other) => {
            p.add(
                "forward_auth.describe",
                format!("'{other}' is not path or headers"),
            );
            return None;
        }
        None => {
            p.add(
                "forward_auth.describe",
                "is required: path (nginx, Envoy: the original path after the endpoint) or headers (Traefik, Caddy: X-Forwarded-Method/-Uri/-Host)",
            );
            return None;
        }
    };
    let path = f.path.as_str();
    let key = "forward_auth.path";
    if !path.starts_with('/') || path.len() < 2 || path.ends_with('/') {
        p.add(
            key,
            "must be a path such as /_tokengate/auth (not / and no trailing /)",
        );
        return None;
    }
    if path.contains(['*', '?', '#', '{', '}']) {
        p.add(key, "must be a plain path: no *, ?, # or braces");
        return None;
    }
    if let Err(why) = crate::proxy::path::check(path) {
        p.add(key, why);
        return None;
    }
    if crate::api::Api::is_management_path(path) || path.starts_with("/api/") {
        p.add(
            key,
            "must not be under /api/, where the management API and the upstream's API live",
        );
        return None;
    }
    Some(ForwardAuth {
        path: path.to_string(),
        describe,
    })
}
