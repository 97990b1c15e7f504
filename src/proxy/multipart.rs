//! Project claims in a multipart/form-data body (pure), read strictly: the
//! body starts with the first boundary, parts are CRLF-delimited, each has
//! one Content-Disposition with one plain `name`, no transfer encoding, and
//! the body ends with the closing boundary. Multipart parsers disagree on
//! everything else (preambles, bare LF, `name*=`, base64 parts), so anything
//! else is unreadable rather than guessed at.

use super::body::{json, starts_like_json, MediaType, Unreadable, UNUSABLE};
use super::names::NameSet;

/// Adds the claims of every part: a part named like a project source is a
/// claim, and a part that is JSON (by its type or its look) must parse and
/// is searched too, as frameworks that bind JSON parts would read it.
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
        let (name, json_type) = part_head(&rest[..head_end])?;
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
        if json_type || starts_like_json(content) {
            json(content, names, out)?;
        }
        rest = &rest[content_start + content_len + next_delimiter.len()..];
    }
}

/// The `name` of a part, and whether its Content-Type is JSON, from its header block.
fn part_head(head: &[u8]) -> Result<(String, bool), Unreadable> {
    const BAD: Unreadable = "multipart part headers cannot be parsed";
    let head = std::str::from_utf8(head).map_err(|_| BAD)?;
    let mut name = None;
    let mut content_type: Option<MediaType> = None;
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
            let n = disposition(value)?.param("name").ok_or(BAD)?.to_string();
            // RFC 2047 encoded words, which some Java parsers decode.
            if n.starts_with("=?") {
                return Err("multipart part name is an encoded word");
            }
            name = Some(n);
        } else if field.eq_ignore_ascii_case("content-type") {
            if content_type.is_some() {
                return Err(BAD);
            }
            content_type = Some(MediaType::parse(value.trim().as_bytes()).map_err(|_| BAD)?);
        }
    }
    let json_type = content_type.is_some_and(|t| t.essence.contains("json"));
    Ok((name.ok_or(BAD)?, json_type))
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
