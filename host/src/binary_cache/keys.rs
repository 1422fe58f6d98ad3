//! Signing keys in Nix's format: `name:base64(secret)` where the secret is
//! Ed25519's 32-byte seed followed by the 32-byte public key (as
//! `nix-store --generate-binary-cache-key` writes it), `name:base64(public)`
//! for the public key, and `name:base64(signature)` in a narinfo's `Sig`.

use data_encoding::BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// A key that cannot be used, with why.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {why}")]
pub struct KeyError {
    pub what: String,
    pub why: String,
}

fn bad(what: &str, why: impl Into<String>) -> KeyError {
    KeyError {
        what: what.to_string(),
        why: why.into(),
    }
}

fn split<'a>(what: &str, text: &'a str) -> Result<(&'a str, Vec<u8>), KeyError> {
    let (name, b64) = text
        .trim()
        .split_once(':')
        .ok_or_else(|| bad(what, "expected NAME:BASE64"))?;
    if name.is_empty() {
        return Err(bad(what, "the key has no name before ':'"));
    }
    let bytes = BASE64
        .decode(b64.as_bytes())
        .map_err(|e| bad(what, format!("not base64: {e}")))?;
    Ok((name, bytes))
}

/// A secret signing key.
pub struct SecretKey {
    pub name: String,
    key: SigningKey,
}

/// Only the name: a secret never reaches a log.
impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// A new random key named `name` (e.g. `cache.example.org-1`).
    pub fn generate(name: &str) -> Self {
        let seed: [u8; 32] = rand::random();
        SecretKey {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// Parse Nix's secret-key text; `what` names it in errors.
    pub fn parse(what: &str, text: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split(what, text)?;
        if bytes.len() != 64 {
            return Err(bad(
                what,
                format!("a secret key holds 64 bytes, this one {}", bytes.len()),
            ));
        }
        let seed: [u8; 32] = bytes[..32].try_into().map_err(|_| bad(what, "short"))?;
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes() != &bytes[32..] {
            return Err(bad(what, "its public half does not match its secret half"));
        }
        Ok(SecretKey {
            name: name.to_string(),
            key,
        })
    }

    /// Nix's text form of the secret key.
    pub fn to_text(&self) -> String {
        let mut bytes = self.key.to_bytes().to_vec();
        bytes.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}:{}", self.name, BASE64.encode(&bytes))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// `name:base64(signature of message)`.
    pub fn sign(&self, message: &[u8]) -> String {
        let sig = self.key.sign(message);
        format!("{}:{}", self.name, BASE64.encode(&sig.to_bytes()))
    }
}

/// A public key that signatures are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub name: String,
    key: VerifyingKey,
}

impl PublicKey {
    pub fn parse(what: &str, text: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split(what, text)?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            bad(
                what,
                format!("a public key holds 32 bytes, this one {}", bytes.len()),
            )
        })?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|e| bad(what, e.to_string()))?;
        Ok(PublicKey {
            name: name.to_string(),
            key,
        })
    }

    pub fn to_text(&self) -> String {
        format!("{}:{}", self.name, BASE64.encode(self.key.as_bytes()))
    }
}

/// Whether one of `sigs` (`name:base64` each) is a valid signature of
/// `message` by one of `trusted`, matched by name as Nix does.
pub fn verified_by<'k>(
    message: &[u8],
    sigs: &[String],
    trusted: &'k [PublicKey],
) -> Option<&'k PublicKey> {
    sigs.iter().find_map(|s| {
        let (name, b64) = s.split_once(':')?;
        let key = trusted.iter().find(|k| k.name == name)?;
        let bytes: [u8; 64] = BASE64.decode(b64.as_bytes()).ok()?.try_into().ok()?;
        key.key
            .verify(message, &Signature::from_bytes(&bytes))
            .ok()
            .map(|_| key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_signatures_check() {
        let k = SecretKey::generate("test-1");
        let again = SecretKey::parse("key", &k.to_text()).unwrap();
        assert_eq!(again.public(), k.public());
        let public = PublicKey::parse("pub", &k.public().to_text()).unwrap();
        let sig = k.sign(b"message");
        assert!(sig.starts_with("test-1:"));
        let trusted = [public];
        assert!(verified_by(b"message", std::slice::from_ref(&sig), &trusted).is_some());
        assert!(verified_by(b"messagE", std::slice::from_ref(&sig), &trusted).is_none());
        // Another key of the same name does not vouch for it.
        let other = SecretKey::generate("test-1").public();
        assert!(verified_by(b"message", &[sig], &[other]).is_none());
    }

    #[test]
    fn bad_keys_are_named_errors() {
        assert!(
            PublicKey::parse("k", "nocolon")
                .unwrap_err()
                .to_string()
                .contains("NAME:BASE64")
        );
        assert!(
            PublicKey::parse("k", "n:AAAA")
                .unwrap_err()
                .to_string()
                .contains("32 bytes")
        );
        assert!(
            SecretKey::parse("k", "n:AAAA")
                .unwrap_err()
                .to_string()
                .contains("64 bytes")
        );
    }
}
