//! `<hashpart>.narinfo`: Nix's description of one store path in a binary
//! cache, and the fingerprint its signatures cover.

use kiln_core::hash::Sha256Hash;

/// The store directory kiln's entries are published under, so Nix reads
/// the cache as one of its own (`StoreDir` in nix-cache-info).
pub const STORE_DIR: &str = "/nix/store";

/// One narinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    /// `/nix/store/<hashpart>-<name>`.
    pub store_path: String,
    /// Where the compressed NAR is, relative to the cache root.
    pub url: String,
    pub compression: String,
    pub file_hash: Sha256Hash,
    pub file_size: u64,
    pub nar_hash: Sha256Hash,
    pub nar_size: u64,
    /// Full store paths this one refers to (kiln's outputs refer to none).
    pub references: Vec<String>,
    /// `keyname:base64`, one per signature.
    pub sigs: Vec<String>,
}

impl NarInfo {
    /// What a signature signs, exactly as Nix computes it:
    /// `1;<storePath>;<narHash>;<narSize>;<refs, comma-separated>`.
    pub fn fingerprint(&self) -> String {
        format!(
            "1;{};sha256:{};{};{}",
            self.store_path,
            self.nar_hash.to_nix32(),
            self.nar_size,
            self.references.join(",")
        )
    }

    /// The part of the store path naming it in the cache.
    pub fn hash_part(&self) -> &str {
        let base = self.store_path.rsplit('/').next().unwrap_or("");
        base.split('-').next().unwrap_or("")
    }

    pub fn render(&self) -> String {
        let refs: Vec<&str> = self
            .references
            .iter()
            .map(|r| r.rsplit('/').next().unwrap_or(r))
            .collect();
        let mut s = format!(
            "StorePath: {}\nURL: {}\nCompression: {}\nFileHash: sha256:{}\nFileSize: {}\nNarHash: sha256:{}\nNarSize: {}\nReferences: {}\n",
            self.store_path,
            self.url,
            self.compression,
            self.file_hash.to_nix32(),
            self.file_size,
            self.nar_hash.to_nix32(),
            self.nar_size,
            refs.join(" ")
        );
        for sig in &self.sigs {
            s.push_str(&format!("Sig: {sig}\n"));
        }
        s
    }

    /// Parse a narinfo; unknown fields are ignored, as Nix does.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut store_path = None;
        let mut url = None;
        let mut compression = "bzip2".to_string();
        let mut file_hash = None;
        let mut file_size = None;
        let mut nar_hash = None;
        let mut nar_size = None;
        let mut references = Vec::new();
        let mut sigs = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            // Not quoted: a server (or whatever a redirect reached) chose it.
            let (k, v) = line
                .split_once(": ")
                .ok_or_else(|| format!("line {} is not 'Key: value': not a narinfo", n + 1))?;
            let hash = |v: &str| Sha256Hash::parse(v).map_err(|e| format!("{k}: {e}"));
            let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{k}: {e}"));
            match k {
                "StorePath" => store_path = Some(v.to_string()),
                "URL" => url = Some(v.to_string()),
                "Compression" => compression = v.to_string(),
                "FileHash" => file_hash = Some(hash(v)?),
                "FileSize" => file_size = Some(num(v)?),
                "NarHash" => nar_hash = Some(hash(v)?),
                "NarSize" => nar_size = Some(num(v)?),
                "References" => {
                    references = v
                        .split_whitespace()
                        .map(|r| format!("{STORE_DIR}/{r}"))
                        .collect();
                }
                "Sig" => sigs.push(v.to_string()),
                _ => {}
            }
        }
        let need = |what: &str| format!("no {what} field");
        let store_path = store_path.ok_or_else(|| need("StorePath"))?;
        let url = url.ok_or_else(|| need("URL"))?;
        // The NAR is fetched relative to the cache: no scheme, no way up.
        if url.contains("://") || url.starts_with('/') || url.split('/').any(|c| c == "..") {
            return Err(format!("URL {url:?} is not a path inside the cache"));
        }
        Ok(NarInfo {
            store_path,
            url,
            compression,
            file_hash: file_hash.ok_or_else(|| need("FileHash"))?,
            file_size: file_size.ok_or_else(|| need("FileSize"))?,
            nar_hash: nar_hash.ok_or_else(|| need("NarHash"))?,
            nar_size: nar_size.ok_or_else(|| need("NarSize"))?,
            references,
            sigs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_parses_and_fingerprints_as_nix_does() {
        let n = NarInfo {
            store_path: format!("{STORE_DIR}/0cy63m4j5v105k8cj1hj7mm6r8gk2jyf-hello"),
            url: "nar/abc.nar.zst".into(),
            compression: "zstd".into(),
            file_hash: Sha256Hash([1; 32]),
            file_size: 10,
            nar_hash: Sha256Hash([2; 32]),
            nar_size: 120,
            references: vec![],
            sigs: vec!["k-1:c2ln".into()],
        };
        assert_eq!(NarInfo::parse(&n.render()).unwrap(), n);
        assert_eq!(n.hash_part(), "0cy63m4j5v105k8cj1hj7mm6r8gk2jyf");
        assert_eq!(
            n.fingerprint(),
            format!(
                "1;/nix/store/0cy63m4j5v105k8cj1hj7mm6r8gk2jyf-hello;sha256:{};120;",
                Sha256Hash([2; 32]).to_nix32()
            )
        );
    }

    #[test]
    fn a_url_outside_the_cache_is_refused() {
        for url in ["https://evil/x", "/etc/passwd", "nar/../../x"] {
            let text = format!(
                "StorePath: /nix/store/x-y\nURL: {url}\nFileHash: sha256:{h}\nFileSize: 1\nNarHash: sha256:{h}\nNarSize: 1\n",
                h = Sha256Hash([0; 32]).to_nix32()
            );
            assert!(
                NarInfo::parse(&text)
                    .unwrap_err()
                    .contains("not a path inside the cache")
            );
        }
    }
}
