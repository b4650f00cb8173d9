//! Prints the models' reading of each body, for `scripts/login-models-check.sh`.
//!
//! Reads one body per line on stdin, hex-encoded; writes one line per body:
//! `php_post <TAB> php_parse_str <TAB> parse_qsl <TAB> django_post` in the text forms of
//! `models::{php_text, qsl_text, django_text}`.
//!
//! Built with plain rustc (the models use only std):
//! `rustc --edition 2021 -O fuzz/tools/login_models.rs -o login_models`.
#[path = "../src/models.rs"]
#[allow(dead_code)]
mod models;

use std::io::{BufRead, Write};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for line in stdin.lock().lines() {
        let body = unhex(line.expect("stdin").trim());
        let qsl = models::parse_qsl(&models::wsgi_text(&body), Some(models::DJANGO_MAX_FIELDS));
        writeln!(
            out,
            "{}\t{}\t{}\t{}",
            models::php_text(&models::php_post(&body)),
            models::php_text(&models::php_parse_str(&body)),
            models::qsl_text(&qsl),
            models::django_text(&models::wsgi_post(&body)),
        )
        .expect("stdout");
    }
}
