//! Fuzz target `redact`: log and error text with an admin key and an access
//! token hidden somewhere in it, through `redact::Redactor::redact` and
//! `redact::tokens`.
#![no_main]

// Each target uses part of the shared input helpers.
#[allow(dead_code)]
mod common;

use libfuzzer_sys::fuzz_target;
use tokengate::redact::{self, Redactor};
use tokengate::token::{AccessToken, Id, PREFIX};

struct Input<'a> {
    before: &'a str,
    between: &'a str,
    after: &'a str,
    /// The admin key: kept to printable ASCII without brackets below.
    key: &'a [u8],
    /// How the key is written into the text.
    spelling: Spelling,
    /// Per character: percent-encode it (bit set) or not.
    encode: u64,
    upper_hex: bool,
    /// The token's identity id, token id and secret.
    token: ([u8; 16], [u8; 16], [u8; 32]),
    /// Per prefix character: upper case, percent-encoded.
    prefix_case: u8,
    prefix_encode: u8,
    /// Whether the key comes before the token in the text.
    key_first: bool,
}

/// The escaped forms the redactor promises to recognise.
#[derive(Debug, Clone, Copy)]
enum Spelling {
    Raw,
    /// Inside a JSON string (the audit log, JSON log lines).
    Json,
    /// `Debug` of a string (quotes and backslashes escaped).
    Debug,
    /// `escape_ascii` of its bytes.
    Ascii,
    /// A JSON string holding the `Debug` form.
    JsonOfDebug,
}

// Fields: spelling (0-4), percent-encoding mask, upper-case hex (0/1),
// prefix case mask, prefix encoding mask, key first (0/1), key, token bytes
// (64, zero-padded), text before, between, after (the rest).
fn read(data: &[u8]) -> Input<'_> {
    let mut f = common::Fields::new(data);
    let spelling = match f.number() % 5 {
        0 => Spelling::Raw,
        1 => Spelling::Json,
        2 => Spelling::Debug,
        3 => Spelling::Ascii,
        _ => Spelling::JsonOfDebug,
    };
    let encode = f.number();
    let upper_hex = f.number() % 2 == 1;
    let prefix_case = f.number() as u8;
    let prefix_encode = f.number() as u8;
    let key_first = f.number() % 2 == 1;
    let key = f.bytes();
    let mut raw = [0u8; 64];
    for (r, b) in raw.iter_mut().zip(f.bytes()) {
        *r = *b;
    }
    let mut token = ([0u8; 16], [0u8; 16], [0u8; 32]);
    token.0.copy_from_slice(&raw[..16]);
    token.1.copy_from_slice(&raw[16..32]);
    token.2.copy_from_slice(&raw[32..]);
    let before = f.text();
    let between = f.text();
    let after = f.rest_text();
    Input {
        before,
        between,
        after,
        key,
        spelling,
        encode,
        upper_hex,
        token,
        prefix_case,
        prefix_encode,
        key_first,
    }
}

fuzz_target!(|data: &[u8]| {
    let input = read(data);
    // An admin key is at least 16 characters, here printable ASCII (other
    // bytes are folded onto it). Brackets are left out because the marker
    // `[REDACTED]` is made of them: a key containing `[` could be spelled
    // again by the marker and the text around it.
    let key: String = input
        .key
        .iter()
        .map(|&b| match b {
            0x20..=0x7e => char::from(b),
            _ => char::from(0x20 + b % 0x5f),
        })
        .filter(|c| *c != '[' && *c != ']')
        .collect();
    if key.len() < 16 {
        return;
    }
    let spelled = spell(&key, input.spelling);
    let encoded = percent_encode(&spelled, input.encode, input.upper_hex);

    let t = AccessToken::from_parts(Id(input.token.0), Id(input.token.1), input.token.2);
    let exposed = t.expose();
    let body = &exposed[PREFIX.len()..];
    let mut token = String::new();
    for (i, c) in decoded_prefix(input.prefix_case).chars().enumerate() {
        if input.prefix_encode >> i & 1 == 1 {
            token.push_str(&format!("%{:02X}", c as u8));
        } else {
            token.push(c);
        }
    }
    token.push_str(body);

    let (first, second) = if input.key_first {
        (encoded.as_str(), token.as_str())
    } else {
        (token.as_str(), encoded.as_str())
    };
    let text = format!(
        "{}{first}{}{second}{}",
        input.before, input.between, input.after
    );
    // The text without the token: a piece of the token's body may survive
    // only if the rest of the text spells it anyway (the key may be made of
    // base64url too).
    let others = if input.key_first {
        format!("{}{first}{}\n{}", input.before, input.between, input.after)
    } else {
        format!("{}\n{}{second}{}", input.before, input.between, input.after)
    };

    let mut r = Redactor::new();
    r.add_secret(&key);
    let out = r.redact(&text);
    assert!(!out.contains(&key), "the key survives in {out:?}");
    assert!(
        !out.contains(&encoded),
        "the key as written survives in {out:?}"
    );
    // Character lists (`['a', 'b']`, as `Debug` prints them) are joined
    // before the rules run, which spells text the input does not hold.
    if !text.contains("['") {
        hidden(&out, body, &others);
    }

    // Error bodies only hide tokens; that must hold whatever else is there.
    hidden(&redact::tokens(&text), body, &others);
    // Text without anything to hide is left alone (character lists, as
    // `Debug` prints them, are joined first, so those are rewritten).
    let plain = r.redact(input.before);
    if !plain.contains(redact::MARKER) && !input.before.contains("['") {
        assert_eq!(plain, input.before);
    }
});

/// Neither a token's body nor any 20-character piece of it may survive,
/// unless `others` (the text around the token) holds that piece itself.
/// Markers are cut out first, so a piece cannot be made of a marker's
/// `tgat_` and the text next to it.
fn hidden(out: &str, body: &str, others: &str) {
    let shown = out
        .replace(redact::TOKEN_MARKER, "\n")
        .replace(redact::MARKER, "\n");
    for piece in body.as_bytes().windows(20) {
        let piece = std::str::from_utf8(piece).expect("base64url is ASCII");
        assert!(
            !shown.contains(piece) || others.contains(piece),
            "token piece {piece} survives in {out:?}"
        );
    }
}

/// The token prefix with the letters `case` chooses in upper case.
fn decoded_prefix(case: u8) -> String {
    PREFIX
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if case >> i & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn spell(key: &str, how: Spelling) -> String {
    let json = |s: &str| {
        let q = serde_json::to_string(s).expect("a string serialises");
        q[1..q.len() - 1].to_string()
    };
    let debug = |s: &str| {
        let q = format!("{s:?}");
        q[1..q.len() - 1].to_string()
    };
    match how {
        Spelling::Raw => key.to_string(),
        Spelling::Json => json(key),
        Spelling::Debug => debug(key),
        Spelling::Ascii => key.as_bytes().escape_ascii().to_string(),
        Spelling::JsonOfDebug => json(&debug(key)),
    }
}

/// `s` with the characters chosen by `mask` percent-encoded, as a client
/// writing a URL by hand (or a library that encodes some characters and not
/// others) might send it.
fn percent_encode(s: &str, mask: u64, upper: bool) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if mask >> (i % 64) & 1 == 1 && c.is_ascii() {
            if upper {
                out.push_str(&format!("%{:02X}", c as u8));
            } else {
                out.push_str(&format!("%{:02x}", c as u8));
            }
        } else {
            out.push(c);
        }
    }
    out
}
