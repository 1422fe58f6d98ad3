//! Text on its way to a terminal: one rule, applied where kiln prints.
//!
//! Much of what kiln shows comes from parties it does not trust: a recipe's
//! log, a failing tool's output, a cache server's narinfo fields, a
//! registry's error body, an image's tags and file names, a go.mod's
//! `module` line, kiln.toml's own strings. Raw, such text can rewrite what
//! the user sees (cursor movement, `\r`, erasing lines), set the window
//! title, hide itself or reorder a line (Unicode bidirectional overrides),
//! or worse, depending on the terminal. [`safe`] shows every control
//! character visibly instead (`\x1b`, `\r`, `\u{202e}`), keeping newlines
//! and tabs where they belong.
//!
//! JSON output goes through [`safe_json`]: serde_json escapes C0 controls
//! in strings but leaves DEL, C1 and the bidi characters raw; those become
//! `\uXXXX` escapes, so `--json` consumers still get valid JSON, with the
//! same strings, and a terminal shows nothing it obeys.

use std::borrow::Cow;

/// `text` with every character a terminal would act on shown as an escape;
/// `\n` and `\t` are kept.
pub fn safe(text: &str) -> Cow<'_, str> {
    escape_with(text, |out, c| match c {
        '\r' => out.push_str("\\r"),
        c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
        c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
    })
}

/// Serialised JSON with every character [`safe`] would escape written as
/// a JSON `\uXXXX` escape instead (they can only stand inside strings,
/// where the escape means the same character); newlines and tabs between
/// tokens are kept.
pub fn safe_json(json: &str) -> Cow<'_, str> {
    escape_with(json, |out, c| {
        let mut units = [0u16; 2];
        for u in c.encode_utf16(&mut units) {
            out.push_str(&format!("\\u{:04x}", u));
        }
    })
}

/// `text` with each character [`needs_escape`] picks written by `escape`.
fn escape_with(text: &str, escape: impl Fn(&mut String, char)) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs_escape(c) {
            escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Control characters (C0 but newline and tab, DEL, C1) and the
/// invisible characters that reorder or hide text.
fn needs_escape(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        c if c.is_control() => true,
        // Bidirectional embeddings, overrides and isolates; marks that
        // change direction invisibly (the Arabic letter mark included).
        '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{061c}' => true,
        // Invisible characters that hide text or join it: zero-width
        // space, joiners, word joiner, invisible operators, byte-order
        // mark, soft hyphen.
        '\u{200b}'..='\u{200d}' | '\u{2060}'..='\u{2064}' | '\u{feff}' | '\u{00ad}' => true,
        // Line and paragraph separators some terminals honour.
        '\u{2028}' | '\u{2029}' => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::safe;

    #[test]
    fn escapes_and_controls_are_shown_not_obeyed() {
        assert_eq!(safe("plain text\n\tindented"), "plain text\n\tindented");
        assert_eq!(safe("\x1b]0;owned\x07"), "\\x1b]0;owned\\x07");
        assert_eq!(safe("ok\rFAKE"), "ok\\rFAKE");
        assert_eq!(safe("\x1b[2J\x1b[1;1H"), "\\x1b[2J\\x1b[1;1H");
        assert_eq!(safe("a\u{9b}31m"), "a\\x9b31m");
        assert_eq!(safe("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(safe("\x7f"), "\\x7f");
        assert_eq!(safe("naïve — ünïcode"), "naïve — ünïcode");
        assert_eq!(safe("a\u{200b}b\u{feff}"), "a\\u{200b}b\\u{feff}");
    }

    #[test]
    fn json_stays_valid_and_means_the_same() {
        let value = serde_json::json!({ "name": "x\u{202e}y\u{9b}\u{7f}z\n" });
        let raw = serde_json::to_string_pretty(&value).unwrap();
        let shown = super::safe_json(&raw);
        assert!(
            !shown.contains('\u{202e}') && !shown.contains('\u{9b}'),
            "{shown}"
        );
        assert!(shown.contains("\\u202e"), "{shown}");
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back, value);
    }
}
