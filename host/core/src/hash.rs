//! SHA-256 digests and their three spellings: SRI (`sha256-<base64>`, the
//! canonical one kiln prints), Nix base32 (`sha256:<nix32>`) and hex
//! (`sha256:<hex>`). Pure: no I/O beyond hashing a reader.

use std::fmt;
use std::io::Read;

use data_encoding::{BASE64, HEXLOWER_PERMISSIVE};
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Hash(pub [u8; 32]);

/// How to spell a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFormat {
    /// `sha256-<base64>`, as in Nix's `hash = "sha256-…"` and SRI.
    Sri,
    /// `sha256:<nix base32>`, as printed by `nix-prefetch-url`.
    Nix32,
    /// `sha256:<hex>`, as printed by `sha256sum`.
    Hex,
}

/// Why a hash string was not understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashParseError {
    #[error(
        "unsupported hash algorithm '{0}': kiln uses sha256 (write sha256-<base64>, sha256:<nix32> or sha256:<hex>)"
    )]
    Algorithm(String),
    #[error(
        "'{0}' is not a hash: expected sha256-<base64> (SRI, e.g. sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=), sha256:<52 nix32 chars> or sha256:<64 hex chars>"
    )]
    Shape(String),
    #[error("'{input}' is not valid {encoding}: {detail}")]
    Encoding {
        input: String,
        encoding: &'static str,
        detail: String,
    },
}

const NIX32_ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

impl Sha256Hash {
    /// The digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Sha256Hash(Sha256::digest(bytes).into())
    }

    /// The digest of everything `reader` yields (a file's flat hash).
    pub fn of_reader(mut reader: impl Read) -> std::io::Result<Self> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(Sha256Hash(hasher.finalize().into()))
    }

    /// Parse any of the three accepted spellings.
    pub fn parse(s: &str) -> Result<Self, HashParseError> {
        let s = s.trim();
        if let Some(b64) = s.strip_prefix("sha256-") {
            let bytes = BASE64
                .decode(b64.as_bytes())
                .map_err(|e| HashParseError::Encoding {
                    input: s.to_string(),
                    encoding: "base64",
                    detail: e.to_string(),
                })?;
            return Self::from_slice(s, &bytes);
        }
        if let Some(rest) = s.strip_prefix("sha256:") {
            return match rest.len() {
                64 => {
                    let bytes = HEXLOWER_PERMISSIVE.decode(rest.as_bytes()).map_err(|e| {
                        HashParseError::Encoding {
                            input: s.to_string(),
                            encoding: "hex",
                            detail: e.to_string(),
                        }
                    })?;
                    Self::from_slice(s, &bytes)
                }
                52 => {
                    decode_nix32(rest)
                        .map(Sha256Hash)
                        .map_err(|detail| HashParseError::Encoding {
                            input: s.to_string(),
                            encoding: "nix32",
                            detail,
                        })
                }
                _ => Err(HashParseError::Shape(s.to_string())),
            };
        }
        if let Some((algo, _)) = s.split_once(['-', ':'])
            && matches!(algo, "sha1" | "sha512" | "md5" | "blake3")
        {
            return Err(HashParseError::Algorithm(algo.to_string()));
        }
        Err(HashParseError::Shape(s.to_string()))
    }

    fn from_slice(input: &str, bytes: &[u8]) -> Result<Self, HashParseError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| HashParseError::Encoding {
            input: input.to_string(),
            encoding: "sha256",
            detail: format!("a sha256 digest is 32 bytes, this is {}", bytes.len()),
        })?;
        Ok(Sha256Hash(arr))
    }

    /// Spell the hash in `format`.
    pub fn to_format(&self, format: HashFormat) -> String {
        match format {
            HashFormat::Sri => self.to_sri(),
            HashFormat::Nix32 => format!("sha256:{}", self.to_nix32()),
            HashFormat::Hex => format!("sha256:{}", self.to_hex()),
        }
    }

    /// `sha256-<base64>`.
    pub fn to_sri(&self) -> String {
        format!("sha256-{}", BASE64.encode(&self.0))
    }

    /// Lowercase hex, no prefix.
    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }

    /// Nix base32, no prefix (52 characters).
    pub fn to_nix32(&self) -> String {
        encode_nix32(&self.0)
    }
}

impl fmt::Display for Sha256Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_sri())
    }
}

impl fmt::Debug for Sha256Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Hash({})", self.to_sri())
    }
}

impl std::str::FromStr for Sha256Hash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Sha256Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_sri())
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Nix's base32: least significant 5-bit group last, its own alphabet.
pub fn encode_nix32(bytes: &[u8]) -> String {
    let len = (bytes.len() * 8).div_ceil(5);
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let lo = bytes[i] >> j;
        let hi = if i + 1 < bytes.len() {
            bytes[i + 1].checked_shl(8 - j as u32).unwrap_or(0)
        } else {
            0
        };
        out.push(NIX32_ALPHABET[((lo | hi) & 0x1f) as usize] as char);
    }
    out
}

fn decode_nix32(s: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    for (n, c) in s.bytes().rev().enumerate() {
        let digit = NIX32_ALPHABET.iter().position(|&a| a == c).ok_or_else(|| {
            format!(
                "'{}' is not a nix32 character (alphabet: 0-9 a-z without e o u t)",
                c as char
            )
        })? as u16;
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        out[i] |= (digit << j) as u8;
        let carry = digit >> (8 - j);
        if i + 1 < 32 {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return Err("the value is larger than 256 bits".to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // sha256 of the empty string, in the three spellings Nix prints.
    const EMPTY_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const EMPTY_NIX32: &str = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    const EMPTY_SRI: &str = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    #[test]
    fn the_three_spellings_of_the_empty_digest_agree() {
        let h = Sha256Hash::of_bytes(b"");
        assert_eq!(h.to_hex(), EMPTY_HEX);
        assert_eq!(h.to_nix32(), EMPTY_NIX32);
        assert_eq!(h.to_sri(), EMPTY_SRI);
        for s in [
            EMPTY_SRI.to_string(),
            format!("sha256:{EMPTY_NIX32}"),
            format!("sha256:{EMPTY_HEX}"),
        ] {
            assert_eq!(Sha256Hash::parse(&s), Ok(h), "{s}");
        }
    }

    #[test]
    fn nix_test_vector_for_abc() {
        // sha256("abc") as Nix's own hash tests spell it.
        let h = Sha256Hash::of_bytes(b"abc");
        assert_eq!(
            h.to_sri(),
            "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            h.to_nix32(),
            "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
        );
    }

    #[test]
    fn nix32_round_trips() {
        for seed in 0u8..50 {
            let h = Sha256Hash::of_bytes(&[seed; 7]);
            assert_eq!(Sha256Hash::parse(&h.to_format(HashFormat::Nix32)), Ok(h));
            assert_eq!(Sha256Hash::parse(&h.to_format(HashFormat::Hex)), Ok(h));
            assert_eq!(Sha256Hash::parse(&h.to_format(HashFormat::Sri)), Ok(h));
        }
    }

    #[test]
    fn bad_strings_say_what_is_valid() {
        assert!(
            matches!(Sha256Hash::parse("sha512-abc"), Err(HashParseError::Algorithm(a)) if a == "sha512")
        );
        assert!(matches!(
            Sha256Hash::parse("deadbeef"),
            Err(HashParseError::Shape(_))
        ));
        assert!(matches!(
            Sha256Hash::parse("sha256-!!!"),
            Err(HashParseError::Encoding {
                encoding: "base64",
                ..
            })
        ));
        assert!(matches!(
            Sha256Hash::parse("sha256-AAAA"),
            Err(HashParseError::Encoding {
                encoding: "sha256",
                ..
            })
        ));
        let bad32 = format!("sha256:{}", "e".repeat(52));
        assert!(matches!(
            Sha256Hash::parse(&bad32),
            Err(HashParseError::Encoding {
                encoding: "nix32",
                ..
            })
        ));
        let msg = Sha256Hash::parse("nope").unwrap_err().to_string();
        assert!(msg.contains("sha256-<base64>"), "{msg}");
    }
}
