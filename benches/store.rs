//! Cost of the receiver's durable store: adding 10 KB records to a `dirq` incoming queue, one
//! at a time and in batches of 16 (one fsync round per batch), on the disk under `TMPDIR`.
//!
//! Run: `cargo bench --bench store -- --warm-up-time 1 --measurement-time 3`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ssm::harness::demo::apel_message;
use ssm::queue::{Dirq, Record};

fn record(seq: usize) -> Record {
    Record {
        body: apel_message(seq, 10 * 1024),
        signer: Some("/C=UK/O=ssm-test/CN=client.example.org".into()),
        empaid: Some(format!("00000000/{seq:014x}")),
        error: None,
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Dirq::open(&dir.path().join("incoming")).expect("queue");
    let mut group = c.benchmark_group("store/10KB");
    for batch in [1usize, 16] {
        let records: Vec<Record> = (0..batch).map(record).collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("add_batch", batch), &records, |b, r| {
            b.iter(|| queue.add_batch(r).expect("add"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
