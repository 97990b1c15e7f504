//! Project claims in a multipart/form-data body (pure), read strictly: the
//! body starts with the first boundary, parts are CRLF-delimited, each has
//! one Content-Disposition with one plain `name`, no transfer encoding, and
//! the body ends with the closing boundary. Multipart parsers disagree on
//! everything else (preambles, bare LF, `name*=`, base64 parts), so anything
//! else is unreadable rather than guessed at.

use super::body::{json, starts_like_json, MediaType, Unreadable, UNUSABLE};
use super::names::NameSet;

/// Adds the claims of every part: a part named like a project source is a
/// claim, and a part whose content is JSON is searched too.
pub fn claims(
    body: &[u8],
    boundary: &str,
    names: &NameSet,
    out: &mut Vec<String>,
) -> Result<(), Unreadable> {
    const BAD: Unreadable = "multipart body cannot be parsed";
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(BAD);
    }
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let mut rest = body.strip_prefix(delimiter.as_bytes()).ok_or(BAD)?;
    loop {
        if let Some(after) = rest.strip_prefix(b"--") {
            // The closing boundary: nothing but a line end may follow.
            return match after {
                b"" | b"\r\n" => Ok(()),
                _ => Err(BAD),
            };
        }
        rest = rest.strip_prefix(b"\r\n").ok_or(BAD)?;
        let head_end = find(rest, b"\r\n\r\n").ok_or(BAD)?;
        let name = part_name(&rest[..head_end])?;
        let content_start = head_end + 4;
        let content_len = find(&rest[content_start..], next_delimiter.as_bytes()).ok_or(BAD)?;
        let content = &rest[content_start..content_start + content_len];
        if names.matches(&name) {
            out.push(
                std::str::from_utf8(content)
                    .map(str::to_string)
                    .unwrap_or_else(|_| UNUSABLE.to_string()),
            );
        }
        if starts_like_json(content) {
            // A file that merely starts like JSON is not refused for it.
            let _ = json(content, names, out);
        }
        rest = &rest[content_start + content_len + next_delimiter.len()..];
    }
}

/// The `name` of a part, from its header block.
fn part_name(head: &[u8]) -> Result<String, Unreadable> {
    const BAD: Unreadable = "multipart part headers cannot be parsed";
    let head = std::str::from_utf8(head).map_err(|_| BAD)?;
    let mut name = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            return Err(BAD); // folded header lines are read differently by different parsers
        }
        let (field, value) = line.split_once(':').ok_or(BAD)?;
        let field = field.trim();
        if field.eq_ignore_ascii_case("content-transfer-encoding") {
            let v = value.trim();
            if !["7bit", "8bit", "binary"]
                .iter()
                .any(|ok| v.eq_ignore_ascii_case(ok))
            {
                return Err("multipart part uses a Content-Transfer-Encoding");
            }
        } else if field.eq_ignore_ascii_case("content-disposition") {
            if name.is_some() {
                return Err(BAD);
            }
            let disposition = disposition(value)?;
            if disposition.params.iter().any(|(n, _)| n.ends_with('*')) {
                return Err("multipart part uses an encoded (name*) parameter");
            }
            name = Some(disposition.param("name").ok_or(BAD)?.to_string());
        }
    }
    name.ok_or(BAD)
}

/// A Content-Disposition value (`form-data; name="x"`), parsed with the
/// same strict parameter rules as a Content-Type.
fn disposition(value: &str) -> Result<MediaType, Unreadable> {
    let (kind, params) = value.split_once(';').unwrap_or((value, ""));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return Err("multipart part is not form-data");
    }
    // A stand-in type so the media-type parser reads the parameters.
    MediaType::parse(format!("form/data;{params}").as_bytes())
        .map_err(|_| "multipart part headers cannot be parsed")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
