//! Micro-benchmarks of the per-request session check and of the login's last step.
//!
//! - `session_check/remembered`: what every request of a signed-in person costs the gate
//!   before forwarding — the cookie read, the remembered decryption and binding, the
//!   times, the user's state and the revocation set in memory.
//! - `session_check/first_sight`: the same for a cookie not seen before (AES-GCM, JSON,
//!   the binding's keyed hash).
//! - `verify_and_issue`: the CPU part of a login's verification — the code checked
//!   (`totp::check`), a session made and sealed into its cookie (the store's durable
//!   write, an fsync, is not in it).
//! - `allocations`: prints how many heap allocations one session check and one request's
//!   header rewrite make (a counting allocator).
//!
//! Run: `cargo bench --bench hot_path` (`-- --quick` for a short run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{HeaderValue, AUTHORIZATION, COOKIE};
use http::HeaderMap;
use mfa_gate::clock::ManualClock;
use mfa_gate::config::Config;
use mfa_gate::cookies::ConsoleCookie;
use mfa_gate::identity::binding;
use mfa_gate::session::Session;
use mfa_gate::state::{Ctx, Gate};
use mfa_gate::store::seal::{self, Purpose};
use mfa_gate::store::UserOp;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

/// Counts allocations, to report allocations per request (`stats_alloc`, no unsafe here).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const NOW: u64 = 1_767_225_610;
const SECRET: &[u8; 20] = b"12345678901234567890";

struct World {
    gate: Gate,
    ctx: Ctx,
    headers: HeaderMap,
    _dir: tempfile::TempDir,
}

fn world(rt: &tokio::runtime::Runtime) -> World {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\nkey_file = \"{}\"\n\
         [[site]]\nname = \"console\"\nhosts = [\"127.0.0.1\"]\nupstream = \"http://127.0.0.1:9\"\n\
         first_factor = {{ mode = \"basic\" }}\n",
        dir.path().join("store").display(),
        dir.path().join("master.key").display(),
    );
    let config = Config::from_toml(Path::new("bench.toml"), &text).unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let gate = rt
        .block_on(mfa_gate::server::open_gate(config, clock, false))
        .unwrap();
    let sealed = seal::seal(&gate.keys.seal, Purpose::Active, "console", "alice", SECRET).unwrap();
    let op = UserOp::Activate {
        secret: &sealed,
        step: 1,
        recovery: &[],
        epoch: 0,
    };
    rt.block_on(gate.store.apply("console", "alice", op, NOW))
        .unwrap();
    let bind = binding(&gate.keys.binding, "console", "alice", b"pw-a");
    let s = Session::new("console", "console", "alice", &bind, 0, NOW, 43_200).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        COOKIE,
        HeaderValue::from_str(&cookie_pair(&gate, &s)).unwrap(),
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("alice:pw-a");
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {basic}")).unwrap(),
    );
    headers.insert("host", HeaderValue::from_static("127.0.0.1"));
    headers.insert("accept", HeaderValue::from_static("*/*"));
    headers.insert("user-agent", HeaderValue::from_static("wrk"));
    let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let ctx = Ctx {
        site_index: 0,
        peer,
        client_ip: peer.ip(),
        host: HeaderValue::from_static("127.0.0.1"),
        tls: false,
        https: false,
    };
    World {
        gate,
        ctx,
        headers,
        _dir: dir,
    }
}

/// `mfa_session=VALUE` for a new sealed cookie of `s`.
fn cookie_pair(gate: &Gate, s: &Session) -> String {
    let set = mfa_gate::sessions::cookie(gate, s).unwrap();
    set.to_str().unwrap().split(';').next().unwrap().to_string()
}

fn session_check(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let w = world(&rt);
    let mut group = c.benchmark_group("session_check");
    group.bench_function("remembered", |b| {
        b.iter(|| {
            let s = rt
                .block_on(mfa_gate::sessions::current(&w.gate, &w.ctx, &w.headers))
                .unwrap();
            assert!(s.is_some());
        })
    });
    // Fresh cookies (each sealed with its own nonce) are not remembered.
    let bind = binding(&w.gate.keys.binding, "console", "alice", b"pw-a");
    let fresh: Vec<HeaderMap> = (0..2048)
        .map(|_| {
            let s = Session::new("console", "console", "alice", &bind, 0, NOW, 43_200).unwrap();
            let mut h = w.headers.clone();
            h.insert(
                COOKIE,
                HeaderValue::from_str(&cookie_pair(&w.gate, &s)).unwrap(),
            );
            h
        })
        .collect();
    let mut i = 0;
    group.bench_function("first_sight", |b| {
        b.iter(|| {
            i = (i + 1) % fresh.len();
            let s = rt
                .block_on(mfa_gate::sessions::current(&w.gate, &w.ctx, &fresh[i]))
                .unwrap();
            assert!(s.is_some());
        })
    });
    group.finish();
}

fn verify_and_issue(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let w = world(&rt);
    let code = totp_rs_free_code(SECRET, NOW);
    c.bench_function("verify_and_issue", |b| {
        b.iter(|| {
            let step = mfa_gate::totp::check(SECRET, &code, NOW, 1).unwrap();
            let s = Session::new("console", "console", "alice", "bind", step, NOW, 43_200).unwrap();
            mfa_gate::sessions::cookie(&w.gate, &s).unwrap()
        })
    });
}

/// RFC 6238 (SHA1, 6 digits, 30 s), written out here rather than taken from the gate.
fn totp_rs_free_code(secret: &[u8], time: u64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
    mac.update(&(time / 30).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[19] & 0x0f);
    let bin = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    format!("{:06}", bin % 1_000_000)
}

/// Allocations of one session check and one request's header rewrite.
fn allocations(_: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let w = world(&rt);
    // Once to fill what is remembered.
    rt.block_on(mfa_gate::sessions::current(&w.gate, &w.ctx, &w.headers))
        .unwrap();
    let region = Region::new(GLOBAL);
    let s = rt
        .block_on(mfa_gate::sessions::current(&w.gate, &w.ctx, &w.headers))
        .unwrap()
        .unwrap();
    let check = region.change().allocations;
    let site = &w.gate.config.sites[0];
    let mut headers = w.headers.clone();
    let region = Region::new(GLOBAL);
    let fwd = w
        .gate
        .forwarding(&w.ctx, Some((&s, NOW)), ConsoleCookie::Pass, false);
    mfa_gate::proxy::prepare_request_headers(&mut headers, site, &fwd, None);
    let rewrite = region.change().allocations;
    println!("allocations: session check {check}, request header rewrite {rewrite}");
}

criterion_group!(benches, session_check, verify_and_issue, allocations);
criterion_main!(benches);
