//! How the gate reaches PostgreSQL: TLS checked against a CA file, a password from a
//! file or the environment, clear refusals (wrong CA, wrong password, a schema newer than
//! the gate) — against a private cluster with TLS and SCRAM turned on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use mfa_gate::config::Postgres;
use mfa_gate::store::postgres::PgStore;
use mfa_gate::store::Store;

use common::daemon::BIN;
use common::postgres::PgCluster;

fn settings(url: &str, password_file: Option<PathBuf>, ca_file: Option<PathBuf>) -> Postgres {
    Postgres::from_url(url)
        .unwrap()
        .with_files(password_file, ca_file)
}

/// How many of the gate's connections (its application name) use TLS, and how many not.
fn gate_connections(cluster: &PgCluster) -> (u32, u32) {
    let out = cluster.psql(
        "postgres",
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
         FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'mfa-gate'",
    );
    let (tls, plain) = out.trim().split_once('|').unwrap();
    (tls.parse().unwrap(), plain.parse().unwrap())
}

#[tokio::test]
async fn tls_to_the_database_is_checked_against_the_ca_file() {
    let cluster = PgCluster::start();
    let certs = tempfile::tempdir().unwrap();
    common::certs::make_ca_and_leaf(certs.path());
    let cert = certs.path().join("ca.pem");
    cluster.enable_tls(
        &certs.path().join("leaf.pem"),
        &certs.path().join("leaf.key"),
    );
    cluster.create_database("gate");
    let url = format!(
        "postgres://postgres@localhost:{}/gate?sslmode=require",
        cluster.port()
    );

    let store = PgStore::connect(&settings(&url, None, Some(cert.clone())))
        .await
        .unwrap();
    store.check_key(&[7u8; 32]).await.unwrap();
    // The pool's connection, and the one listening for the other gates' notices once
    // it is up: every one encrypted.
    let (tls, plain) = gate_connections(&cluster);
    assert!(tls >= 1 && plain == 0, "{tls} with TLS, {plain} without");
    drop(store);

    // Another CA: refused, with the reason.
    let other = tempfile::tempdir().unwrap();
    common::certs::make_ca_and_leaf(other.path());
    let other_ca = other.path().join("ca.pem");
    let e = PgStore::connect(&settings(&url, None, Some(other_ca)))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // The system roots do not know a self-signed certificate either.
    let e = PgStore::connect(&settings(&url, None, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // The leaf names localhost: asking for 127.0.0.1 fails the name check.
    let by_ip = url.replace("localhost", "127.0.0.1");
    assert!(PgStore::connect(&settings(&by_ip, None, Some(cert)))
        .await
        .is_err());
}

#[tokio::test]
async fn the_password_comes_from_a_file_or_pgpassword_and_a_wrong_one_is_told() {
    let cluster = PgCluster::start();
    cluster.password_role("gate", "right-horse", "gatedb");
    let url = format!("postgres://gate@127.0.0.1:{}/gatedb", cluster.port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db-password");

    std::fs::write(&file, "right-horse\n").unwrap();
    let store = PgStore::connect(&settings(&url, Some(file.clone()), None))
        .await
        .unwrap();
    store.check_key(&[7u8; 32]).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 1);
    drop(store);

    std::fs::write(&file, "wrong-horse\n").unwrap();
    let e = PgStore::connect(&settings(&url, Some(file.clone()), None))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(
        !e.contains("wrong-horse"),
        "the password is never shown: {e}"
    );

    // From the environment, through the binary (`store migrate` connects first and then
    // refuses the database, which holds the key fingerprint written above).
    let empty = dir.path().join("empty-store");
    std::fs::create_dir(&empty).unwrap();
    let run = |password: &str| {
        std::process::Command::new(BIN)
            .args(["store", "migrate", "--from"])
            .arg(&empty)
            .args(["--to", &url])
            .env("PGPASSWORD", password)
            .output()
            .unwrap()
    };
    let out = run("right-horse");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds gate data"), "{err}");
    let out = run("wrong-horse");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("password authentication failed"), "{err}");
}

#[tokio::test]
async fn a_schema_newer_than_the_gate_is_refused_and_an_older_one_migrated_once() {
    let cluster = PgCluster::start();
    let url = cluster.fresh_database();
    // Two gates starting at once on an empty database: one migrates, the other waits.
    let pg = settings(&url, None, None);
    let (a, b) = tokio::join!(PgStore::connect(&pg), PgStore::connect(&pg));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        cluster
            .psql(&url, "SELECT count(*) FROM mfa_gate_schema")
            .trim(),
        "1"
    );
    assert_eq!(
        (
            a.schema_version().await.unwrap(),
            b.schema_version().await.unwrap()
        ),
        (1, 1)
    );
    drop((a, b));
    cluster.psql(&url, "INSERT INTO mfa_gate_schema (version) VALUES (99)");
    let e = PgStore::connect(&settings(&url, None, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("schema is version 99") && e.contains("upgrade mfa-gate"),
        "{e}"
    );
}

#[tokio::test]
async fn a_gate_whose_clock_runs_fast_does_not_sweep_revocations_the_others_need() {
    let cluster = PgCluster::start();
    let url = cluster.fresh_database();
    let store = PgStore::connect(&settings(&url, None, None)).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Logged out; the session would have ended in ten minutes.
    store.revoke_session("s1", now + 600).await.unwrap();
    store.revoke_session("old", now - 2 * 3600).await.unwrap();
    // A gate twelve hours ahead sweeps: the database's clock bounds what it may drop.
    store.sweep(now + 12 * 3600).await.unwrap();
    assert!(
        store.session_revoked("s1").await.unwrap(),
        "still needed by the others"
    );
    assert!(
        !store.session_revoked("old").await.unwrap(),
        "long over for everyone"
    );
}

#[tokio::test]
async fn tables_another_role_made_in_advance_are_refused() {
    let cluster = PgCluster::start();
    cluster.password_role("gate", "right-horse", "gatedb");
    // Someone else on the cluster prepares a table the gate would adopt.
    cluster.psql(
        "gatedb",
        "CREATE TABLE mfa_gate_users (realm text, name text); GRANT ALL ON mfa_gate_users TO gate",
    );
    let url = format!(
        "postgres://gate:right-horse@127.0.0.1:{}/gatedb",
        cluster.port()
    );
    let e = PgStore::connect(&settings(&url, None, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mfa_gate_users belongs to the role postgres"),
        "{e}"
    );
}
