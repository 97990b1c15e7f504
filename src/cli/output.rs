//! How operator commands print answers: aligned tables and key/value blocks
//! for people, pretty JSON for scripts, and the formatting helpers they share.

use super::views;
use serde_json::Value;
use std::io::{self, Write};

/// `--output`: tables for people, the gateway's JSON answer for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// What kind of answer a command expects, so it can be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Identity,
    /// A freshly created identity, `--quiet`: only its id.
    NewIdentityId,
    Identities,
    TokenAuth,
    /// A freshly created token: the only time its secret is shown.
    NewToken {
        quiet: bool,
    },
    Token,
    Tokens,
    Renewed,
    Membership,
    Memberships,
    /// `{message}` answers.
    Message,
}

/// Prints `answer` as `view` in `format`.
pub fn render(view: View, format: Format, answer: &Value, out: &mut dyn Write) -> io::Result<()> {
    if let View::NewToken { quiet: true } = view {
        // `--quiet` exists for `$(...)` capture: the token and nothing else,
        // whatever the output format.
        return writeln!(out, "{}", clean(&text(answer, &["accessToken"])));
    }
    if view == View::NewIdentityId {
        return writeln!(out, "{}", clean(&text(field(answer, "identity"), &["id"])));
    }
    if format == Format::Json {
        let mut answer = answer.clone();
        if view == View::Renewed {
            // Renewal returns the same secret the caller already holds; it is
            // not repeated on a terminal or in a CI log.
            if let Some(obj) = answer.as_object_mut() {
                obj.remove("accessToken");
            }
        }
        let pretty = serde_json::to_string_pretty(&answer).map_err(io::Error::other)?;
        return writeln!(out, "{pretty}");
    }
    match view {
        View::Identity | View::NewIdentityId => {
            let row = views::identity_row(field(answer, "identity"));
            table(&views::IDENTITY_HEADERS, &[row], out)
        }
        View::Identities => {
            let items = list(answer, "identities");
            let rows: Vec<_> = items.iter().map(views::identity_row).collect();
            table(&views::IDENTITY_HEADERS, &rows, out)?;
            more(answer, rows.len(), out)
        }
        View::TokenAuth => pairs(
            &views::token_auth_pairs(field(answer, "identityTokenAuth")),
            out,
        ),
        View::NewToken { .. } => {
            writeln!(out, "{}", clean(&text(answer, &["accessToken"])))?;
            pairs(&views::new_token_pairs(answer), out)
        }
        View::Token => pairs(&views::token_pairs(field(answer, "token")), out),
        View::Tokens => {
            let rows: Vec<_> = list(answer, "tokens")
                .iter()
                .map(views::token_row)
                .collect();
            table(&views::TOKEN_HEADERS, &rows, out)
        }
        View::Renewed => pairs(&views::renewed_pairs(answer), out),
        View::Membership => {
            let row = views::membership_row(field(answer, "identityMembership"));
            table(&views::MEMBERSHIP_HEADERS, &[row], out)
        }
        View::Memberships => {
            let items = list(answer, "identityMemberships");
            let rows: Vec<_> = items.iter().map(views::membership_row).collect();
            table(&views::MEMBERSHIP_HEADERS, &rows, out)?;
            more(answer, rows.len(), out)
        }
        View::Message => {
            let msg = text(answer, &["message"]);
            writeln!(
                out,
                "{}",
                if msg == "-" {
                    "done".into()
                } else {
                    clean(&msg)
                }
            )
        }
    }
}

/// Columns separated by two spaces, each as wide as its widest cell; no
/// trailing spaces so the output diffs and greps cleanly.
pub fn table(headers: &[&str], rows: &[Vec<String>], out: &mut dyn Write) -> io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// A vertical `key: value` block for single objects with many fields.
pub fn pairs(items: &[(&str, String)], out: &mut dyn Write) -> io::Result<()> {
    let width = items.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    for (k, v) in items {
        writeln!(out, "{:<width$}  {v}", format!("{k}:"))?;
    }
    Ok(())
}

/// Lists are paged; say so when the page is not everything.
fn more(answer: &Value, shown: usize, out: &mut dyn Write) -> io::Result<()> {
    if let Some(total) = answer.get("totalCount").and_then(Value::as_u64) {
        if total > shown as u64 {
            writeln!(
                out,
                "({shown} of {total} shown; use --offset and --limit for more)"
            )?;
        }
    }
    Ok(())
}

/// `answer[key]`, or the answer itself when the gateway did not wrap it.
pub fn field<'a>(answer: &'a Value, key: &str) -> &'a Value {
    answer.get(key).filter(|v| !v.is_null()).unwrap_or(answer)
}

fn list<'a>(answer: &'a Value, key: &str) -> &'a [Value] {
    match answer.get(key).unwrap_or(answer) {
        Value::Array(items) => items,
        _ => &[],
    }
}

/// The first present, non-null value among `keys`: the gateway's own names
/// and Infisical's (`numUses` / `accessTokenNumUses`) are both accepted.
pub fn get<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().filter_map(|k| v.get(*k)).find(|v| !v.is_null())
}

/// A field as display text (`-` when absent), control characters escaped.
pub fn text(v: &Value, keys: &[&str]) -> String {
    match get(v, keys) {
        None => "-".into(),
        Some(Value::String(s)) => clean(s),
        Some(other) => clean(&other.to_string()),
    }
}

pub fn number(v: &Value, keys: &[&str]) -> Option<u64> {
    get(v, keys).and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
}

pub fn flag(v: &Value, keys: &[&str]) -> String {
    match get(v, keys).and_then(Value::as_bool) {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => "-".into(),
    }
}

/// Names and messages come from the gateway, i.e. from whoever created the
/// identity: escape control characters so they cannot drive the terminal.
pub fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Seconds as `30d`, `1h30m`, `45s`; `zero` names what 0 means for the field.
pub fn human_secs(secs: u64, zero: &str) -> String {
    if secs == 0 {
        return zero.to_string();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// A timestamp as milliseconds since the epoch: RFC 3339 text (the contract)
/// or a number of milliseconds (the store's own unit).
pub fn millis(v: Option<&Value>) -> Option<i128> {
    match v? {
        Value::Number(n) => n.as_i64().map(i128::from),
        Value::String(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()?;
            Some(t.unix_timestamp_nanos() / 1_000_000)
        }
        _ => None,
    }
}

/// Milliseconds as RFC 3339 UTC to the second (fractions only clutter a table).
pub fn fmt_millis(ms: i128) -> String {
    let secs = ms.div_euclid(1000);
    let Ok(secs) = i64::try_from(secs) else {
        return ms.to_string();
    };
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return ms.to_string();
    };
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&fmt).unwrap_or_else(|_| ms.to_string())
}

/// A timestamp field for display: normalized when parseable, else as sent.
pub fn when(v: &Value, keys: &[&str], absent: &str) -> String {
    match get(v, keys) {
        None => absent.into(),
        some => match millis(some) {
            Some(ms) => fmt_millis(ms),
            None => text(v, keys),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render_str(view: View, format: Format, answer: &Value) -> String {
        let mut out = Vec::new();
        render(view, format, answer, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["a".to_string(), "long value".into(), "x".into()],
            vec!["bbbb".into(), "v".into(), "".into()],
        ];
        table(&["ID", "NAME", "LAST"], &rows, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, "ID    NAME        LAST\na     long value  x\nbbbb  v\n");
    }

    #[test]
    fn identities_render_as_a_table_with_a_paging_hint() {
        let answer = json!({
            "identities": [
                {"id": "id-1", "name": "ci", "role": "member", "hasDeleteProtection": false,
                 "createdAt": "2025-01-02T03:04:05.678Z"},
                {"identity": {"id": "id-2", "name": "deploy\u{1b}[31m", "hasDeleteProtection": true},
                 "role": "admin", "createdAt": 1735787045000u64}
            ],
            "totalCount": 5
        });
        let s = render_str(View::Identities, Format::Table, &answer);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "ID    NAME              ROLE    DELETE-PROTECTION  CREATED"
        );
        assert_eq!(
            lines[1],
            "id-1  ci                member  no                 2025-01-02T03:04:05Z"
        );
        assert_eq!(
            lines[2],
            "id-2  deploy\\u{1b}[31m  admin   yes                2025-01-02T03:04:05Z"
        );
        assert_eq!(
            lines[3],
            "(2 of 5 shown; use --offset and --limit for more)"
        );
    }

    #[test]
    fn json_output_is_the_raw_answer_pretty_printed() {
        let answer = json!({"identity": {"id": "i", "name": "n"}});
        let s = render_str(View::Identity, Format::Json, &answer);
        assert_eq!(serde_json::from_str::<Value>(&s).unwrap(), answer);
        assert!(s.contains("\n  \"identity\""));
    }

    #[test]
    fn a_new_token_is_on_its_own_line_and_quiet_prints_only_it() {
        let answer = json!({
            "accessToken": "tg_secret", "expiresIn": 3600, "accessTokenMaxTTL": 7200,
            "tokenType": "Bearer", "tokenData": {"id": "tok-1", "name": "ci"}
        });
        let s = render_str(View::NewToken { quiet: false }, Format::Table, &answer);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "tg_secret");
        assert!(
            lines[1].starts_with("id:") && lines[1].ends_with("tok-1"),
            "{s}"
        );
        assert!(s.contains("expires in:") && s.contains("3600 (1h)"), "{s}");
        for format in [Format::Table, Format::Json] {
            let quiet = render_str(View::NewToken { quiet: true }, format, &answer);
            assert_eq!(quiet, "tg_secret\n");
        }
    }

    #[test]
    fn renewal_never_prints_the_token() {
        let answer = json!({"accessToken": "tg_secret", "expiresIn": 60, "accessTokenMaxTTL": 0,
                            "tokenType": "Bearer"});
        for format in [Format::Table, Format::Json] {
            let s = render_str(View::Renewed, format, &answer);
            assert!(!s.contains("tg_secret"), "{s}");
            assert!(s.contains("60"), "{s}");
        }
    }

    #[test]
    fn tokens_show_uses_limits_and_expiry() {
        let answer = json!({"tokens": [
            {"id": "t1", "name": "a", "numUses": 3, "numUsesLimit": 0, "revoked": false,
             "createdAt": "2025-01-01T00:00:00Z", "ttl": 3600, "maxTtl": 0, "period": 0,
             "lastUsedAt": null},
            {"id": "t2", "name": "", "accessTokenNumUses": 1, "accessTokenNumUsesLimit": 5,
             "isAccessTokenRevoked": true, "createdAt": "2025-01-01T00:00:00Z",
             "accessTokenLastRenewedAt": "2025-01-01T12:00:00Z", "accessTokenTTL": 86400,
             "accessTokenMaxTTL": 122400, "accessTokenLastUsedAt": "2025-01-01T13:00:00Z"}
        ]});
        let s = render_str(View::Tokens, Format::Table, &answer);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "ID  NAME  USES  LIMIT      REVOKED  EXPIRES               LAST-USED"
        );
        assert_eq!(
            lines[1],
            "t1  a     3     unlimited  no       2025-01-01T01:00:00Z  never"
        );
        // TTL from renewal (next day 12:00) is capped by MaxTTL (34 h from creation).
        assert_eq!(
            lines[2],
            "t2  -     1     5          yes      2025-01-02T10:00:00Z  2025-01-01T13:00:00Z"
        );
    }

    #[test]
    fn helpers_format_durations_and_times() {
        assert_eq!(human_secs(2_592_000, "none"), "30d");
        assert_eq!(human_secs(5400, "none"), "1h30m");
        assert_eq!(human_secs(0, "none"), "none");
        assert_eq!(fmt_millis(0), "1970-01-01T00:00:00Z");
        assert_eq!(clean("a\nb"), "a\\nb");
    }
}
