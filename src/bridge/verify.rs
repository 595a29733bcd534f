//! Webhook authenticity, one scheme per platform, every comparison in
//! constant time. Pure: headers, body and the current time go in, a verdict
//! comes out. Several secrets may be active at once (rotation): a request is
//! authentic when it verifies under any of them.
//!
//! | platform | what is checked |
//! |---|---|
//! | GitHub | `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the raw body |
//! | GitLab | `X-Gitlab-Token: <secret>`, or the signing-token scheme (Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` over `id.timestamp.body`, secret `whsec_<base64>`) |
//! | CircleCI | `circleci-signature: v1=<hex>[,...]`, HMAC-SHA256 of the raw body |
//! | Azure DevOps | `Authorization: Basic <base64(user:password)>` |
//! | Jenkins | a shared token in `X-Medic-Token`, or `?token=` for the Notification plugin, which cannot set headers |
//! | generic | `X-Medic-Timestamp: <unix seconds>`, `X-Medic-Signature: sha256=<hex>` of `timestamp.body`, within the tolerance |

use crate::domain::{CiPlatform, Millis};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Why a request is not authentic. Every variant is a 401; none reveals a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header carrying the signature or token is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// The header is present but not in the platform's format.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// No configured secret produces this signature or token.
    #[error("signature or token does not match")]
    Mismatch,
    /// The signed timestamp is too far from now (replay protection).
    #[error("timestamp outside the allowed {0} s")]
    Stale(u64),
}

/// Header lookup, case-insensitive, first value.
pub trait Headers {
    /// The value of header `name`, if present and valid UTF-8.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

impl Headers for axum::http::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        axum::http::HeaderMap::get(self, name).and_then(|v| v.to_str().ok())
    }
}

/// What one platform's endpoint checks.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// Platform.
    pub platform: CiPlatform,
    /// Active secrets (raw bytes; for GitLab signing tokens the `whsec_...` text).
    pub secrets: Vec<Vec<u8>>,
    /// Replay window for timestamped schemes, in seconds.
    pub tolerance_secs: u64,
    /// Jenkins: the token header name.
    pub token_header: String,
}

fn hmac_ok(secret: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(expected).is_ok()
}

/// Compares a plain token with a secret in constant time, length included:
/// their SHA-256 digests are compared, so neither a wrong length nor a common
/// prefix answers sooner.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a)
        .as_slice()
        .ct_eq(Sha256::digest(b).as_slice())
        .into()
}

/// A GitLab signing token (`whsec_…`) verifies `webhook-signature` only; as
/// a plain `X-Gitlab-Token` it would let whoever reads it skip the signature.
fn plain_token(secret: &[u8]) -> bool {
    !secret.starts_with(b"whsec_")
}

fn hex_after(value: &str, prefix: &str, header: &'static str) -> Result<Vec<u8>, VerifyError> {
    let hex = value
        .trim()
        .strip_prefix(prefix)
        .ok_or(VerifyError::Malformed(header))?;
    decode_hex(hex).ok_or(VerifyError::Malformed(header))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.as_bytes().chunks_exact(2).map(hex_pair).collect()
}

/// The byte two ASCII hex digits stand for. Digits only: `u8::from_str_radix`
/// would also take a sign, reading "+1" as "01".
fn hex_pair(pair: &[u8]) -> Option<u8> {
    let [high, low] = pair else {
        return None;
    };
    let digit = |b: &u8| char::from(*b).to_digit(16);
    u8::try_from(digit(high)? * 16 + digit(low)?).ok()
}

impl Verifier {
    /// Checks a request; `query` is the raw query string (Jenkins token), `now` the current time.
    pub fn verify(
        &self,
        headers: &(impl Headers + ?Sized),
        query: Option<&str>,
        body: &[u8],
        now: Millis,
    ) -> Result<(), VerifyError> {
        let any = |check: &dyn Fn(&[u8]) -> bool| self.secrets.iter().any(|s| check(s));
        let matched = match self.platform {
            CiPlatform::GithubActions => {
                let header = headers
                    .get("x-hub-signature-256")
                    .ok_or(VerifyError::Missing("X-Hub-Signature-256"))?;
                let sig = hex_after(header, "sha256=", "X-Hub-Signature-256")?;
                any(&|s| hmac_ok(s, &[body], &sig))
            }
            CiPlatform::Circleci => {
                let header = headers
                    .get("circleci-signature")
                    .ok_or(VerifyError::Missing("circleci-signature"))?;
                let sigs: Vec<Vec<u8>> = header
                    .split(',')
                    .filter_map(|part| part.trim().strip_prefix("v1="))
                    .map(|hex| decode_hex(hex).ok_or(VerifyError::Malformed("circleci-signature")))
                    .collect::<Result<_, _>>()?;
                if sigs.is_empty() {
                    return Err(VerifyError::Malformed("circleci-signature"));
                }
                any(&|s| sigs.iter().any(|sig| hmac_ok(s, &[body], sig)))
            }
            CiPlatform::GitlabCi => match headers.get("webhook-signature") {
                Some(signature) => self.standard_webhooks(headers, signature, body, now)?,
                None => {
                    let token = headers
                        .get("x-gitlab-token")
                        .ok_or(VerifyError::Missing("X-Gitlab-Token or webhook-signature"))?;
                    any(&|s| plain_token(s) && ct_eq(s, token.as_bytes()))
                }
            },
            CiPlatform::AzureDevops => {
                let header = headers
                    .get("authorization")
                    .ok_or(VerifyError::Missing("Authorization"))?;
                let encoded = header
                    .trim()
                    .strip_prefix("Basic ")
                    .ok_or(VerifyError::Malformed("Authorization"))?;
                let credentials = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| VerifyError::Malformed("Authorization"))?;
                any(&|s| ct_eq(s, &credentials))
            }
            CiPlatform::Jenkins => {
                let token = headers
                    .get(&self.token_header)
                    .map(str::to_string)
                    .or_else(|| query_param(query?, "token"))
                    .ok_or(VerifyError::Missing("Jenkins token (header or ?token=)"))?;
                any(&|s| ct_eq(s, token.as_bytes()))
            }
            CiPlatform::Generic => {
                let ts = headers
                    .get("x-medic-timestamp")
                    .ok_or(VerifyError::Missing("X-Medic-Timestamp"))?;
                self.check_time(ts, now, "X-Medic-Timestamp")?;
                let header = headers
                    .get("x-medic-signature")
                    .ok_or(VerifyError::Missing("X-Medic-Signature"))?;
                let sig = hex_after(header, "sha256=", "X-Medic-Signature")?;
                any(&|s| hmac_ok(s, &[ts.trim().as_bytes(), b".", body], &sig))
            }
        };
        if matched {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn check_time(&self, ts: &str, now: Millis, header: &'static str) -> Result<(), VerifyError> {
        let secs: i64 = ts
            .trim()
            .parse()
            .map_err(|_| VerifyError::Malformed(header))?;
        // `abs_diff`: a timestamp near i64::MIN or i64::MAX must not overflow.
        if (now / 1000).abs_diff(secs) > self.tolerance_secs {
            return Err(VerifyError::Stale(self.tolerance_secs));
        }
        Ok(())
    }

    /// GitLab signing tokens follow Standard Webhooks.
    fn standard_webhooks(
        &self,
        headers: &(impl Headers + ?Sized),
        signature: &str,
        body: &[u8],
        now: Millis,
    ) -> Result<bool, VerifyError> {
        let id = headers
            .get("webhook-id")
            .ok_or(VerifyError::Missing("webhook-id"))?;
        let ts = headers
            .get("webhook-timestamp")
            .ok_or(VerifyError::Missing("webhook-timestamp"))?;
        self.check_time(ts, now, "webhook-timestamp")?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let signatures: Vec<Vec<u8>> = signature
            .split_whitespace()
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| b64.decode(s).ok())
            .collect();
        if signatures.is_empty() {
            return Err(VerifyError::Malformed("webhook-signature"));
        }
        Ok(self.secrets.iter().any(|secret| {
            let text = String::from_utf8_lossy(secret);
            let key = match b64.decode(text.trim().trim_start_matches("whsec_")) {
                Ok(key) => key,
                Err(_) => return false,
            };
            signatures
                .iter()
                .any(|sig| hmac_ok(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body], sig))
        }))
    }
}

/// The value of `name` in a raw query string (no percent-decoding beyond `%XX`).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => match hex_pair(hex) {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Computes the signature a sender would attach (tests, tools, the bench).
pub fn sign_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return String::new();
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn verifier(platform: CiPlatform, secrets: &[&str]) -> Verifier {
        Verifier {
            platform,
            secrets: secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
            tolerance_secs: 300,
            token_header: "X-Medic-Token".into(),
        }
    }

    #[test]
    fn the_published_vectors_verify() {
        let vectors: Vec<Value> =
            serde_json::from_str(include_str!("../../tests/data/webhooks/vectors.json"))
                .expect("vectors");
        assert_eq!(vectors.len(), 5);
        for v in &vectors {
            let body = v["body"].as_str().expect("body").as_bytes();
            let signature = v["signature"].as_str().expect("signature");
            let header = v["header"].as_str().expect("header");
            let result = match v["scheme"].as_str().expect("scheme") {
                "github" => verifier(
                    CiPlatform::GithubActions,
                    &[v["secret"].as_str().expect("secret")],
                )
                .verify(&[(header, signature)][..], None, body, 0),
                "circleci" => verifier(
                    CiPlatform::Circleci,
                    &[v["secret"].as_str().expect("secret")],
                )
                .verify(&[(header, signature)][..], None, body, 0),
                "standard-webhooks" => {
                    let secret = format!("whsec_{}", v["secret_base64"].as_str().expect("secret"));
                    let ts = v["webhook_timestamp"].as_str().expect("ts");
                    let now = ts.parse::<i64>().expect("ts") * 1000;
                    let headers = [
                        ("webhook-id", v["webhook_id"].as_str().expect("id")),
                        ("webhook-timestamp", ts),
                        (header, signature),
                    ];
                    verifier(CiPlatform::GitlabCi, &[&secret]).verify(&headers[..], None, body, now)
                }
                other => panic!("unknown scheme {other}"),
            };
            assert_eq!(result, Ok(()), "{v}");
        }
    }

    #[test]
    fn a_wrong_body_secret_or_format_is_refused() {
        let gh = verifier(CiPlatform::GithubActions, &["It's a Secret to Everybody"]);
        let good = [(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )];
        assert_eq!(
            gh.verify(&good[..], None, b"Hello, World?", 0),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            gh.verify(&[][..], None, b"Hello, World!", 0),
            Err(VerifyError::Missing("X-Hub-Signature-256"))
        );
        assert_eq!(
            gh.verify(&[("x-hub-signature-256", "sha1=abcd")][..], None, b"x", 0),
            Err(VerifyError::Malformed("X-Hub-Signature-256"))
        );
        assert_eq!(
            gh.verify(&[("x-hub-signature-256", "sha256=zz")][..], None, b"x", 0),
            Err(VerifyError::Malformed("X-Hub-Signature-256"))
        );
        let wrong = verifier(CiPlatform::GithubActions, &["another secret"]);
        assert_eq!(
            wrong.verify(&good[..], None, b"Hello, World!", 0),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn any_active_secret_verifies_during_rotation() {
        let both = verifier(
            CiPlatform::GithubActions,
            &["new secret", "It's a Secret to Everybody"],
        );
        let good = [(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )];
        assert_eq!(both.verify(&good[..], None, b"Hello, World!", 0), Ok(()));
    }

    #[test]
    fn a_gitlab_signing_token_is_not_accepted_as_a_plain_token() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let gl = verifier(CiPlatform::GitlabCi, &[secret]);
        assert_eq!(
            gl.verify(&[("X-Gitlab-Token", secret)][..], None, b"{}", 0),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn tokens_and_basic_auth_compare_exactly() {
        let gl = verifier(CiPlatform::GitlabCi, &["s3cret"]);
        assert_eq!(
            gl.verify(&[("X-Gitlab-Token", "s3cret")][..], None, b"{}", 0),
            Ok(())
        );
        assert_eq!(
            gl.verify(&[("X-Gitlab-Token", "s3cre")][..], None, b"{}", 0),
            Err(VerifyError::Mismatch)
        );
        let az = verifier(CiPlatform::AzureDevops, &["medic:hunter2"]);
        assert_eq!(
            az.verify(
                &[("Authorization", "Basic bWVkaWM6aHVudGVyMg==")][..],
                None,
                b"{}",
                0
            ),
            Ok(())
        );
        assert_eq!(
            az.verify(&[("Authorization", "Bearer x")][..], None, b"{}", 0),
            Err(VerifyError::Malformed("Authorization"))
        );
        let jk = verifier(CiPlatform::Jenkins, &["tok en"]);
        assert_eq!(
            jk.verify(&[][..], Some("a=1&token=tok%20en"), b"{}", 0),
            Ok(())
        );
        assert_eq!(
            jk.verify(&[("x-medic-token", "tok en")][..], None, b"{}", 0),
            Ok(())
        );
        assert_eq!(
            jk.verify(&[][..], Some("token=nope"), b"{}", 0),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn generic_signatures_expire_after_the_tolerance() {
        let g = verifier(CiPlatform::Generic, &["k"]);
        let body = br#"{"id":"1"}"#;
        let sig = format!("sha256={}", sign_hex(b"k", &[b"1700000000", b".", body]));
        let headers = [
            ("X-Medic-Timestamp", "1700000000"),
            ("X-Medic-Signature", sig.as_str()),
        ];
        assert_eq!(
            g.verify(&headers[..], None, body, 1_700_000_100_000),
            Ok(())
        );
        assert_eq!(
            g.verify(&headers[..], None, body, 1_700_000_301_000),
            Err(VerifyError::Stale(300))
        );
        assert_eq!(
            g.verify(&headers[..], None, b"{\"id\":\"2\"}", 1_700_000_100_000),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn hex_and_percent_escapes_take_hex_digits_only() {
        // `u8::from_str_radix("+1", 16)` is 1: a signed digit pair must not
        // stand in for "01".
        assert_eq!(decode_hex("0a+1"), None);
        assert_eq!(decode_hex("0A01"), Some(vec![10, 1]));
        let cc = verifier(CiPlatform::Circleci, &["another-secret"]);
        let genuine = "v1=daa220016c8f29a8b214fbfc3671aeec2145cfb1e6790184ffb38b6d0425fa00";
        assert_eq!(
            cc.verify(&[("circleci-signature", genuine)][..], None, b"lalala", 0),
            Ok(())
        );
        let signed_digit = genuine.replace("daa22001", "daa220+1");
        assert_eq!(
            cc.verify(
                &[("circleci-signature", signed_digit.as_str())][..],
                None,
                b"lalala",
                0
            ),
            Err(VerifyError::Malformed("circleci-signature"))
        );
        assert_eq!(percent_decode("a%+1b%41"), "a% 1bA");
    }

    #[test]
    fn timestamps_at_the_ends_of_the_range_are_stale_not_an_overflow() {
        let g = verifier(CiPlatform::Generic, &["k"]);
        for ts in [
            "-9223372036854775808",
            "-9223372036854775807",
            "9223372036854775807",
        ] {
            let headers = [
                ("X-Medic-Timestamp", ts),
                ("X-Medic-Signature", "sha256=00"),
            ];
            for now in [1_700_000_000_000, i64::MAX, i64::MIN] {
                assert_eq!(
                    g.verify(&headers[..], None, b"{}", now),
                    Err(VerifyError::Stale(300)),
                    "{ts} at {now}"
                );
            }
        }
        let gl = verifier(
            CiPlatform::GitlabCi,
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        );
        let headers = [
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "-9223372036854775808"),
            ("webhook-signature", "v1,AAAA"),
        ];
        assert_eq!(
            gl.verify(&headers[..], None, b"{}", 1_700_000_000_000),
            Err(VerifyError::Stale(300))
        );
    }
}
