//! `config::Config::from_toml`: the configuration loader.
//!
//! Properties:
//! * an error names the file it was given and a place inside the text (1-based line and
//!   column that exist), with a message;
//! * an accepted configuration holds what validation promises: a one-segment lower-case
//!   prefix that routes to the gate, an absolute admin socket, a key file outside the
//!   store, non-zero durations, 1 ≤ lock_after < hard_lock_after ≤ 100, skew ≤ 2, a rate
//!   ≥ 1, at least one site, unique site names, lower-case hosts that no two sites share,
//!   an http upstream that makes request URIs, and first-factor paths that pass
//!   `target::check_path`.
//!
//! The loader opens the TLS files it is given. So that the fuzzer cannot make it open a
//! FIFO (blocks) or a device with side effects (a watchdog), inputs whose `[server.tls]`
//! paths name an existing file that is neither a regular file nor a directory are skipped.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mfa_gate::config::{Config, FirstFactor};
use mfa_gate::target::{check_path, route, Route};

fn unsafe_to_open(path: &str) -> bool {
    match std::fs::metadata(path) {
        Ok(m) => !(m.is_file() || m.is_dir()),
        Err(_) => false,
    }
}

/// Whether the TLS paths, as the same TOML parser reads them, are safe to open.
fn tls_paths_safe(text: &str) -> bool {
    let Ok(table) = text.parse::<toml::Table>() else {
        // Not TOML: the loader fails before it looks at any file.
        return true;
    };
    let Some(tls) = table
        .get("server")
        .and_then(|s| s.get("tls"))
        .and_then(toml::Value::as_table)
    else {
        return true;
    };
    for key in ["cert", "key"] {
        if let Some(p) = tls.get(key).and_then(toml::Value::as_str) {
            if unsafe_to_open(p) {
                return false;
            }
        }
    }
    true
}

fn path_part(p: &str) -> &str {
    p.split_once('?').map_or(p, |(path, _)| path)
}

fn check_ok(c: &Config) {
    let prefix = &c.server.prefix;
    assert!(prefix.len() >= 3 && prefix.starts_with('/') && prefix.ends_with('/'));
    assert_eq!(prefix.matches('/').count(), 2, "prefix {prefix:?}");
    assert_eq!(*prefix, prefix.to_ascii_lowercase());
    assert_eq!(check_path(prefix), Ok(()), "prefix {prefix:?}");
    assert_eq!(
        route(prefix, prefix),
        Ok(Route::Gate("")),
        "prefix {prefix:?}"
    );
    let bare = prefix.trim_end_matches('/');
    assert_eq!(
        route(bare, prefix),
        Ok(Route::Gate("")),
        "prefix {prefix:?}"
    );
    assert!(c.server.admin_socket.is_absolute());
    if let Some(tls) = &c.server.tls {
        assert!(std::fs::File::open(&tls.cert).is_ok() && std::fs::File::open(&tls.key).is_ok());
    }
    assert!(!c.server.header_timeout.is_zero());

    assert!(!c.store.path.as_os_str().is_empty());
    assert!(
        !c.store.key_file.starts_with(&c.store.path)
            || c.store.key_file == c.store.path.with_extension("key")
    );
    assert!(c.totp.skew_steps <= 2);
    assert!(!c.totp.issuer.is_empty() && !c.totp.issuer.contains(':'));
    assert!(!c.session.absolute.is_zero() && !c.session.idle.is_zero());
    assert!(!c.session.pending.is_zero());
    assert!(c.throttle.per_ip_per_minute >= 1);
    let lock = &c.throttle.lock;
    assert!(1 <= lock.lock_after && lock.lock_after < lock.hard_lock_after);
    assert!(lock.hard_lock_after <= 100);

    assert!(!c.sites.is_empty());
    for (i, site) in c.sites.iter().enumerate() {
        assert!(!site.name.is_empty() && !site.realm.is_empty());
        assert!(!site.hosts.is_empty());
        for host in &site.hosts {
            assert!(!host.is_empty());
            assert_eq!(*host, host.to_ascii_lowercase());
        }
        for other in &c.sites[i + 1..] {
            assert_ne!(site.name, other.name, "two sites share a name");
            for host in &site.hosts {
                assert!(!other.hosts.contains(host), "two sites share {host:?}");
            }
        }
        assert_eq!(site.upstream.scheme, http::uri::Scheme::HTTP);
        let uri = site.upstream.uri_for("/a/b?c=d");
        assert!(uri.is_ok(), "upstream {:?}: {uri:?}", site.upstream);
        assert!(!site.upstream_timeout.is_zero());
        match &site.first_factor {
            FirstFactor::Basic(b) => {
                let probe_path = &b.probe_path;
                assert_eq!(check_path(path_part(probe_path)), Ok(()), "{probe_path:?}");
            }
            FirstFactor::Form(f) => {
                assert!(!f.login_path.contains('?'));
                assert_eq!(check_path(&f.login_path), Ok(()), "{:?}", f.login_path);
                assert_eq!(check_path(path_part(&f.login_page)), Ok(()));
                if let Some(l) = &f.logout_path {
                    assert!(!l.contains('?'));
                    assert_eq!(check_path(l), Ok(()), "{l:?}");
                }
                assert!(!f.session_cookie.is_empty());
                assert!(f
                    .session_cookie
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)));
                assert!(!f.success_status.is_empty());
                assert!(f.success_status.iter().all(|s| (200..400).contains(s)));
                for p in &f.public {
                    let base = p.strip_suffix('*').unwrap_or(p);
                    assert_eq!(check_path(base), Ok(()), "public {p:?}");
                    assert!(!base.contains('*') && !base.contains('?'));
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if !tls_paths_safe(&text) {
        return;
    }
    let file = Path::new("fuzz.toml");
    match Config::from_toml(file, &text) {
        Ok(c) => check_ok(&c),
        Err(e) => {
            assert_eq!(e.file, file);
            assert!(!e.message.is_empty());
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(
                e.line >= 1 && e.line <= lines.len(),
                "line {} of {}: {e}",
                e.line,
                lines.len()
            );
            let width = lines[e.line - 1].chars().count();
            assert!(
                e.column >= 1 && e.column <= width + 1,
                "column {} of {width}: {e}",
                e.column
            );
        }
    }
});
