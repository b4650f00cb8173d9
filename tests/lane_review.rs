//! An outside review's attacks on the direct lane (at b4450b5: the console's head written
//! from `ForwardedFields`, console field names read in any case, the lane's standing
//! waits, the embedded store's session check without a future), kept as tests. Each attack is run on the direct lane (a
//! `GET` of a signed-in session on a fresh kept-alive connection, checked to have taken
//! the lane by its metric) and, where it compares, on the full path (the same fields on a
//! `POST`, which hyper carries); what the console (a raw TCP console recording exact
//! bytes, or PHP's built-in server) and the client receive is compared.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::php_console::{self, Php};
use common::wire::{page, page_body, RawConsole, RawRequest, Session, Step, Wire, USER};
use common::*;

const LANE: &str = "mfa_gate_direct_lane_requests_total";

/// A gate with a metrics listener, configured by `configure`, in front of `console`.
async fn gate_with_metrics(
    console: &RawConsole,
    configure: impl FnOnce(GateBuilder) -> GateBuilder,
) -> (TestGate, std::net::SocketAddr) {
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let table = format!("[metrics]\nlisten = \"{metrics}\"");
    let gate = configure(GateBuilder::basic(console.addr).table(&table))
        .start()
        .await;
    (gate, metrics)
}

/// The console's fields as a sorted multiset (names in lower case), without the body's
/// framing fields.
fn fields_of(req: &RawRequest) -> Vec<(String, String)> {
    let mut all: Vec<_> = req
        .fields
        .iter()
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case("content-length")
                && !n.eq_ignore_ascii_case("transfer-encoding")
        })
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    all.sort();
    all
}

/// Sends `raw` on a fresh connection; returns the status and what the console received
/// (if anything).
async fn one(
    gate: &TestGate,
    console: &RawConsole,
    raw: &[u8],
    method: &str,
) -> (u16, Option<RawRequest>) {
    console.clear();
    let mut wire = Wire::connect(gate.addr).await;
    wire.write(raw).await;
    let r = wire.response(method).await;
    let seen = console.forwarded();
    assert!(seen.len() <= 1, "{seen:?}");
    (r.status, seen.into_iter().next())
}

/// Invariants on any head the console receives for alice's session.
fn check_invariants(
    case: &str,
    req: &RawRequest,
    user_header: Option<&str>,
    trusted: bool,
) -> Vec<String> {
    let mut bad = Vec::new();
    let head = req.head_text();
    let hosts = req.values("host").len();
    if hosts != 1 {
        bad.push(format!("{case}: {hosts} Host fields"));
    }
    if req.values("cookie").len() > 1 {
        bad.push(format!("{case}: several Cookie fields"));
    }
    for c in req.values("cookie") {
        for pair in c.split([';', ',']) {
            let name = pair.split('=').next().unwrap_or("").trim();
            let folded = common::wire::fold(name);
            if folded.contains("mfa-session") || folded.contains("mfa-pending") {
                bad.push(format!("{case}: gate cookie {pair:?} reached the console"));
            }
        }
    }
    for (name, value) in &req.fields {
        let f = common::wire::fold(name);
        let identity = [
            "remote-user",
            "x-real-ip",
            "forwarded",
            "x-original-url",
            "true-client-ip",
            "ssl-client-cert",
        ]
        .contains(&f.as_str())
            || f.starts_with("x-mfa-gate-")
            || (f.starts_with("x-forwarded-")
                && !["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]
                    .contains(&name.as_str()));
        if identity {
            bad.push(format!("{case}: identity field {name}: {value}"));
        }
        if [
            "te",
            "keep-alive",
            "proxy-authorization",
            "proxy-connection",
            "http2-settings",
            "trailer",
            "upgrade",
            "connection",
            "x-a",
            "x-b",
        ]
        .contains(&name.to_ascii_lowercase().as_str())
        {
            bad.push(format!("{case}: hop-by-hop {name}: {value}"));
        }
        if let Some(u) = user_header {
            if common::wire::fold(name) == common::wire::fold(u) && value != "alice" {
                bad.push(format!("{case}: user header spelling {name}: {value}"));
            }
        }
        // From a trusted proxy, the client's X-Forwarded-For chain is kept (by design).
        let chain = trusted && name.eq_ignore_ascii_case("x-forwarded-for");
        if value.contains("root") || (value.contains("6.6.6.6") && !chain) {
            bad.push(format!("{case}: client claim crossed: {name}: {value}"));
        }
    }
    if !bad.is_empty() {
        bad.push(format!("  head was:\n{head}"));
    }
    bad
}

const CASES: &[(&str, &str)] = &[
    ("plain", ""),
    (
        "forwarding spellings",
        "X_Forwarded_For: 6.6.6.6\r\nx.forwarded.user: root\r\nX-FORWARDED-HOST: 6.6.6.6\r\nX-Forwarded-Proto: gopher\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\n",
    ),
    (
        "user header spellings",
        "x_console_user: mallory\r\nX.Console.User: mallory\r\nX-CONSOLE-USER: mallory\r\nx-console_user: mallory\r\nX~Console~User: mallory\r\n",
    ),
    ("connection: cookie", "Connection: Cookie\r\n"),
    ("connection: COOKIE twice", "Connection: te, COOKIE\r\nConnection: cookie\r\n"),
    ("connection: host, user header", "Connection: Host, X-Console-User\r\nX-Console-User: mallory\r\n"),
    ("connection: authorization", "Connection: authorization\r\n"),
    ("connection lists", "Connection: keep-alive\r\nConnection: X-A\r\nX-A: 1\r\nX-C: 2\r\n"),
    ("connection tabs", "Connection:\tX-A ,, X-B\t\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n"),
    ("connection: x-forwarded-for", "Connection: x-forwarded-for\r\nX-Forwarded-For: 6.6.6.6\r\n"),
    ("connection: content-length", "Connection: content-length, x-forwarded-host\r\n"),
    (
        "hop-by-hop",
        "TE: trailers\r\nKeep-Alive: 5\r\nProxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\nHTTP2-Settings: AAA\r\nTrailer: X-T\r\n",
    ),
    (
        "gate cookie spellings",
        "Cookie: MFA_SESSION=x; b=2; mfa.session=z; __Host-mfa_session=q; mfa_pending=p\r\nCookie: c=3,mfa_session=y\r\n",
    ),
    ("empty cookie line", "Cookie: \r\n"),
    (
        "strip spellings",
        "X.Debug: 1\r\nx_debug: 1\r\nX-DEBUG: 1\r\nAccept-Language: en\r\naccept_language: en\r\nAccept.Language: en\r\n",
    ),
    ("gate token spellings", "x_mfa_gate_token: mfa_tok_root\r\nX.MFA.Gate.Token: mfa_tok_root\r\n"),
    (
        "identity",
        "Remote_User: root\r\nREMOTE-USER: root\r\nX-Real-IP: 6.6.6.6\r\nX_Original_URL: /root\r\nTrue-Client-IP: 6.6.6.6\r\nSSL_Client_Cert: root\r\n",
    ),
    (
        "long forwarding name",
        "X_Forwarded_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: root\r\n",
    ),
    ("obs-text value", "X-Note: caf\u{e9} \u{a0}x\r\n"),
    ("empty value", "X-Empty:\r\nX-Empty2: \r\n"),
    ("host claims", "X-Host: evil.example\r\nX-Forwarded-Server: evil\r\n"),
];

/// Every case on the lane (GET) and the full path (POST): the console must get the same
/// fields, and none of the client's claims.
async fn lane_and_full_path_agree(
    configure: impl FnOnce(GateBuilder) -> GateBuilder,
    user_header: Option<&str>,
    trusted: bool,
    cases: &[(&str, &str)],
) {
    let console = RawConsole::start(page).await;
    let (gate, metrics) = gate_with_metrics(&console, configure).await;
    let s = Session::sign_in(&gate).await;
    let mut problems = Vec::new();
    for (i, (case, extra)) in cases.iter().enumerate() {
        let before = metric_counter(metrics, LANE).await;
        let get = s.request("GET", &format!("/lane/{i}"), extra, b"");
        let (get_status, get_seen) = one(&gate, &console, &get, "GET").await;
        let on_lane = metric_counter(metrics, LANE).await > before;
        let post = s.request("POST", &format!("/lane/{i}"), extra, b"x");
        let (post_status, post_seen) = one(&gate, &console, &post, "POST").await;
        println!("[{case}] GET {get_status} (lane: {on_lane}), POST {post_status}");
        if get_status != post_status {
            problems.push(format!("{case}: GET {get_status} vs POST {post_status}"));
        }
        if let (Some(g), Some(p)) = (&get_seen, &post_seen) {
            if fields_of(g) != fields_of(p) {
                problems.push(format!(
                    "{case}: the console read other fields on the lane:\nlane:\n{}\nfull:\n{}",
                    g.head_text(),
                    p.head_text()
                ));
            }
        }
        for seen in [&get_seen, &post_seen].into_iter().flatten() {
            problems.extend(check_invariants(case, seen, user_header, trusted));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn attack_request_fields_basic_user_header_and_strip() {
    lane_and_full_path_agree(
        |g| {
            g.site("user_header = \"X-Console-User\"")
                .site("strip_headers = [\"X-Debug\", \"Accept-Language\"]")
        },
        Some("X-Console-User"),
        false,
        CASES,
    )
    .await;
}

#[tokio::test]
async fn attack_request_fields_trusted_proxy_bound_console_cookie_identity_user_header() {
    let extra: &[(&str, &str)] = &[
        ("xff chain", "X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nX-Forwarded-Proto: https\r\n"),
        ("xff named in connection", "Connection: X-Forwarded-For, X-Forwarded-Proto\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\n"),
        ("bad proto", "X-Forwarded-Proto: javascript\r\n"),
        ("console cookie spellings", "Cookie: CSID=stolen; csid=x; C.SID=y; c_sid=z\r\n"),
        ("console cookie named in connection", "Cookie: CSID=stolen\r\nConnection: cookie\r\n"),
        ("remote-user header spellings", "x_remote_user: mallory\r\nX.Remote.User: mallory\r\nX-REMOTE-USER: mallory\r\n"),
        ("connection names the user header", "Connection: X-Remote-User\r\n"),
    ];
    let all: Vec<(&str, &str)> = CASES.iter().copied().chain(extra.iter().copied()).collect();
    lane_and_full_path_agree(
        |g| {
            g.trusted_proxies(&["127.0.0.0/8"])
                .first_factor(
                    r#"{ mode = "basic", probe_path = "/probe", session_cookie = "CSID" }"#,
                )
                .site("user_header = \"X-Remote-User\"")
        },
        Some("X-Remote-User"),
        true,
        &all,
    )
    .await;
}

/// Form mode in front of PHP's built-in server, which reads `X_Forwarded_For` and
/// `x.forwarded.for` as `HTTP_X_FORWARDED_FOR`: the `HTTP_*` keys PHP sees on the lane
/// and on the full path, and no `Authorization`, no gate cookie, no claim.
#[tokio::test(flavor = "multi_thread")]
async fn attack_php_form_mode_lane_and_full_path() {
    let php = Php::start(&[("alice", "pw-alice")]);
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let table = format!("[metrics]\nlisten = \"{metrics}\"");
    let gate = GateBuilder::form(php.addr, php_console::form_login())
        .table(&table)
        .site("user_header = \"X-Console-User\"")
        .start()
        .await;
    let b = Browser::new(&gate, None);
    php_console::sign_in(&gate, &php, &b, ("alice", "pw-alice")).await;
    let cookies = b.cookie_header().unwrap();
    let host = gate.addr.to_string();
    let claims = "Authorization: Basic YWRtaW46eA==\r\nX_Forwarded_For: 6.6.6.6\r\nx.forwarded.user: root\r\nx_console_user: mallory\r\nX.Console.User: mallory\r\nRemote_User: root\r\nConnection: X-A\r\nX-A: 1\r\nCookie: MFA_SESSION=x; mfa.session=y\r\n";
    let mut problems = Vec::new();
    for (method, body) in [("GET", ""), ("POST", "x=1")] {
        let length = if body.is_empty() {
            String::new()
        } else {
            format!(
                "Content-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n",
                body.len()
            )
        };
        let raw = format!(
            "{method} /whoami.php HTTP/1.1\r\nHost: {host}\r\nCookie: {cookies}\r\n{claims}{length}\r\n{body}"
        );
        let before = metric_counter(metrics, LANE).await;
        let mark = php.mark();
        let mut wire = Wire::connect(gate.addr).await;
        wire.write(raw.as_bytes()).await;
        let r = wire.response(method).await;
        let on_lane = metric_counter(metrics, LANE).await > before;
        let hits = php.since(mark);
        println!("[php {method}] {} (lane: {on_lane}) {}", r.status, r.text());
        for h in &hits {
            println!(
                "  PHP saw {h}\n  HTTP_*: {:?}\n  raw cookie: {:?}",
                h.headers, h.raw_cookie
            );
            if h.headers.iter().any(|k| k == "HTTP_AUTHORIZATION") {
                problems.push(format!("{method}: Authorization reached PHP in form mode"));
            }
            if h.headers
                .iter()
                .any(|k| k == "HTTP_X_FORWARDED_USER" || k == "HTTP_REMOTE_USER" || k == "HTTP_X_A")
            {
                problems.push(format!("{method}: a claim reached PHP: {:?}", h.headers));
            }
            if h.cookies
                .keys()
                .any(|k| k.to_ascii_lowercase().contains("mfa"))
            {
                problems.push(format!(
                    "{method}: a gate cookie reached PHP: {:?}",
                    h.cookies
                ));
            }
            if !h.as_user("alice") {
                problems.push(format!("{method}: PHP's session was not alice's: {h}"));
            }
        }
        assert_eq!(hits.len(), 1, "{method}");
        assert_eq!(r.status, 200, "{method}: {}", r.head);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------
// The console's answer
// ---------------------------------------------------------------------------------------

/// The client's fields, lower case, sorted, without what differs by path for no reason
/// (hyper's `date`, the framing, the gate's refreshed session cookie).
fn client_fields(r: &common::wire::Response) -> Vec<(String, String)> {
    let mut all: Vec<_> = r
        .fields
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .filter(|(n, v)| {
            let framing_or_date =
                ["date", "content-length", "transfer-encoding"].contains(&n.as_str());
            let refreshed = n == "set-cookie" && v.starts_with("mfa_session=");
            !(framing_or_date || refreshed)
        })
        .collect();
    all.sort();
    all
}

/// A raw console answering `answers[i]` (bytes as they are) at `{prefix}{i}` and the
/// ordinary page elsewhere; a gate in front of it; alice signed in.
async fn answering(prefix: &'static str, answers: Vec<Vec<u8>>) -> (RawConsole, TestGate, Session) {
    let console = RawConsole::start(move |req| {
        let i: Option<usize> = req.path().strip_prefix(prefix).and_then(|n| n.parse().ok());
        match i.and_then(|i| answers.get(i)) {
            Some(answer) => vec![Step::Write(answer.clone())],
            None => page(req),
        }
    })
    .await;
    let (gate, _) = gate_with_metrics(&console, |g| g).await;
    let s = Session::sign_in(&gate).await;
    (console, gate, s)
}

const WEIRD_ANSWERS: &[(&str, &str)] = &[
    (
        "hop-by-hop in odd cases",
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCONNECTION: x-a,\tX-B ,\r\nx-a: 1\r\nX-B: 2\r\nX-C: 3\r\nkEEP-aLIVE: timeout=5\r\nTE: x\r\nTrailer: y\r\nPROXY-AUTHENTICATE: z\r\nhttp2-settings: q\r\nUPGRADE: h2c\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: w\r\nContent-Length: 4\r\n\r\nbody",
    ),
    (
        "gate cookies in odd spellings",
        "HTTP/1.1 200 OK\r\nSET-COOKIE: mfa_session=forged1\r\nset-cookie:mfa_pending=forged2\r\nSet-Cookie: \tmfa_session =forged3\r\nSet-Cookie: =mfa_session=forged4\r\nSet-Cookie: mfa_session\r\nset-COOKIE: __Host-mfa_session=forged5; Secure; Path=/\r\nSet-Cookie: ok=1\r\nContent-Length: 4\r\n\r\nbody",
    ),
    (
        "connection names set-cookie",
        "HTTP/1.1 200 OK\r\nConnection: Set-Cookie\r\nSet-Cookie: console=1\r\nContent-Length: 4\r\n\r\nbody",
    ),
    (
        "connection with non-ASCII space",
        "HTTP/1.1 200 OK\r\nConnection: \u{a0}X-Secret\r\nX-Secret: s\r\nContent-Length: 4\r\n\r\nbody",
    ),
];

#[tokio::test]
async fn attack_response_fields_lane_and_full_path() {
    let (_console, gate, s) = answering(
        "/weird/",
        WEIRD_ANSWERS
            .iter()
            .map(|(_, a)| a.as_bytes().to_vec())
            .collect(),
    )
    .await;
    let mut problems = Vec::new();
    for (i, (case, _)) in WEIRD_ANSWERS.iter().enumerate() {
        let mut seen = Vec::new();
        for method in ["GET", "POST"] {
            let body: &[u8] = if method == "POST" { b"x" } else { b"" };
            let mut wire = Wire::connect(gate.addr).await;
            wire.write(&s.request(method, &format!("/weird/{i}"), "", body))
                .await;
            let r = wire.response(method).await;
            println!("[{case}] {method} ->\n{}", r.head);
            for (n, v) in &r.fields {
                let l = n.to_ascii_lowercase();
                if [
                    "x-a",
                    "x-b",
                    "keep-alive",
                    "te",
                    "trailer",
                    "proxy-authenticate",
                    "http2-settings",
                    "upgrade",
                    "proxy-connection",
                    "proxy-authorization",
                ]
                .contains(&l.as_str())
                {
                    problems.push(format!("{case} {method}: hop-by-hop {n}: {v}"));
                }
                if v.contains("forged") {
                    problems.push(format!("{case} {method}: gate cookie {n}: {v}"));
                }
            }
            // The connection goes on, in step.
            wire.write(&s.get("/next")).await;
            let next = wire.response("GET").await;
            if next.text() != page_body("/next") {
                problems.push(format!("{case} {method}: out of step: {:?}", next.text()));
            }
            seen.push((r.status, client_fields(&r)));
        }
        if seen[0] != seen[1] {
            problems.push(format!(
                "{case}: the client read other fields on the lane:\nlane: {:?}\nfull: {:?}",
                seen[0], seen[1]
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

const FRAMINGS: &[(&str, &[u8])] = &[
    ("plus sign", b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
    ("trailing NBSP", b"HTTP/1.1 200 OK\r\nContent-Length: 5\xc2\xa0\r\n\r\nhello"),
    ("leading NBSP", b"HTTP/1.1 200 OK\r\nContent-Length: \xc2\xa05\r\n\r\nhello"),
    ("trailing obs-text byte", b"HTTP/1.1 200 OK\r\nContent-Length: 5\xa0\r\n\r\nhello"),
    ("list of one number", b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello"),
    ("trailing comma", b"HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\nhello"),
    ("agreeing with a zero", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 05\r\n\r\nhello"),
    ("CL and TE, odd case", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("TE then CL", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("TE with VT", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\x0b\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("TE with NBSP", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\xc2\xa0\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("TE identity and CL", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello"),
    ("obs-fold", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("space before colon", b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello"),
    ("bare LF", b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello"),
    ("twenty digits", b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nhello"),
    ("tabs around", b"HTTP/1.1 200 OK\r\nContent-Length:\t5\t\t\r\n\r\nhello"),
    ("204 with a body", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"),
    ("connection names content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: content-length\r\n\r\nhello"),
    ("connection names transfer-encoding", b"HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("TE list with empties", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ,chunked,\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("two TE fields, gzip last", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("interim with a length", b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
    ("conflicting", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("longer than said", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"),
];

/// Odd framings from the console: the client gets a validly framed answer (the console's
/// five bytes, or a 502), and the next request on the same connection gets its own page.
#[tokio::test]
async fn attack_response_framing_on_the_lane() {
    let (_console, gate, s) = answering(
        "/framing/",
        FRAMINGS.iter().map(|(_, a)| a.to_vec()).collect(),
    )
    .await;
    let mut problems = Vec::new();
    for (i, (case, _)) in FRAMINGS.iter().enumerate() {
        let mut outcome = Vec::new();
        for method in ["GET", "POST"] {
            let body: &[u8] = if method == "POST" { b"x" } else { b"" };
            let mut wire = Wire::connect(gate.addr).await;
            wire.write(&s.request(method, &format!("/framing/{i}"), "", body))
                .await;
            let r = match wire.try_response(method).await {
                Ok(r) => r,
                // hyper's full path reads a transfer coding it does not take as chunked
                // as a body until close, and waits for the console to close: noted,
                // not a lane problem.
                Err(e) if method == "POST" => {
                    println!("  NOTE {case} POST (full path): no answer: {e}");
                    continue;
                }
                Err(e) => {
                    problems.push(format!("{case} {method}: no valid answer: {e}"));
                    continue;
                }
            };
            if r.status == 200 && r.body != b"hello" {
                problems.push(format!("{case} {method}: body {:?}", r.text()));
            }
            if r.head.contains("forged") || r.body.windows(6).any(|w| w == b"forged") {
                problems.push(format!("{case} {method}: forged answer"));
            }
            let next = async {
                wire.write(&s.get("/next")).await;
                wire.try_response("GET").await
            };
            match next.await {
                Ok(n) if n.text() == page_body("/next") => {}
                Ok(n) => problems.push(format!(
                    "{case} {method}: next got {} {:?}",
                    n.status,
                    n.text()
                )),
                // The gate closed the connection after the answer: safe.
                Err(e) if e.contains("closed") => {}
                Err(e) => problems.push(format!("{case} {method}: next: {e}")),
            }
            outcome.push(r.status);
        }
        println!("[{case}] lane/full: {outcome:?}");
    }
    // Fresh connections after everything: every console connection the gate kept is in
    // step.
    for _ in 0..6 {
        let mut wire = Wire::connect(gate.addr).await;
        wire.write(&s.get("/after")).await;
        let r = wire.response("GET").await;
        if r.text() != page_body("/after") {
            problems.push(format!(
                "a kept console connection out of step: {:?}",
                r.text()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Sessions ending while kept-alive lane connections wait, on several worker threads
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attack_logout_on_one_connection_ends_lane_connections_on_every_worker() {
    let console = RawConsole::start(page).await;
    let gate = GateBuilder::basic(console.addr)
        .server("workers = 4")
        .start()
        .await;
    let b = Browser::new(&gate, Some(USER));
    let (done, _) = b.login(&gate, "/", None).await;
    assert!(done.next().is_some(), "login: {done:?}");
    let s = Session::of(&b, gate.addr.to_string(), USER);
    let mut wires = Vec::new();
    for i in 0..12 {
        let mut w = Wire::connect(gate.addr).await;
        // Twice each: the second from the thread's kept answer.
        for j in 0..2 {
            let t = format!("/before/{i}/{j}");
            w.write(&s.get(&t)).await;
            assert_eq!(w.response("GET").await.text(), page_body(&t));
        }
        wires.push(w);
    }
    let form = b.get("/.mfa/logout").await;
    let out = b.post_form("/.mfa/logout", &[("csrf", &form.csrf())]).await;
    assert_eq!(out.status, http::StatusCode::OK, "{out:?}");
    console.clear();
    let mut problems = Vec::new();
    for (i, w) in wires.iter_mut().enumerate() {
        w.write(&s.get(&format!("/after/{i}"))).await;
        match w.try_response("GET").await {
            Ok(r) if r.status == 200 => {
                problems.push(format!("conn {i}: 200 after logout: {:?}", r.text()))
            }
            _ => {}
        }
    }
    let seen: Vec<String> = console.forwarded().into_iter().map(|r| r.target).collect();
    assert!(
        seen.is_empty() && problems.is_empty(),
        "{seen:?}\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// The lane's standing waits: evicted kept-alive connections close, the rest serve on
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_idle_lane_connections_close_and_the_newcomers_serve_on() {
    let console = RawConsole::start(page).await;
    let gate = GateBuilder::basic(console.addr)
        .server("max_connections = 16")
        .start()
        .await;
    let s = Session::sign_in(&gate).await;
    let mut wires = Vec::new();
    for i in 0..12 {
        let mut w = Wire::connect(gate.addr).await;
        let t = format!("/idle/{i}");
        w.write(&s.get(&t)).await;
        assert_eq!(w.response("GET").await.text(), page_body(&t));
        // A partial next head on half of them.
        if i % 2 == 0 {
            w.write(b"GET /part").await;
        }
        wires.push(w);
    }
    // Newcomers at the cap evict the oldest (each evicted one must close).
    let mut newcomers = Vec::new();
    for i in 0..8 {
        let mut w = Wire::connect(gate.addr).await;
        let t = format!("/new/{i}");
        w.write(&s.get(&t)).await;
        assert_eq!(w.response("GET").await.text(), page_body(&t));
        newcomers.push(w);
    }
    let mut closed = 0;
    for w in &mut wires {
        if w.closed_within(Duration::from_millis(200)).await {
            closed += 1;
        }
    }
    println!("evicted and closed: {closed} of 12 old connections");
    assert!(closed >= 4, "only {closed} evicted connections closed");
    for (i, w) in newcomers.iter_mut().enumerate() {
        let t = format!("/again/{i}");
        w.write(&s.get(&t)).await;
        assert_eq!(w.response("GET").await.text(), page_body(&t));
    }
}
