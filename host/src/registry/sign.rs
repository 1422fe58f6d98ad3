//! Signatures and attestations in cosign's formats, so `cosign verify
//! --key` and `cosign verify-attestation --key` accept what kiln pushes:
//!
//! * a signature is an OCI manifest tagged `sha256-<hex>.sig` whose one
//!   layer is the "simple signing" payload naming the image's digest, with
//!   the payload's ECDSA P-256 / SHA-256 signature (DER, base64) in the
//!   layer's `dev.cosignproject.cosign/signature` annotation;
//! * attestations are an OCI manifest tagged `sha256-<hex>.att` whose
//!   layers are DSSE envelopes of in-toto Statements (SLSA provenance,
//!   SPDX SBOM) about that digest, signed over DSSE's PAE encoding.
//!
//! Keys are PEM: the secret as PKCS#8 (`cosign import-key-pair` takes it),
//! the public as PKIX (what `cosign verify --key` reads). No transparency
//! log entry is made: verify with `--insecure-ignore-tlog`.

use data_encoding::BASE64;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{Value, json};

use super::RegistryError;

pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// An image-signing key (ECDSA P-256, as cosign makes by default).
pub struct ImageKey(SigningKey);

impl std::fmt::Debug for ImageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImageKey(…)")
    }
}

impl ImageKey {
    pub fn generate() -> Self {
        loop {
            let seed: [u8; 32] = rand::random();
            if let Ok(k) = SigningKey::from_slice(&seed) {
                return ImageKey(k);
            }
        }
    }

    /// Parse a PKCS#8 PEM secret key; `what` names it in errors.
    pub fn from_pem(what: &str, pem: &str) -> Result<Self, RegistryError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(ImageKey)
            .map_err(|e| RegistryError::Layout {
                path: what.to_string(),
                message: format!(
                    "not an ECDSA P-256 PKCS#8 PEM key ({e}); `kiln image keygen` makes one, `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` too"
                ),
            })
    }

    pub fn secret_pem(&self) -> Result<String, RegistryError> {
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .map(|s| s.to_string())
            .map_err(|e| RegistryError::Layout {
                path: "key".into(),
                message: e.to_string(),
            })
    }

    /// The public key as a PKIX PEM (`cosign.pub`).
    pub fn public_pem(&self) -> Result<String, RegistryError> {
        self.0
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| RegistryError::Layout {
                path: "key".into(),
                message: e.to_string(),
            })
    }

    /// base64 of the DER ECDSA signature of `message` (SHA-256).
    pub fn sign(&self, message: &[u8]) -> String {
        let sig: Signature = self.0.sign(message);
        BASE64.encode(sig.to_der().as_bytes())
    }
}

/// The tag of a signature (`.sig`) or attestations (`.att`) of `digest`.
pub fn tag_for(digest: &str, suffix: &str) -> String {
    format!("{}.{suffix}", digest.replace(':', "-"))
}

/// cosign's simple-signing payload for `digest`, pushed as `reference`
/// (`REGISTRY/REPO:TAG`).
pub fn simple_signing_payload(reference: &str, digest: &str) -> Vec<u8> {
    let v = json!({
        "critical": {
            "identity": { "docker-reference": reference },
            "image": { "docker-manifest-digest": digest },
            "type": "cosign container image signature"
        },
        "optional": null
    });
    v.to_string().into_bytes()
}

/// DSSE's pre-authentication encoding, what an envelope's signature signs.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An in-toto Statement v1 about `digest` of `repository`, in a signed
/// DSSE envelope.
pub fn attestation(
    key: &ImageKey,
    repository: &str,
    digest: &str,
    predicate_type: &str,
    predicate: &Value,
) -> Vec<u8> {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{
            "name": repository,
            "digest": { "sha256": digest.trim_start_matches("sha256:") }
        }],
        "predicateType": predicate_type,
        "predicate": predicate,
    })
    .to_string()
    .into_bytes();
    let sig = key.sign(&pae(IN_TOTO, &statement));
    json!({
        "payloadType": IN_TOTO,
        "payload": BASE64.encode(&statement),
        "signatures": [{ "keyid": "", "sig": sig }]
    })
    .to_string()
    .into_bytes()
}

/// One layer of a signature or attestation manifest.
pub struct ArtifactLayer {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    pub annotations: Vec<(String, String)>,
}

/// The config and manifest of a cosign artifact holding `layers`:
/// (config bytes, manifest bytes).
pub fn artifact_manifest(layers: &[ArtifactLayer]) -> (Vec<u8>, Vec<u8>) {
    let digest = super::oci_digest;
    let config = json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{ "created": "0001-01-01T00:00:00Z" }],
        "os": "",
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| digest(&l.bytes)).collect::<Vec<_>>()
        }
    })
    .to_string()
    .into_bytes();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": digest(&config)
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "size": l.bytes.len(),
            "digest": digest(&l.bytes),
            "annotations": l.annotations.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>()
    })
    .to_string()
    .into_bytes();
    (config, manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};
    use p256::pkcs8::DecodePublicKey;

    #[test]
    fn signatures_verify_with_the_public_pem_and_envelopes_sign_the_pae() {
        let key = ImageKey::generate();
        let again = ImageKey::from_pem("k", &key.secret_pem().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        let public = VerifyingKey::from_public_key_pem(&again.public_pem().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        let payload = simple_signing_payload("reg.io/hello:v1", "sha256:ab");
        let sig = BASE64
            .decode(key.sign(&payload).as_bytes())
            .unwrap_or_default();
        let sig = Signature::from_der(&sig).unwrap_or_else(|e| panic!("{e}"));
        assert!(public.verify(&payload, &sig).is_ok());
        assert!(public.verify(b"other", &sig).is_err());

        let env: Value = serde_json::from_slice(&attestation(
            &key,
            "reg.io/hello",
            "sha256:ab",
            "t",
            &json!({}),
        ))
        .unwrap_or_default();
        let statement = BASE64
            .decode(env["payload"].as_str().unwrap_or_default().as_bytes())
            .unwrap_or_default();
        let sig = BASE64
            .decode(
                env["signatures"][0]["sig"]
                    .as_str()
                    .unwrap_or_default()
                    .as_bytes(),
            )
            .unwrap_or_default();
        let sig = Signature::from_der(&sig).unwrap_or_else(|e| panic!("{e}"));
        assert!(public.verify(&pae(IN_TOTO, &statement), &sig).is_ok());
        assert_eq!(pae("t", b"ab"), b"DSSEv1 1 t 2 ab");
        assert_eq!(tag_for("sha256:ab", "sig"), "sha256-ab.sig");
        assert!(ImageKey::from_pem("k", "nope").is_err());
    }
}
