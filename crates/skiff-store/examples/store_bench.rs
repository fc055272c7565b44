//! Write throughput and latency of the store against a raw SQLite baseline, in one run.
//!
//!     cargo run --release -p skiff-store --example store_bench [-- WRITES_PER_CASE]
//!
//! Cases (each in a fresh database in a temporary directory on the current disk — set TMPDIR
//! to measure another one): raw SQLite, one autocommitted INSERT per write (WAL,
//! synchronous=FULL: the "one fsync per write" floor); then the store's `create` of ~2 KB
//! JSON values with 1, 8 and 64 concurrent writers. Rounds are interleaved (the machine is
//! noisy) and medians of the rounds' throughput are printed with the ratio to the baseline.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_store::{SqliteStore, Store};

const ROUNDS: usize = 3;

fn value(i: usize) -> Vec<u8> {
    let mut s = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"pod-{i}","namespace":"default","labels":{{"app":"bench"}}}},"spec":{{"containers":[{{"name":"c","image":"busybox","args":["#
    );
    while s.len() < 2000 {
        s.push_str(r#""sleep","3600","#);
    }
    s.push_str(r#""x"]}]}}"#);
    s.into_bytes()
}

struct Sample {
    writes_per_s: f64,
    lat: Vec<Duration>,
}

fn pct(lat: &mut [Duration], p: f64) -> Duration {
    lat.sort();
    lat[((lat.len() as f64 - 1.0) * p).round() as usize]
}

fn raw_sqlite(dir: &Path, n: usize) -> Sample {
    let conn = rusqlite::Connection::open(dir.join("raw.sqlite")).expect("open raw");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE log (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, value BLOB);
         CREATE INDEX log_name_id ON log (name, id);",
    )
    .expect("schema");
    let mut st = conn
        .prepare("INSERT INTO log (name, value) VALUES (?1, ?2)")
        .expect("prepare");
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        st.execute(rusqlite::params![
            format!("/registry/pods/default/pod-{i}"),
            value(i)
        ])
        .expect("insert");
        lat.push(t.elapsed());
    }
    Sample {
        writes_per_s: n as f64 / start.elapsed().as_secs_f64(),
        lat,
    }
}

async fn store(dir: &Path, n: usize, writers: usize) -> Sample {
    let s: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join(format!("store-{writers}.sqlite"))).expect("open"));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (w..n).step_by(writers) {
                let v = value(i);
                let t = Instant::now();
                s.create(&format!("/registry/pods/default/pod-{i}"), v)
                    .await
                    .expect("create");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.extend(t.await.expect("writer task"));
    }
    Sample {
        writes_per_s: n as f64 / start.elapsed().as_secs_f64(),
        lat,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let cases: [(&str, usize); 4] = [
        ("raw sqlite, 1 insert/txn", 0),
        ("store create, 1 writer", 1),
        ("store create, 8 writers", 8),
        ("store create, 64 writers", 64),
    ];
    println!(
        "{n} writes of {} B JSON per case, {ROUNDS} interleaved rounds",
        value(0).len()
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut lats: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        for (ci, (_, writers)) in cases.iter().enumerate() {
            let dir = tempfile::tempdir().expect("tempdir");
            let s = if *writers == 0 {
                let d = dir.path().to_path_buf();
                tokio::task::spawn_blocking(move || raw_sqlite(&d, n))
                    .await
                    .expect("raw")
            } else {
                store(dir.path(), n, *writers).await
            };
            rates[ci].push(s.writes_per_s);
            lats[ci].extend(s.lat);
        }
    }
    let base = median(rates[0].clone());
    println!(
        "{:<28} {:>10} {:>8} {:>9} {:>9}",
        "case", "writes/s", "vs raw", "p50 ms", "p99 ms"
    );
    for (ci, (name, _)) in cases.iter().enumerate() {
        let r = median(rates[ci].clone());
        let p50 = pct(&mut lats[ci], 0.50).as_secs_f64() * 1e3;
        let p99 = pct(&mut lats[ci], 0.99).as_secs_f64() * 1e3;
        println!(
            "{name:<28} {r:>10.0} {:>7.2}x {p50:>9.2} {p99:>9.2}",
            r / base
        );
    }
}
