//! `totp::parse_code` and `recovery::normalize`: what the user types as a second factor.
//!
//! Properties:
//! * `parse_code` accepts exactly six ASCII digits and returns them unchanged;
//! * `normalize` accepts at most 32 bytes of input, and then exactly what is ten
//!   characters of the recovery alphabet once '-' and ' ' are dropped and ASCII letters
//!   lowered; its answer is that string, and it is a fixed point, also when typed back
//!   in display form (upper case, "abcde-fghij").
#![no_main]

use libfuzzer_sys::fuzz_target;
use mfa_gate::recovery::normalize;
use mfa_gate::totp::parse_code;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();

    let six_digits = text.len() == 6 && text.bytes().all(|b| b.is_ascii_digit());
    match parse_code(text) {
        Ok(code) => {
            assert!(six_digits, "accepted {text:?}");
            assert_eq!(code, text);
        }
        Err(_) => assert!(!six_digits, "refused {text:?}"),
    }

    let reference = if text.len() > 32 {
        None
    } else {
        let code: String = text
            .chars()
            .filter(|c| *c != '-' && *c != ' ')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        (code.len() == 10 && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
    };
    let got = normalize(text);
    assert_eq!(got, reference, "normalize({text:?})");
    if let Some(code) = got {
        assert_eq!(normalize(&code).as_ref(), Some(&code), "not a fixed point");
        let display = format!("{}-{}", &code[..5], &code[5..]).to_uppercase();
        assert_eq!(normalize(&display).as_ref(), Some(&code), "display form");
        // No six-digit TOTP code is also a recovery code.
        assert!(parse_code(&code).is_err());
    }
});
