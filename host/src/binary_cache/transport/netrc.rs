//! HTTP credentials for a cache from the user's netrc file, never from
//! kiln.toml or the URL.

use std::path::PathBuf;

/// `Basic …` for `host` from the user's netrc (`$NETRC`, else `~/.netrc`).
pub(super) fn netrc_auth(host: &str) -> Option<String> {
    let path = std::env::var_os("NETRC")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".netrc")))?;
    let text = kiln_core::sidefile::read_to_string(
        &path,
        kiln_core::sidefile::Links::Follow,
        kiln_core::sidefile::limits::TEXT,
    )
    .ok()?;
    let (login, password) = netrc_lookup(&text, host)?;
    Some(format!(
        "Basic {}",
        data_encoding::BASE64.encode(format!("{login}:{password}").as_bytes())
    ))
}

/// `(login, password)` for `host` in netrc text: its `machine` entry,
/// else the `default` entry.
fn netrc_lookup(text: &str, host: &str) -> Option<(String, String)> {
    // (machine, login, password); machine None for `default`.
    let mut entries: Vec<(Option<&str>, String, String)> = Vec::new();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        match w {
            "machine" => entries.push((Some(words.next()?), String::new(), String::new())),
            "default" => entries.push((None, String::new(), String::new())),
            "login" | "password" => {
                let v = words.next()?.to_string();
                if let Some(e) = entries.last_mut() {
                    if w == "login" { e.1 = v } else { e.2 = v }
                }
            }
            _ => {}
        }
    }
    let pick = |m: Option<&str>| {
        entries
            .iter()
            .find(|e| e.0 == m)
            .map(|e| (e.1.clone(), e.2.clone()))
    };
    pick(Some(host)).or_else(|| pick(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netrc_gives_the_machines_login() {
        let text = "machine other login a password b\nmachine cache.local login ci password s3cret\ndefault login anon password x\n";
        assert_eq!(
            netrc_lookup(text, "cache.local"),
            Some(("ci".into(), "s3cret".into()))
        );
        assert_eq!(
            netrc_lookup(text, "nowhere"),
            Some(("anon".into(), "x".into()))
        );
        assert_eq!(netrc_lookup("machine a login b password c", "z"), None);
    }
}
