//! Check the HMAC signature GitHub, Gitea and Forgejo put on a webhook.
//!
//! Whoever can reach wharf's webhook URL can post a body; only someone who
//! knows the shared secret can sign it. The signature is HMAC-SHA256 over the
//! *raw* body bytes, so the caller must verify before (and independently of)
//! parsing: re-serialised JSON would not match.
//!
//! Why it looks like this:
//!
//! * **Three answers, not two.** Registries such as distribution, Harbor and
//!   Quay sign nothing (they authenticate with a static header instead), so
//!   "no signature header" ([`SignatureCheck::Missing`]) must stay apart from
//!   "a signature that is wrong" ([`SignatureCheck::Invalid`]). The caller
//!   decides whether Missing is acceptable for a given endpoint; Invalid never is.
//! * **Constant time.** The comparison uses `hmac`'s `verify_slice`, which
//!   compares with `subtle`, so response timing does not leak how many
//!   leading bytes of a forged signature were right.
//! * **Several headers.** Gitea sends both `X-Gitea-Signature` and
//!   `X-Hub-Signature-256`, Forgejo also `X-Forgejo-Signature`. Any one that
//!   verifies is enough: each is a full HMAC of the same body under the same
//!   secret, so a correct one can only come from someone holding the secret.
//! * **SHA-1 is not accepted.** GitHub's legacy `X-Hub-Signature` (HMAC-SHA1)
//!   is not looked at; a request carrying only that one is `Missing`.
//! * The secret is used as given. An empty secret is a valid HMAC key that
//!   anyone can sign with, so refusing an empty secret is the configuration's
//!   job, not this function's.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Outcome of [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// At least one signature header matches HMAC-SHA256(secret, body).
    Valid,
    /// Signature headers are present, but none matches (or none is hex).
    Invalid,
    /// No signature header was sent at all.
    Missing,
}

/// `X-Hub-Signature-256` carries `sha256=<hex>` (GitHub, Gitea, Forgejo).
const HUB_SIGNATURE_256: &str = "x-hub-signature-256";
/// These carry the bare hex digest.
const BARE_HEX_HEADERS: [&str; 2] = ["x-gitea-signature", "x-forgejo-signature"];

/// Verify `X-Hub-Signature-256: sha256=<hex>` (GitHub, Gitea, Forgejo) or `X-Gitea-Signature: <hex>` (also `X-Forgejo-Signature`) as HMAC-SHA256(secret, raw body), constant-time (use hmac's verify_slice / subtle). If any present header verifies → Valid; if headers are present but none verifies (or malformed hex) → Invalid; none present → Missing.
///
/// Header names match case-insensitively; values are trimmed; hex may be
/// upper or lower case. Every present header is checked, even after a match,
/// so the time taken does not depend on which header was the right one.
pub fn verify(secret: &[u8], headers: &[(&str, &str)], body: &[u8]) -> SignatureCheck {
    let mut present = false;
    let mut valid = false;
    for (name, value) in headers {
        let name = name.trim();
        let value = value.trim();
        let hex_digest = if name.eq_ignore_ascii_case(HUB_SIGNATURE_256) {
            // The prefix names the algorithm; anything else is not ours to accept.
            Some(strip_prefix_ignore_case(value, "sha256=").unwrap_or(""))
        } else if BARE_HEX_HEADERS
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            Some(value)
        } else {
            None
        };
        if let Some(hex_digest) = hex_digest {
            present = true;
            valid |= matches(secret, body, hex_digest);
        }
    }
    match (present, valid) {
        (_, true) => SignatureCheck::Valid,
        (true, false) => SignatureCheck::Invalid,
        (false, false) => SignatureCheck::Missing,
    }
}

/// Whether `hex_digest` is the HMAC-SHA256 of `body` under `secret`.
/// Malformed hex or a wrong length simply does not match.
fn matches(secret: &[u8], body: &[u8], hex_digest: &str) -> bool {
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    // HMAC accepts keys of any length, so this can not fail in practice;
    // treating a failure as "no match" keeps the function total.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// `value` without an ASCII `prefix`, compared case-insensitively.
fn strip_prefix_ignore_case<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    let head = value.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        value.get(prefix.len()..)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from GitHub's "Validating webhook deliveries".
    const GH_SECRET: &[u8] = b"It's a Secret to Everybody";
    const GH_BODY: &[u8] = b"Hello, World!";
    const GH_HEX: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn github_docs_test_vector() {
        assert_eq!(sign(GH_SECRET, GH_BODY), GH_HEX);
        let header = format!("sha256={GH_HEX}");
        assert_eq!(
            verify(GH_SECRET, &[("X-Hub-Signature-256", &header)], GH_BODY),
            SignatureCheck::Valid
        );
    }

    #[test]
    fn each_header_valid_invalid_malformed() {
        let body = br#"{"action":"created"}"#;
        let secret = b"s3cret";
        let good = sign(secret, body);
        let other = sign(b"wrong secret", body);
        let cases: [(&str, String, String); 3] = [
            (
                "X-Hub-Signature-256",
                format!("sha256={good}"),
                format!("sha256={other}"),
            ),
            ("X-Gitea-Signature", good.clone(), other.clone()),
            ("X-Forgejo-Signature", good.clone(), other.clone()),
        ];
        for (name, valid, invalid) in &cases {
            let check = |value: &str| verify(secret, &[(name, value)], body);
            assert_eq!(check(valid), SignatureCheck::Valid, "{name}");
            assert_eq!(
                check(&valid.to_uppercase()),
                SignatureCheck::Valid,
                "{name} uppercase"
            );
            assert_eq!(
                check(&format!("  {valid} ")),
                SignatureCheck::Valid,
                "{name} padded"
            );
            assert_eq!(check(invalid), SignatureCheck::Invalid, "{name}");
            for malformed in [
                "",
                "zz",
                "sha256=",
                "sha256=xyz",
                "abc",
                &good[..62],
                &format!("{good}00"),
                "é",
            ] {
                assert_eq!(
                    check(malformed),
                    SignatureCheck::Invalid,
                    "{name}: {malformed:?}"
                );
            }
            // Same signature, different body.
            assert_eq!(
                verify(secret, &[(name, valid)], b"{}"),
                SignatureCheck::Invalid,
                "{name}"
            );
            // Names are case-insensitive.
            let lower = name.to_ascii_lowercase();
            assert_eq!(
                verify(secret, &[(&lower, valid)], body),
                SignatureCheck::Valid,
                "{lower}"
            );
        }
    }

    #[test]
    fn hub_header_needs_the_sha256_prefix() {
        let body = b"x";
        let good = sign(b"k", body);
        for value in [
            good.clone(),
            format!("sha1={good}"),
            format!("sha256 {good}"),
        ] {
            assert_eq!(
                verify(b"k", &[("X-Hub-Signature-256", &value)], body),
                SignatureCheck::Invalid,
                "{value}"
            );
        }
        let upper_prefix = format!("SHA256={good}");
        assert_eq!(
            verify(b"k", &[("X-Hub-Signature-256", &upper_prefix)], body),
            SignatureCheck::Valid
        );
    }

    #[test]
    fn missing_when_no_signature_header() {
        assert_eq!(verify(b"k", &[], b"x"), SignatureCheck::Missing);
        let unrelated = [
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer x"),
            // The legacy SHA-1 header does not count.
            (
                "X-Hub-Signature",
                "sha1=0000000000000000000000000000000000000000",
            ),
        ];
        assert_eq!(verify(b"k", &unrelated, b"x"), SignatureCheck::Missing);
    }

    #[test]
    fn any_valid_header_wins_over_invalid_ones() {
        let body = b"payload";
        let good = sign(b"k", body);
        let hub = format!("sha256={good}");
        let headers = [
            ("X-Gitea-Signature", "deadbeef"),
            ("X-Hub-Signature-256", hub.as_str()),
        ];
        assert_eq!(verify(b"k", &headers, body), SignatureCheck::Valid);
        let headers = [
            ("X-Gitea-Signature", "deadbeef"),
            ("X-Hub-Signature-256", "sha256=00"),
        ];
        assert_eq!(verify(b"k", &headers, body), SignatureCheck::Invalid);
    }

    #[test]
    fn empty_body_and_empty_secret_are_just_inputs() {
        let good = sign(b"", b"");
        assert_eq!(
            verify(b"", &[("X-Gitea-Signature", &good)], b""),
            SignatureCheck::Valid
        );
        assert_eq!(
            verify(b"k", &[("X-Gitea-Signature", &good)], b""),
            SignatureCheck::Invalid
        );
    }

    #[test]
    fn odd_values_never_panic() {
        let values = [
            "",
            "=",
            "sha256",
            "sha25é=",
            "é",
            "ééééééé",
            "sha256=é",
            "\u{0}",
            &"f".repeat(10_000),
        ];
        for v in values {
            for n in [
                "X-Hub-Signature-256",
                "X-Gitea-Signature",
                "x-forgejo-signature",
            ] {
                assert_eq!(
                    verify(b"k", &[(n, v)], b"b"),
                    SignatureCheck::Invalid,
                    "{n}: {v:?}"
                );
            }
        }
    }
}
