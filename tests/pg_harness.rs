//! The private PostgreSQL harness itself (`common/postgres.rs`): databases are apart,
//! data survives the server going down and coming back, and clusters run side by side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::postgres::PgCluster;

#[test]
fn databases_are_apart_and_data_outlives_a_restart() {
    let pg = PgCluster::start();
    let a = pg.fresh_database();
    let b = pg.fresh_database();
    assert_ne!(a, b);
    assert!(a.starts_with(&format!("postgres://postgres@127.0.0.1:{}/", pg.port())));
    for db in [&a, &b] {
        pg.psql(db, "CREATE TABLE t (name text PRIMARY KEY)");
    }
    pg.psql(&a, "INSERT INTO t VALUES ('alice')");
    assert_eq!(pg.psql(&a, "SELECT name FROM t"), "alice");
    assert_eq!(pg.psql(&b, "SELECT count(*) FROM t"), "0");

    pg.stop();
    let refused = pg.try_psql(&a, "SELECT 1").unwrap_err();
    assert!(refused.contains("127.0.0.1"), "{refused}");
    pg.start_again();
    assert_eq!(pg.psql(&a, "SELECT name FROM t"), "alice");

    // A crash-like stop keeps what was committed too (recovery on the next start).
    pg.psql(&a, "INSERT INTO t VALUES ('bob')");
    pg.kill();
    assert!(pg.try_psql(&a, "SELECT 1").is_err());
    pg.start_again();
    assert_eq!(
        pg.psql(&a, "SELECT string_agg(name, ',' ORDER BY name) FROM t"),
        "alice,bob"
    );

    // The SQL's own errors come back as errors too.
    let error = pg.try_psql(&b, "SELECT * FROM missing").unwrap_err();
    assert!(error.contains("does not exist"), "{error}");
}

#[test]
fn two_clusters_run_at_once() {
    let starting: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(PgCluster::start))
        .collect();
    let clusters: Vec<PgCluster> = starting.into_iter().map(|t| t.join().unwrap()).collect();
    let (one, two) = (&clusters[0], &clusters[1]);
    assert_ne!(one.port(), two.port());

    one.create_database("shared_name");
    two.create_database("shared_name");
    one.psql("shared_name", "CREATE TABLE t AS SELECT 1 AS x");
    assert_eq!(one.psql("shared_name", "SELECT x FROM t"), "1");
    assert!(two.try_psql("shared_name", "SELECT x FROM t").is_err());

    // Stopping one leaves the other serving.
    one.stop();
    assert_eq!(two.psql("postgres", "SELECT 2"), "2");
}
