//! The `verify_signature` target: webhook signature verification against an independent check.

use super::*;

/// Header names the fuzzer can pick with one byte.
pub(super) const HEADER_NAMES: &[&str] = &[
    "X-Hub-Signature-256",
    "circleci-signature",
    "X-Gitlab-Token",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "Authorization",
    "X-Medic-Token",
    "X-Medic-Timestamp",
    "X-Medic-Signature",
];

/// One request to verify, as read from the fuzzer's bytes.
#[derive(Debug, Clone)]
pub(super) struct Request {
    verifier: Verifier,
    headers: Vec<(String, String)>,
    query: Option<String>,
    body: Vec<u8>,
    now: Millis,
}

impl Request {
    pub(super) fn verify(&self) -> Result<(), VerifyError> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.verifier
            .verify(&headers[..], self.query.as_deref(), &self.body, self.now)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request as an HTTP server sees it, when every header is one HTTP allows.
    fn header_map(&self) -> Option<axum::http::HeaderMap> {
        let mut map = axum::http::HeaderMap::new();
        for (name, value) in &self.headers {
            let name = axum::http::HeaderName::from_bytes(name.as_bytes()).ok()?;
            let value = axum::http::HeaderValue::from_str(value)
                .ok()
                .filter(|v| v.to_str().is_ok())?;
            map.append(name, value);
        }
        Some(map)
    }
}

/// Seconds of `now`, as the verifier reads its clock.
fn now_secs(now: Millis) -> i64 {
    now / 1000
}

/// Whether `ts` (a timestamp header) is within the tolerance of `now`.
fn fresh(ts: &str, now: Millis, tolerance: u64) -> bool {
    ts.trim().parse::<i64>().is_ok_and(|secs| {
        (i128::from(now_secs(now)) - i128::from(secs)).unsigned_abs() <= u128::from(tolerance)
    })
}

/// An independent, plain (not constant-time) statement of when a request is
/// the sender's: used to check that whatever the verifier accepts is.
fn genuine(r: &Request) -> bool {
    let secrets = &r.verifier.secrets;
    let hmac_in = |header: &str, secret: &[u8], parts: &[&[u8]]| {
        let expected = sign_hex(secret, parts);
        !expected.is_empty() && header.to_ascii_lowercase().contains(&expected)
    };
    match r.verifier.platform {
        CiPlatform::GithubActions => r
            .header("x-hub-signature-256")
            .is_some_and(|h| secrets.iter().any(|s| hmac_in(h, s, &[&r.body]))),
        CiPlatform::Circleci => r
            .header("circleci-signature")
            .is_some_and(|h| secrets.iter().any(|s| hmac_in(h, s, &[&r.body]))),
        CiPlatform::GitlabCi => match r.header("webhook-signature") {
            Some(signature) => {
                let (Some(id), Some(ts)) = (r.header("webhook-id"), r.header("webhook-timestamp"))
                else {
                    return false;
                };
                let b64 = base64::engine::general_purpose::STANDARD;
                fresh(ts, r.now, r.verifier.tolerance_secs)
                    && secrets.iter().any(|secret| {
                        let text = String::from_utf8_lossy(secret);
                        let Ok(key) = b64.decode(text.trim().trim_start_matches("whsec_")) else {
                            return false;
                        };
                        let hex =
                            sign_hex(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", &r.body]);
                        let Some(raw) = decode_hex(&hex) else {
                            return false;
                        };
                        signature.contains(&b64.encode(raw))
                    })
            }
            // A `whsec_` signing token never passes as a plain token.
            None => r.header("x-gitlab-token").is_some_and(|token| {
                secrets
                    .iter()
                    .any(|s| !s.starts_with(b"whsec_") && s == token.as_bytes())
            }),
        },
        CiPlatform::AzureDevops => r.header("authorization").is_some_and(|h| {
            let b64 = base64::engine::general_purpose::STANDARD;
            secrets.iter().any(|s| h.contains(&b64.encode(s)))
        }),
        CiPlatform::Jenkins => match r.header(&r.verifier.token_header) {
            Some(token) => secrets.iter().any(|s| s == token.as_bytes()),
            None => r.query.as_deref().is_some_and(|q| q.contains("token=")),
        },
        CiPlatform::Generic => {
            let (Some(ts), Some(sig)) =
                (r.header("x-medic-timestamp"), r.header("x-medic-signature"))
            else {
                return false;
            };
            fresh(ts, r.now, r.verifier.tolerance_secs)
                && secrets
                    .iter()
                    .any(|s| hmac_in(sig, s, &[ts.trim().as_bytes(), b".", &r.body]))
        }
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether `value` can travel as an HTTP header value unchanged.
fn header_safe(value: &str) -> bool {
    value.trim() == value
        && axum::http::HeaderValue::from_str(value).is_ok_and(|v| v.to_str().is_ok())
}

/// Replaces the request's credentials by the ones a sender holding secret
/// `secret_index` would attach; `None` when that secret cannot be sent as a
/// header (a token with line breaks, say).
fn sign(r: &mut Request, secret_index: usize, flavour: u8, skew: i64) -> Option<()> {
    let index = secret_index % r.verifier.secrets.len().max(1);
    let secret = r.verifier.secrets.get(index)?.clone();
    let text = String::from_utf8(secret.clone()).ok()?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let tolerance = i64::try_from(r.verifier.tolerance_secs).unwrap_or(i64::MAX);
    let ts = now_secs(r.now)
        .checked_add(skew.checked_rem(tolerance.checked_add(1)?)?)?
        .to_string();
    let mut headers = Vec::new();
    match r.verifier.platform {
        CiPlatform::GithubActions => headers.push((
            "X-Hub-Signature-256".to_string(),
            format!("sha256={}", sign_hex(&secret, &[&r.body])),
        )),
        CiPlatform::Circleci => headers.push((
            "circleci-signature".to_string(),
            format!("v1={}", sign_hex(&secret, &[&r.body])),
        )),
        CiPlatform::GitlabCi if flavour.is_multiple_of(2) => {
            if !header_safe(&text) {
                return None;
            }
            headers.push(("X-Gitlab-Token".to_string(), text));
        }
        CiPlatform::GitlabCi => {
            // A signing token: the secret is `whsec_` and the key in base64.
            let key = secret;
            r.verifier.secrets[index] = format!("whsec_{}", b64.encode(&key)).into_bytes();
            let id = format!("msg_{flavour}");
            let raw = decode_hex(&sign_hex(
                &key,
                &[id.as_bytes(), b".", ts.as_bytes(), b".", &r.body],
            ))?;
            headers.push(("webhook-id".to_string(), id));
            headers.push(("webhook-timestamp".to_string(), ts));
            headers.push((
                "webhook-signature".to_string(),
                format!("v1,{}", b64.encode(raw)),
            ));
        }
        CiPlatform::AzureDevops => headers.push((
            "Authorization".to_string(),
            format!("Basic {}", b64.encode(&secret)),
        )),
        CiPlatform::Jenkins if flavour.is_multiple_of(2) => {
            if !header_safe(&text) {
                return None;
            }
            let name = r.verifier.token_header.clone();
            headers.push((name, text));
        }
        CiPlatform::Jenkins => {
            let encoded: String = text
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            r.query = Some(format!("a=1&token={encoded}&b=2"));
        }
        CiPlatform::Generic => {
            headers.push((
                "X-Medic-Signature".to_string(),
                format!(
                    "sha256={}",
                    sign_hex(&secret, &[ts.as_bytes(), b".", &r.body])
                ),
            ));
            headers.push(("X-Medic-Timestamp".to_string(), ts));
        }
    }
    r.headers = headers;
    Some(())
}

/// `verify_signature`: one request to one platform's endpoint, laid out as
/// `platform` (byte, [`PLATFORMS`]), `flags` (byte: bits 0–1 the number of
/// secrets, bit 2 "sign it as the sender would", bit 3 "has a query
/// string", bits 4–7 which secret signs and how), tolerance in seconds
/// (u16 LE), now in milliseconds (i64 LE), clock skew of the signer in
/// seconds (i64 LE), the secrets, the Jenkins token header name (empty for
/// `X-Medic-Token`), a header count byte and the headers (a name byte that
/// picks a known header, or 255 for a name chunk, then a value chunk), the
/// query chunk when flagged, and the body (the rest). A chunk is a length
/// byte and that many bytes.
///
/// Properties: verifying never panics; it gives the same verdict on the
/// headers as an HTTP server parses them; whatever it accepts is signed with
/// (or carries) a configured secret, and, for timestamped schemes, is fresh;
/// a request signed as the platform signs is accepted, and is refused under
/// another secret or, for signed bodies, with one byte more of body.
pub fn verify_signature(data: &[u8]) {
    let (request, sign) = read_request(data);
    match sign {
        Some(signed) => {
            if let Some(signed) = signed {
                check_signed(&signed);
            }
        }
        None => check_verdict(&request),
    }
}

/// The request an input describes, and, when the input asks for it, the
/// request signed as the sender would sign it (`Some(None)` when the chosen
/// secret cannot be sent that way).
pub(super) fn read_request(data: &[u8]) -> (Request, Option<Option<Request>>) {
    let mut bytes = Bytes { data };
    let platform = PLATFORMS[usize::from(bytes.byte()) % PLATFORMS.len()];
    let flags = bytes.byte();
    let tolerance_secs = u64::from(bytes.u16());
    let now = bytes.i64();
    let skew = bytes.i64();
    // Configuration refuses empty secrets, so the verifier never gets one.
    let secrets: Vec<Vec<u8>> = (0..flags & 3)
        .map(|_| bytes.text().into_bytes())
        .filter(|s| !s.is_empty())
        .collect();
    let token_header = Some(bytes.text())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "X-Medic-Token".to_string());
    let count = bytes.byte() % 9;
    let mut headers = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let pick = usize::from(bytes.byte());
        let name = match HEADER_NAMES.get(pick) {
            Some(name) => (*name).to_string(),
            None => bytes.text(),
        };
        headers.push((name, bytes.text()));
    }
    let query = (flags & 8 != 0).then(|| bytes.text());
    let body = bytes.rest().to_vec();
    let request = Request {
        verifier: Verifier {
            platform,
            secrets,
            tolerance_secs,
            token_header,
        },
        headers,
        query,
        body,
        now,
    };
    let signed = (flags & 4 != 0 && !request.verifier.secrets.is_empty()).then(|| {
        let mut signed = request.clone();
        sign(&mut signed, usize::from(flags >> 4), flags >> 6, skew).map(|()| signed)
    });
    (request, signed)
}

/// Whatever the verifier says of an arbitrary request, it says the same of
/// the request as an HTTP server parses it, and it accepts only genuine ones.
fn check_verdict(request: &Request) {
    let verdict = request.verify();
    // An HTTP server refuses header values that are not visible ASCII, and
    // the verifier sees those as missing there: compare only where it can't.
    if let Some(map) = request.header_map() {
        let over_http =
            request
                .verifier
                .verify(&map, request.query.as_deref(), &request.body, request.now);
        assert_eq!(verdict, over_http, "headers as HTTP parses them");
    }
    if verdict.is_ok() {
        assert!(
            genuine(request),
            "accepted a request no configured secret signed: {request:?}"
        );
    }
}

/// A correctly signed request verifies, and stops verifying when the secret
/// or the signed body changes.
fn check_signed(request: &Request) {
    assert_eq!(request.verify(), Ok(()), "a signed request: {request:?}");
    if let Some(map) = request.header_map() {
        assert_eq!(
            request
                .verifier
                .verify(&map, request.query.as_deref(), &request.body, request.now),
            Ok(()),
            "a signed request over HTTP: {request:?}"
        );
    }
    // Secrets derived from the real ones, none of them equal to any real
    // one (appending a byte is not enough: rotation may list `a` and `a!`).
    let mut other = request.clone();
    other.verifier.secrets = request
        .verifier
        .secrets
        .iter()
        .map(|s| sign_hex(b"another secret", &[s]).into_bytes())
        .collect();
    assert_eq!(
        other.verify(),
        Err(VerifyError::Mismatch),
        "verified under other secrets: {request:?}"
    );
    if matches!(
        request.verifier.platform,
        CiPlatform::GithubActions | CiPlatform::Circleci | CiPlatform::Generic
    ) || request.header("webhook-signature").is_some()
    {
        let mut tampered = request.clone();
        tampered.body.push(b' ');
        assert_eq!(
            tampered.verify(),
            Err(VerifyError::Mismatch),
            "verified a changed body: {request:?}"
        );
    }
}
