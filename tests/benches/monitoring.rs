//! What monitoring adds to one prediction request, measured alone: the
//! per-request work `serving::predict::score` does when monitoring is on
//! (sketches and data-quality counts, the label book, the request id),
//! without HTTP or the sandbox, so that the serving benchmark's "monitoring
//! on ÷ off" ratio can be read against it (issue 8: monitoring costs at most
//! 5 % of throughput). Run with
//! `env -u RUST_BACKTRACE cargo bench -p airlock-tests --bench monitoring`.

use airlock_core::types::Batch;
use airlock_rollout::compare::{LabelBook, Recorded};
use airlock_rollout::sketch::{DistributionMonitor, Reference};
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

/// The allocator the `airlock` binary serves with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Requests per measurement: enough to fill the label book (100,000, the
/// default) and keep evicting from it, as a server that has run a while does.
const REQUESTS: usize = 400_000;

fn per_request(label: &str, mut f: impl FnMut(usize)) -> f64 {
    for i in 0..REQUESTS / 10 {
        f(i);
    }
    let t = Instant::now();
    for i in 0..REQUESTS {
        f(i);
    }
    let ns = t.elapsed().as_nanos() as f64 / REQUESTS as f64;
    println!("{label:<44} {ns:>8.0} ns per request");
    ns
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let eval = root.join("examples/breast-cancer/data/eval.csv");
    let data = airlock_gate::data::read_csv(&eval, None, Some("target")).expect("eval.csv");
    let names: Vec<String> = data.batch.columns.iter().map(|c| c.name.clone()).collect();
    let rows: Vec<Batch> = (0..data.batch.rows as usize)
        .map(|r| data.batch.rows_in(r..r + 1).expect("a row of the batch"))
        .collect();
    let n = rows.len();
    let reference = Reference::from_batch(&data.batch, 5_000);
    println!(
        "monitoring per 1-row request ({} features, {n} distinct rows, {REQUESTS} requests)",
        names.len()
    );

    let mut monitor = DistributionMonitor::new(&names, Some(reference.clone()));
    let sketches = per_request("sketches and data-quality counts", |i| {
        let score = [(i % 97) as f64 / 97.0];
        monitor.observe(&rows[i % n], &score);
    });
    black_box(&monitor);

    let ids: Vec<String> = (0..REQUESTS + REQUESTS / 10)
        .map(|_| airlock_server::serving::predict::request_id().expect("randomness"))
        .collect();
    let mut book = LabelBook::new(100_000);
    let labels = per_request("label book (record, evicting when full)", |i| {
        book.record(&ids[i], "1.0.0", Recorded::Class((i % 2) as u32));
    });
    black_box(&book);

    let ids = per_request("request id", |_| {
        black_box(airlock_server::serving::predict::request_id().expect("randomness"));
    });

    let mut monitor = DistributionMonitor::new(&names, Some(reference));
    let mut book = LabelBook::new(100_000);
    let all = per_request("all of it (as score() does)", |i| {
        let id = airlock_server::serving::predict::request_id().expect("randomness");
        let score = [(i % 97) as f64 / 97.0];
        monitor.observe(&rows[i % n], &score);
        book.record(&id, "1.0.0", Recorded::Class((i % 2) as u32));
    });
    black_box((&monitor, &book));
    println!(
        "sum of the parts {:.0} ns; all together {all:.0} ns",
        sketches + labels + ids
    );
}
