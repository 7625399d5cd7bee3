//! `wharf::webhook::signature::verify` on any secret, body and header value.
//!
//! Input layout: `[name selector, mode, secret length k, secret (k bytes), body...]`.
//! The header name comes from `NAMES`; `mode` decides its value:
//! 0 the right signature, 1 the right one in upper case (`SHA256=` + upper hex),
//! 2 the right one with whitespace around it and a second, forged header,
//! 3 one bit flipped, 4 truncated by one hex digit, 5 an empty value,
//! 6+ the first line of the body (lossy UTF-8), i.e. a fuzzed value.
//!
//! Beyond "no panic", a crash is a wrong answer: Valid for a forged or fuzzed
//! value, anything but Valid for a right one, anything but Missing when no
//! signature header is present (including the legacy SHA-1 `X-Hub-Signature`).
#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use wharf::webhook::signature::{verify, SignatureCheck};

/// (header name, takes a `sha256=` prefix, is a signature header wharf reads)
const NAMES: &[(&str, bool, bool)] = &[
    ("X-Hub-Signature-256", true, true),
    ("x-gitea-signature", false, true),
    ("X-Forgejo-Signature", false, true),
    (" X-HUB-SIGNATURE-256 ", true, true),
    ("X-Hub-Signature", false, false),
    ("X-Gitea-Event", false, false),
];

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fuzz_target!(|data: &[u8]| {
    let [selector, mode, secret_len, rest @ ..] = data else {
        return;
    };
    let split = usize::from(*secret_len).min(rest.len());
    let (secret, body) = rest.split_at(split);
    let (name, prefixed, is_signature) = NAMES[usize::from(*selector) % NAMES.len()];
    let prefix = if prefixed { "sha256=" } else { "" };
    let right = sign(secret, body);

    let mut forged = right.clone().into_bytes();
    forged[0] = if forged[0] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).expect("hex is ASCII");

    let mut headers: Vec<(&str, String)> = Vec::new();
    let mut expect_valid = false;
    match mode % 7 {
        0 => {
            headers.push((name, format!("{prefix}{right}")));
            expect_valid = true;
        }
        1 => {
            headers.push((
                name,
                format!("{}{}", prefix.to_uppercase(), right.to_uppercase()),
            ));
            expect_valid = true;
        }
        2 => {
            headers.push(("X-Gitea-Signature", forged.clone()));
            headers.push((name, format!(" \t{prefix}{right} ")));
            expect_valid = true;
        }
        3 => headers.push((name, format!("{prefix}{forged}"))),
        4 => headers.push((name, format!("{prefix}{}", &right[1..]))),
        5 => headers.push((name, String::new())),
        _ => {
            let line = body.split(|&b| b == b'\n').next().unwrap_or(&[]);
            headers.push((name, String::from_utf8_lossy(line).into_owned()));
        }
    }
    let borrowed: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let got = verify(secret, &borrowed, body);

    let any_signature_header = borrowed.iter().any(|(n, _)| {
        let n = n.trim();
        NAMES
            .iter()
            .any(|(known, _, sig)| *sig && known.trim().eq_ignore_ascii_case(n))
    });
    let expected_without_fuzz = if expect_valid && is_signature {
        SignatureCheck::Valid
    } else if any_signature_header {
        SignatureCheck::Invalid
    } else {
        SignatureCheck::Missing
    };
    if mode % 7 >= 6 && is_signature {
        // A fuzzed value can not be the right HMAC unless it is built from
        // it (sha256=<right> spelled some other way); accept Valid only then.
        let value = borrowed[0].1.trim();
        let hex = value
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("sha256="))
            .map_or(value, |_| &value[7..]);
        if got == SignatureCheck::Valid {
            assert!(
                hex.eq_ignore_ascii_case(&right),
                "fuzzed value {value:?} verified"
            );
        } else {
            assert_eq!(got, SignatureCheck::Invalid, "value {value:?}");
        }
    } else {
        assert_eq!(
            got,
            expected_without_fuzz,
            "mode {} header {name:?}",
            mode % 7
        );
    }
});
