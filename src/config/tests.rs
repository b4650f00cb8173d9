use super::values::bytes_per_second;
use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(Path::new("test.toml"), text)
}

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8080"

[store]
path = "/tmp/mfa-gate-test-store"

[[site]]
name = "router"
hosts = ["router.example.com"]
upstream = "http://127.0.0.1:9000"
first_factor = { mode = "basic" }
"#;

#[test]
fn defaults_are_filled_in() -> Result<(), ConfigError> {
    let c = parse(GOOD)?;
    assert_eq!(c.session.idle, Duration::from_secs(1800));
    assert_eq!(c.session.absolute, Duration::from_secs(12 * 3600));
    assert_eq!(c.totp.skew_steps, 1);
    assert_eq!(c.server.prefix, "/.mfa/");
    assert_eq!(c.sites[0].realm, "router");
    assert_eq!(
        c.store.key_file,
        PathBuf::from("/tmp/mfa-gate-test-store.key")
    );
    Ok(())
}

#[test]
fn unknown_key_names_line_and_column() {
    let text = GOOD.replace("listen =", "listne =");
    let e = parse(&text).err();
    let e = e
        .as_ref()
        .map(|e| (e.line, e.column, e.message.contains("listne")));
    assert_eq!(e, Some((3, 1, true)));
}

#[test]
fn bad_cidr_is_placed() {
    let text = GOOD.replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:8080\"\ntrusted_proxies = [\"10.0.0.0/33\"]",
    );
    let e = parse(&text).err().map(|e| (e.line, e.column));
    assert_eq!(e, Some((4, 20)));
}

#[test]
fn missing_tls_cert_is_named() {
    let text = GOOD.replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:8080\"\ntls = { cert = \"/nonexistent/cert.pem\", key = \"/nonexistent/key.pem\" }",
    );
    let e = parse(&text).err();
    assert!(
        e.as_ref()
            .is_some_and(|e| e.line == 4 && e.message.contains("/nonexistent/cert.pem")),
        "{e:?}"
    );
}

#[test]
fn bad_duration_and_rate_are_placed() {
    let e = parse(&format!("{GOOD}\n[session]\nidle = \"soon\"\n")).err();
    assert_eq!(e.map(|e| (e.line, e.column)), Some((15, 8)));
    let e = parse(&format!("{GOOD}\n[throttle]\nper_ip = \"ten\"\n")).err();
    assert_eq!(e.map(|e| (e.line, e.column)), Some((15, 10)));
}

#[test]
fn upstream_paths_and_other_schemes_are_refused() {
    for bad in [
        "http://10.0.0.1/admin",
        "https://10.0.0.1/admin",
        "ftp://x",
        "not a url",
    ] {
        let text = GOOD.replace("http://127.0.0.1:9000", bad);
        let e = parse(&text).err();
        assert_eq!(e.map(|e| e.line), Some(11), "{bad}");
    }
}

/// [`GOOD`] with an `https://` upstream and more lines in its `[[site]]` (from line 13).
fn https_site(upstream: &str, lines: &str) -> String {
    format!("{}{lines}", GOOD.replace("http://127.0.0.1:9000", upstream))
}

const PIN: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn https_upstream_with_a_pin_and_a_server_name() -> Result<(), ConfigError> {
    use crate::upstream_tls::{parse_pin, Trust};
    let c = parse(&https_site(
        "https://192.168.1.1",
        &format!("upstream_pin = \"{PIN}\"\nupstream_sni = \"router.lan\"\n"),
    ))?;
    let up = &c.sites[0].upstream;
    assert_eq!(up.scheme, Scheme::HTTPS);
    let tls = up.tls.as_ref().expect("https has TLS settings");
    assert_eq!(Some(tls.trust.clone()), parse_pin(PIN).map(Trust::Pin));
    assert_eq!(tls.server_name.to_str(), "router.lan");
    assert_eq!(
        up.uri_for("/x?y").map(|u| u.to_string()).ok().as_deref(),
        Some("https://192.168.1.1/x?y")
    );
    // Without upstream_sni the address itself is the name checked.
    let c = parse(&https_site(
        "https://[fd00::1]:8443",
        &format!("upstream_pin = \"{PIN}\"\n"),
    ))?;
    let tls = c.sites[0].upstream.tls.clone().expect("tls");
    assert_eq!(tls.server_name.to_str(), "fd00::1");
    // upstream_insecure = false is no choice: it combines with a pin.
    let c = parse(&https_site(
        "https://router.lan",
        &format!("upstream_pin = \"{PIN}\"\nupstream_insecure = false\n"),
    ))?;
    assert!(matches!(
        c.sites[0].upstream.tls.as_ref().map(|t| &t.trust),
        Some(Trust::Pin(_))
    ));
    let c = parse(&https_site(
        "https://router.lan",
        "upstream_insecure = true\n",
    ))?;
    assert!(matches!(
        c.sites[0].upstream.tls.as_ref().map(|t| &t.trust),
        Some(Trust::Insecure)
    ));
    Ok(())
}

#[test]
fn https_upstream_defaults_to_the_system_roots() -> Result<(), ConfigError> {
    // Needs the system's CA certificates (ca-certificates, installed by scripts/test.sh).
    let c = parse(&https_site("https://console.example.com:8443", ""))?;
    let tls = c.sites[0].upstream.tls.clone().expect("tls");
    assert_eq!(tls.trust, crate::upstream_tls::Trust::SystemRoots);
    assert_eq!(tls.server_name.to_str(), "console.example.com");
    assert!(parse(GOOD)?.sites[0].upstream.tls.is_none());
    Ok(())
}

#[test]
fn trust_choices_exclude_each_other() {
    for (lines, second, col) in [
        (
            format!(
                "upstream_ca = \"/etc/ssl/certs/ca-certificates.crt\"\nupstream_pin = \"{PIN}\"\n"
            ),
            "upstream_pin",
            16,
        ),
        (
            format!("upstream_pin = \"{PIN}\"\nupstream_insecure = true\n"),
            "upstream_insecure",
            21,
        ),
        (
            "upstream_ca = \"/etc/ssl/certs/ca-certificates.crt\"\nupstream_insecure = true\n"
                .to_string(),
            "upstream_insecure",
            21,
        ),
    ] {
        let e = parse(&https_site("https://router.lan", &lines)).err();
        let place = e.as_ref().map(|e| (e.line, e.column));
        assert_eq!(place, Some((14, col)), "{lines}: {e:?}");
        let e = e.expect("refused");
        assert!(
            e.message.contains("cannot be used together") && e.message.contains(second),
            "{e}"
        );
        assert!(
            e.hint.contains("upstream_pin") && e.hint.contains("upstream_ca"),
            "{e}"
        );
    }
}

#[test]
fn tls_keys_on_an_http_upstream_are_refused() {
    for (line, key) in [
        (format!("upstream_pin = \"{PIN}\""), "upstream_pin"),
        ("upstream_insecure = true".to_string(), "upstream_insecure"),
        ("upstream_sni = \"router.lan\"".to_string(), "upstream_sni"),
        (
            "upstream_ca = \"/nonexistent.pem\"".to_string(),
            "upstream_ca",
        ),
    ] {
        let e = parse(&format!("{GOOD}{line}\n")).err();
        assert_eq!(e.as_ref().map(|e| e.line), Some(13), "{line}");
        let e = e.expect("refused");
        assert!(
            e.message == format!("{key} applies only to an https:// upstream")
                && e.hint.contains("https://127.0.0.1:9000"),
            "{e}"
        );
    }
}

#[test]
fn bad_tls_values_are_placed_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "just text\n").expect("write");
    for (line, col, what, fix) in [
        (
            "upstream_pin = \"sha256:abcd\"".to_string(),
            16,
            "cannot read this certificate pin",
            "openssl x509",
        ),
        (
            "upstream_pin = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\""
                .to_string(),
            16,
            "pin",
            "sha256:",
        ),
        (
            "upstream_ca = \"/nonexistent/ca.pem\"".to_string(),
            15,
            "cannot read /nonexistent/ca.pem",
            "PEM file",
        ),
        (
            format!("upstream_ca = \"{}\"", not_pem.display()),
            15,
            "holds no certificate",
            "PEM file",
        ),
        (
            "upstream_sni = \"not a name\"".to_string(),
            16,
            "is not a server name",
            "DNS name",
        ),
    ] {
        let e = parse(&https_site("https://router.lan", &format!("{line}\n"))).err();
        assert_eq!(
            e.as_ref().map(|e| (e.line, e.column)),
            Some((13, col)),
            "{line}: {e:?}"
        );
        let e = e.expect("refused");
        assert!(
            e.message.contains(what) && e.hint.contains(fix),
            "{line}: {e}"
        );
    }
}

#[test]
fn key_file_inside_store_is_refused() {
    let text = GOOD.replace(
        "path = \"/tmp/mfa-gate-test-store\"",
        "path = \"/tmp/mfa-gate-test-store\"\nkey_file = \"/tmp/mfa-gate-test-store/k\"",
    );
    assert!(parse(&text).is_err_and(|e| e.message.contains("inside the store")));
}

#[test]
fn form_mode_is_validated() -> Result<(), ConfigError> {
    let form = r#"first_factor = { mode = "form", login_path = "/j_security_check", username_field = "j_username", session_cookie = "JSESSIONID", public = ["/login", "/static/*"], logout_path = "/logout" }"#;
    let c = parse(&GOOD.replace(r#"first_factor = { mode = "basic" }"#, form))?;
    let FirstFactor::Form(f) = &c.sites[0].first_factor else {
        panic!("form mode")
    };
    assert_eq!(f.login_page, "/j_security_check");
    assert_eq!(f.success_status, [302, 303]);
    assert!(
        f.is_public("/login")
            && f.is_public("/static/app.js")
            && !f.is_public("/login2")
            && !f.is_public("/admin")
    );
    for (bad, col) in [
        (
            r#"first_factor = { mode = "form", username_field = "u", session_cookie = "s" }"#,
            25,
        ),
        (
            r#"first_factor = { mode = "form", login_path = "/l", username_field = "u", session_cookie = "s", public = ["static/*"] }"#,
            106,
        ),
        (
            r#"first_factor = { mode = "basic", login_path = "/l" }"#,
            47,
        ),
        (
            r#"first_factor = { mode = "form", login_path = "/l", username_field = "u", session_cookie = "a b" }"#,
            91,
        ),
    ] {
        let e = parse(&GOOD.replace(r#"first_factor = { mode = "basic" }"#, bad)).err();
        assert_eq!(e.map(|e| (e.line, e.column)), Some((12, col)), "{bad}");
    }
    Ok(())
}

#[test]
fn connection_limits_have_defaults_and_are_placed() -> Result<(), ConfigError> {
    let c = parse(GOOD)?;
    assert_eq!(c.server.keepalive_idle, Duration::from_secs(60));
    assert_eq!(c.server.max_connections, None);
    assert_eq!(c.server.max_connections_per_ip, 100);
    assert_eq!(c.server.min_body_rate, 1_000);
    assert_eq!(c.server.workers, None);
    let set = |lines: &str| {
        GOOD.replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"127.0.0.1:8080\"\n{lines}"),
        )
    };
    let c = parse(&set(
        "keepalive_idle = \"5s\"\nmax_connections = 500\nmax_connections_per_ip = 20\nmin_body_rate = \"2KiB/s\"\nworkers = 3",
    ))?;
    assert_eq!(c.server.workers, Some(3));
    assert_eq!(c.server.keepalive_idle, Duration::from_secs(5));
    assert_eq!(c.server.max_connections, Some(500));
    assert_eq!(c.server.max_connections_per_ip, 20);
    assert_eq!(c.server.min_body_rate, 2_048);
    for (bad, col) in [
        ("keepalive_idle = \"0s\"", 18),
        ("max_connections = 0", 19),
        ("max_connections = -5", 19),
        ("max_connections_per_ip = 20000000", 26),
        ("max_connections = 10\nmax_connections_per_ip = 11", 26),
        ("min_body_rate = \"fast\"", 17),
        ("min_body_rate = \"0B/s\"", 17),
        ("min_body_rate = 1000", 17),
        ("workers = 0", 11),
        ("workers = 257", 11),
        ("workers = \"2\"", 11),
    ] {
        let e = parse(&set(bad)).err();
        let line = 4 + bad.matches('\n').count();
        assert_eq!(e.map(|e| (e.line, e.column)), Some((line, col)), "{bad}");
    }
    Ok(())
}

#[test]
fn body_rates_are_read_with_their_units() {
    for (text, rate) in [
        ("1KB/s", Some(1_000)),
        ("500 B/s", Some(500)),
        ("2KiB/s", Some(2_048)),
        ("1 MB/s", Some(1_000_000)),
        ("3MiB/s", Some(3 * 1_048_576)),
        ("0KB/s", None),
        ("1KB", None),
        ("KB/s", None),
        ("1.5KB/s", None),
        ("-1B/s", None),
        ("99999999999999999999B/s", None),
    ] {
        assert_eq!(bytes_per_second(text), rate, "{text}");
    }
}

#[test]
fn logins_under_another_name_are_recognised() -> Result<(), ConfigError> {
    let form = r#"first_factor = { mode = "form", login_path = "/app/j_security_check", username_field = "j_username", session_cookie = "JSESSIONID" }"#;
    let c = parse(&GOOD.replace(r#"first_factor = { mode = "basic" }"#, form))?;
    let FirstFactor::Form(f) = &c.sites[0].first_factor else {
        panic!("form mode")
    };
    for alias in [
        "/app/whoami.jsp/j_security_check",
        "/app/static/j_security_check",
        "/app/j_security_check/x",
        "/app/a;x/J_Security_Check",
        "/other/%6a_security_check",
    ] {
        assert!(f.is_login_alias(alias), "{alias}");
    }
    for not in [
        "/app/j_security_check",
        "/app/j_security_check;jsessionid=1",
        "/app/login.jsp",
    ] {
        assert!(!f.is_login_alias(not), "{not}");
    }
    let php = r#"first_factor = { mode = "form", login_path = "/login.php", username_field = "u", session_cookie = "PHPSESSID" }"#;
    let c = parse(&GOOD.replace(r#"first_factor = { mode = "basic" }"#, php))?;
    let FirstFactor::Form(f) = &c.sites[0].first_factor else {
        panic!("form mode")
    };
    assert!(f.is_login_alias("/login.php/x") && f.is_login_alias("/a/login.php"));
    assert!(!f.is_login_alias("/login.php") && !f.is_login_alias("/login.phpx"));
    Ok(())
}

#[test]
fn admins_get_the_spelling_of_user_names() -> Result<(), ConfigError> {
    let c = parse(&format!("{GOOD}admins = [\"Alice\", \"bob\"]\n"))?;
    assert_eq!(c.sites[0].admins, ["alice", "bob"]);
    let c = parse(&format!(
        "{GOOD}admins = [\"Alice\"]\ncase_sensitive_users = true\n"
    ))?;
    assert_eq!(c.sites[0].admins, ["Alice"]);
    let e = parse(&format!("{GOOD}admins = [\" alice\"]\n")).err();
    assert_eq!(e.map(|e| (e.line, e.column)), Some((13, 11)));
    Ok(())
}

#[test]
fn unknown_mode_is_an_error() {
    let text = GOOD.replace("mode = \"basic\"", "mode = \"magic\"");
    assert!(parse(&text).is_err_and(|e| e.line == 12 && e.message.contains("magic")));
}

#[test]
fn enrollment_policy_is_read_and_defaults_to_open() -> Result<(), ConfigError> {
    let c = parse(GOOD)?;
    assert_eq!(c.sites[0].enrollment, EnrollmentPolicy::default());
    assert_eq!(c.sites[0].enrollment.enrollment, Enrollment::Open);
    let c = parse(&format!(
        "{GOOD}enrollment = \"invite\"\nenroll_from = [\"10.0.0.0/8\", \"::1\"]\n\
         enroll_until = \"2027-01-31T00:00:00Z\"\ncontact = \"the IT desk, extension 4242\"\n"
    ))?;
    let p = &c.sites[0].enrollment;
    assert_eq!(p.enrollment, Enrollment::Invite);
    assert_eq!(p.enroll_from.len(), 2);
    assert_eq!(p.enroll_until, Some(1_801_353_600));
    assert_eq!(p.contact, "the IT desk, extension 4242");
    Ok(())
}

#[test]
fn metrics_are_off_by_default_and_only_on_loopback() -> Result<(), ConfigError> {
    assert!(parse(GOOD)?.metrics.is_none());
    let with = |table: &str| parse(&format!("{GOOD}[metrics]\n{table}\n"));
    let c = with("listen = \"127.0.0.1:9300\"")?;
    assert_eq!(
        c.metrics.map(|m| m.listen),
        Some("127.0.0.1:9300".parse().unwrap_or_else(|_| unreachable!()))
    );
    assert!(with("listen = \"[::1]:9300\"").is_ok());
    let e = with("listen = \"0.0.0.0:9300\"").err();
    assert!(
        e.as_ref().is_some_and(|e| (e.line, e.column) == (14, 10)
            && e.message.contains("not on loopback")
            && e.hint.contains("allow_remote")),
        "{e:?}"
    );
    assert!(with("listen = \"10.1.2.3:9300\"\nallow_remote = true").is_ok());
    // Never the gate's own address.
    let e = with("listen = \"127.0.0.1:8080\"").err();
    assert!(
        e.is_some_and(|e| e.line == 14 && e.message.contains("the gate's own address")),
        "the public address does not serve metrics"
    );
    assert!(with("listen = \"localhost:9300\"").is_err_and(|e| e.line == 14));
    assert!(with("listen = \"127.0.0.1:9300\"\npath = \"/m\"").is_err());
    Ok(())
}

#[test]
fn enrollment_policy_mistakes_name_line_column_and_the_fix() {
    let err = |extra: &str| {
        let e = parse(&format!("{GOOD}{extra}\n")).err();
        e.map(|e| (e.line, e.column, e.message, e.hint))
            .unwrap_or_default()
    };
    // GOOD's last line is line 12; the extra line is line 13.
    let (line, column, message, hint) = err("enrollment = \"closed\"");
    assert_eq!((line, column), (13, 14));
    assert!(
        message.contains("\"closed\"") && hint.contains("\"invite\""),
        "{message} / {hint}"
    );
    let (line, column, message, hint) = err("enroll_from = [\"10.0.0.0/8\", \"10.0.0.0/33\"]");
    assert_eq!((line, column), (13, 30));
    assert!(
        message.contains("not a CIDR") && hint.contains("10.0.0.0/8"),
        "{message}"
    );
    let (line, column, message, hint) = err("enroll_until = \"31.01.2027\"");
    assert_eq!((line, column), (13, 16));
    assert!(
        message.contains("date") && hint.contains("2027-01-31T00:00:00Z"),
        "{message}"
    );
    let (line, column, _, hint) = err("contact = \"\"");
    assert_eq!((line, column), (13, 11));
    assert!(hint.contains("whom to ask"), "{hint}");
    let (line, column, message, hint) = err("enroll_from = []");
    assert_eq!((line, column), (13, 15));
    assert!(message.contains("nobody could ever enroll") && hint.contains("leave it out"));
    let (line, column, message, _) = err("enrolment = \"invite\"");
    assert_eq!((line, column), (13, 1));
    assert!(message.contains("enrolment"), "{message}");
}

#[test]
fn sites_of_one_realm_state_one_enrollment_policy() {
    let second =
        "\n[[site]]\nname = \"router2\"\nrealm = \"router\"\nhosts = [\"router2.example.com\"]\n\
                  upstream = \"http://127.0.0.1:9001\"\nfirst_factor = { mode = \"basic\" }\n";
    assert!(parse(&format!("{GOOD}{second}")).is_ok());
    let e = parse(&format!("{GOOD}{second}enrollment = \"invite\"\n")).err();
    let e = e
        .map(|e| (e.line, e.column, e.message, e.hint))
        .unwrap_or_default();
    assert_eq!((e.0, e.1), (15, 8), "the second site's name");
    assert!(
        e.2.contains("realm \"router\"") && e.3.contains("every [[site]] of a realm"),
        "{e:?}"
    );
}

#[test]
fn log_format_and_access_lines() -> Result<(), ConfigError> {
    let c = parse(GOOD)?;
    assert_eq!((c.log.format, c.log.access), (LogFormat::Auto, true));
    let c = parse(&format!("{GOOD}[log]\nformat = \"json\"\naccess = false\n"))?;
    assert_eq!((c.log.format, c.log.access), (LogFormat::Json, false));
    let e = parse(&format!("{GOOD}[log]\nformat = \"xml\"\n")).err();
    assert!(
        e.is_some_and(|e| (e.line, e.column) == (14, 10) && e.hint.contains("\"json\"")),
        "the place and the fix"
    );
    Ok(())
}

fn with_store(lines: &str) -> String {
    GOOD.replace("path = \"/tmp/mfa-gate-test-store\"", lines)
}

#[test]
fn a_postgres_store_is_read_and_never_shows_its_password() -> Result<(), ConfigError> {
    let c = parse(&with_store(
        "url = \"postgres://gate:s3cret@db.example.com:5432/mfa?sslmode=require\"\nkey_file = \"/etc/mfa-gate/store.key\"\npool = 4\noutage_grace = \"30s\"",
    ))?;
    let Backend::Postgres(pg) = &c.store.backend else {
        panic!("{:?}", c.store.backend);
    };
    assert_eq!((pg.pool, pg.outage_grace), (4, Duration::from_secs(30)));
    assert_eq!(c.store.key_file, PathBuf::from("/etc/mfa-gate/store.key"));
    assert_eq!(c.store.embedded(), None);
    let settings = pg.settings().map_err(|e| parse_err(&e))?;
    assert_eq!(settings.get_password(), Some(&b"s3cret"[..]));
    assert_eq!(settings.get_application_name(), Some("mfa-gate"));
    for shown in [pg.shown(), format!("{pg:?}"), format!("{c:?}")] {
        assert!(!shown.contains("s3cret"), "{shown}");
    }
    assert_eq!(
        pg.shown(),
        "postgres://gate@db.example.com:5432/mfa?sslmode=require"
    );
    // Defaults.
    let c = parse(&with_store(
        "url = \"postgres://gate@db/mfa?sslmode=require\"\nkey_file = \"/etc/mfa-gate/store.key\"",
    ))?;
    let Backend::Postgres(pg) = &c.store.backend else {
        panic!("{:?}", c.store.backend);
    };
    assert_eq!((pg.pool, pg.outage_grace), (16, Duration::from_secs(60)));
    Ok(())
}

fn parse_err(e: &str) -> ConfigError {
    ConfigError {
        file: PathBuf::from("test.toml"),
        line: 0,
        column: 0,
        message: e.to_string(),
        hint: String::new(),
    }
}

#[test]
fn store_mistakes_name_line_column_and_the_fix() {
    let key = "key_file = \"/etc/mfa-gate/store.key\"";
    let cases = [
        // Both stores at once.
        (
            format!("path = \"/tmp/s\"\nurl = \"postgres://g@localhost/m\"\n{key}"),
            (6, 8),
            "one store",
        ),
        (
            "key_file = \"/tmp/k\"".to_string(),
            (5, 1),
            "url = \"postgres://",
        ),
        (
            "url = \"postgres://g@127.0.0.1/m\"".to_string(),
            (6, 7),
            "the same file on every instance",
        ),
        (
            format!("url = \"mysql://g@db/m\"\n{key}"),
            (6, 7),
            "postgres://USER@HOST",
        ),
        (
            format!("url = \"postgres://g@localhost/m?sslmode=verify-full\"\n{key}"),
            (6, 7),
            "sslmode=require",
        ),
        // A database on another host without sslmode=require: TLS could be stripped.
        (
            format!("url = \"postgres://g@db.example.com/m\"\n{key}"),
            (6, 7),
            "sslmode=require",
        ),
        (
            format!("url = \"postgres://g@10.0.0.5/m?sslmode=prefer\"\n{key}"),
            (6, 7),
            "sslmode=require",
        ),
        (
            format!("url = \"postgres://g@localhost\"\n{key}"),
            (6, 7),
            "postgres://USER@HOST",
        ),
        (
            format!(
                "url = \"postgres://g:pw@localhost/m\"\npassword_file = \"/etc/hostname\"\n{key}"
            ),
            (7, 17),
            "keep the password out of the URL",
        ),
        (
            format!(
                "url = \"postgres://g@localhost/m\"\npassword_file = \"/nonexistent/pw\"\n{key}"
            ),
            (7, 17),
            "database password",
        ),
        (
            format!("url = \"postgres://g@localhost/m\"\noutage_grace = \"soon\"\n{key}"),
            (7, 16),
            "a duration",
        ),
        (
            "path = \"/tmp/s\"\npool = 3".to_string(),
            (7, 8),
            "instead of path",
        ),
        (
            "path = \"/tmp/s\"\nca_file = \"/etc/hostname\"".to_string(),
            (7, 11),
            "instead of path",
        ),
    ];
    for (lines, place, hint) in cases {
        let e = parse(&with_store(&lines)).expect_err(&lines);
        assert_eq!((e.line, e.column), place, "{lines}: {e}");
        assert!(
            e.hint.contains(hint) || e.message.contains(hint),
            "{lines}: {e}"
        );
    }
}

#[test]
fn a_database_on_this_host_may_go_without_tls_and_no_password_is_ever_shown(
) -> Result<(), ConfigError> {
    let key = "key_file = \"/etc/mfa-gate/store.key\"";
    for url in [
        "postgres://g@localhost/m",
        "postgres://g@127.0.0.1:5433/m?sslmode=disable",
        "postgres://g@[::1]/m?sslmode=prefer",
        "postgres://g@%2Frun%2Fpostgresql/m",
    ] {
        parse(&with_store(&format!("url = \"{url}\"\n{key}")))?;
    }
    let c = parse(&with_store(&format!(
        "url = \"postgres://g@db.example.com/m?sslmode=require&password=S3cretQuery\"\n{key}"
    )))?;
    let Backend::Postgres(pg) = &c.store.backend else {
        panic!("{:?}", c.store.backend);
    };
    assert_eq!(
        pg.shown(),
        "postgres://g@db.example.com:5432/m?sslmode=require"
    );
    assert!(!format!("{c:?}").contains("S3cret"));
    Ok(())
}
