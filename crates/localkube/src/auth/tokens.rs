//! Bearer tokens: ServiceAccount JWTs signed with a key localkube holds, and static tokens in
//! kube-apiserver's `--token-auth-file` CSV format.
//!
//! The JWTs are ES256 (a P-256 key, as kube-apiserver signs with an ECDSA
//! `--service-account-signing-key-file`), built by hand on `ring` (already in the tree through
//! rustls): a compact JWS is three base64url parts, and the claims checks must be
//! kube-apiserver's own (issuer, audiences, expiry, the ServiceAccount and bound object still
//! existing), which a JWT crate would not do for us.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde_json::{Value, json};

/// The key ServiceAccount tokens are signed with, created when the server starts.
pub struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The key id (`kid`): base64url of the SHA-256 of the public key.
    pub kid: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish()
    }
}

impl Signer {
    pub fn generate() -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("cannot generate the service account signing key"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| anyhow::anyhow!("cannot load the service account signing key"))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        Ok(Self {
            kid: B64.encode(digest.as_ref()),
            key,
            rng,
        })
    }

    /// Signs `claims` into a compact JWS.
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let input = format!(
            "{}.{}",
            B64.encode(serde_json::to_vec(&header)?),
            B64.encode(serde_json::to_vec(claims)?)
        );
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| anyhow::anyhow!("cannot sign the token"))?;
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }

    /// The claims of a token this key signed, or `None` when it is not one (malformed, another
    /// key, another algorithm).
    pub fn verify(&self, token: &str) -> Option<Value> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
        if header["alg"] != "ES256" {
            return None;
        }
        let sig = B64.decode(s).ok()?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(format!("{h}.{c}").as_bytes(), &sig)
            .ok()?;
        serde_json::from_slice(&B64.decode(c).ok()?).ok()
    }

    /// The public key as a JSON Web Key Set (`/openid/v1/jwks`).
    pub fn jwks(&self) -> Value {
        let point = self.key.public_key().as_ref();
        // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
        let (x, y) = point
            .get(1..)
            .unwrap_or_default()
            .split_at(32.min(point.len().saturating_sub(1)));
        json!({"keys": [{"use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
                         "x": B64.encode(x), "y": B64.encode(y)}]})
    }
}

/// A user of the static token file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticToken {
    pub token: String,
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// Parses kube-apiserver's `--token-auth-file`: `token,user,uid[,"group1,group2"]` per line.
pub fn parse_token_file(text: &str) -> Result<Vec<StaticToken>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields = csv_fields(line);
        if fields.len() < 3 {
            return Err(format!(
                "token file: line {}: need at least 3 fields (token,user,uid), found {}",
                i + 1,
                fields.len()
            ));
        }
        if fields[0].is_empty() {
            return Err(format!("token file: line {}: empty token", i + 1));
        }
        let groups = fields
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        out.push(StaticToken {
            token: fields[0].clone(),
            user: fields[1].clone(),
            uid: fields[2].clone(),
            groups,
        });
    }
    Ok(out)
}

/// The fields of one CSV line (double quotes group commas; `""` is a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                if let Some(f) = fields.last_mut() {
                    f.push('"');
                }
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_tampering_is_refused() {
        let s = Signer::generate().expect("key");
        let t = s.sign(&json!({"sub": "x", "n": 1})).expect("signed");
        assert_eq!(s.verify(&t).expect("valid")["sub"], "x");
        let other = Signer::generate().expect("key");
        assert!(other.verify(&t).is_none(), "another key");
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(br#"{"sub":"admin","n":1}"#);
        parts[1] = &forged;
        assert!(s.verify(&parts.join(".")).is_none(), "claims changed");
        assert!(s.verify("a.b").is_none());
        let jwks = s.jwks();
        assert_eq!(jwks["keys"][0]["kid"], json!(s.kid));
    }

    #[test]
    fn token_file_as_kube_apiserver_reads_it() {
        let f = "tok1,alice,uid-1\n\n tok2,bob,uid-2,\"dev,ops\"\n";
        let t = parse_token_file(f).expect("parses");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].groups, Vec::<String>::new());
        assert_eq!(
            (t[1].user.as_str(), t[1].groups.clone()),
            ("bob", vec!["dev".to_string(), "ops".to_string()])
        );
        assert!(parse_token_file("only,two").is_err());
    }
}
