//! The input format every target shares: fields separated by the byte 0x1F
//! (ASCII unit separator, `\x1f` in a seed), so seeds are readable text
//! written by hand and mutations mostly keep field boundaries.

/// The separator between fields.
pub const SEP: u8 = 0x1f;

/// Fields read one after another; a missing field reads as empty.
pub struct Fields<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    pub fn new(data: &'a [u8]) -> Fields<'a> {
        Fields { rest: Some(data) }
    }

    /// The next field's bytes.
    pub fn bytes(&mut self) -> &'a [u8] {
        let Some(rest) = self.rest else {
            return b"";
        };
        match rest.iter().position(|b| *b == SEP) {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                &rest[..i]
            }
            None => {
                self.rest = None;
                rest
            }
        }
    }

    /// The next field as text: its longest valid UTF-8 prefix.
    pub fn text(&mut self) -> &'a str {
        utf8_prefix(self.bytes())
    }

    /// The next field as a number: decimal, `0x` hex, or 0.
    pub fn number(&mut self) -> u64 {
        let t = self.text().trim();
        match t.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).unwrap_or(0),
            None => t.parse().unwrap_or(0),
        }
    }

    /// Everything left, separators included.
    pub fn rest(self) -> &'a [u8] {
        self.rest.unwrap_or(b"")
    }

    /// Everything left, as text.
    pub fn rest_text(self) -> &'a str {
        utf8_prefix(self.rest())
    }
}

/// The longest prefix of `b` that is valid UTF-8.
pub fn utf8_prefix(b: &[u8]) -> &str {
    match std::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// The non-empty lines of `text`.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').filter(|l| !l.is_empty())
}

/// Whether to check the findings already reported (docs/fuzzing.md) too.
/// Off by default so a run goes on past a known finding to new ones; set
/// `TOKENGATE_FUZZ_STRICT=1` to reproduce one from `fuzz/regressions`.
/// No reported finding is open now, so no target calls it.
#[allow(dead_code)]
pub fn strict() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("TOKENGATE_FUZZ_STRICT").is_some())
}
