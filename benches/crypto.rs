//! Cost of sealing and opening APEL-like messages of 1 KB to 1 MB with RSA-2048, per cipher.
//!
//! Run: `cargo bench --bench crypto -- --warm-up-time 1 --measurement-time 2`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ssm::crypto::{seal, Cipher, Identity, Opener, TrustStore};
use ssm::harness::pki::Pki;

/// APEL individual job records, repeated up to `size` bytes.
fn apel_text(size: usize) -> Vec<u8> {
    let mut out = String::with_capacity(size + 512);
    out.push_str("APEL-individual-job-message: v0.3\n");
    let mut i = 0u64;
    while out.len() < size {
        out.push_str(&format!(
            "Site: RAL-LCG2\nSubmitHost: ce{}.gridpp.rl.ac.uk:8443/cream-pbs-grid\n\
             MachineName: ce{}.gridpp.rl.ac.uk\nQueue: grid\nLocalJobId: {}\n\
             LocalUserId: atlas{:03}\nGlobalUserName: /C=UK/O=eScience/OU=CLRC/L=RAL/CN=user {}\n\
             FQAN: /atlas/Role=production/Capability=NULL\nVO: atlas\nVOGroup: /atlas\n\
             VORole: Role=production\nWallDuration: {}\nCpuDuration: {}\nProcessors: 1\n\
             NodeCount: 1\nStartTime: {}\nEndTime: {}\nInfrastructureDescription: APEL-CREAM-PBS\n\
             InfrastructureType: grid\nMemoryReal: {}\nMemoryVirtual: {}\n\
             ServiceLevelType: HEPSPEC\nServiceLevel: 10.{}\n%%\n",
            i % 7,
            i % 7,
            4_000_000 + i * 13,
            i % 500,
            i % 97,
            3600 + i * 7 % 86400,
            3000 + i * 5 % 86000,
            1_700_000_000 + i * 61,
            1_700_003_600 + i * 67,
            2_000_000 + i * 1013 % 1_000_000,
            4_000_000 + i * 2017 % 1_000_000,
            i % 10,
        ));
        i += 1;
    }
    out.truncate(size);
    out.into_bytes()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(dir.path()).expect("pki");
    let signer = Identity::load(&pki.client.cert, &pki.client.key).expect("client");
    let server = Identity::load(&pki.server.cert, &pki.server.key).expect("server");
    let trust = TrustStore::new(Some(&pki.capath), None, true).expect("trust");
    let opener = Opener::new(server.clone(), trust);

    for (label, size) in [
        ("1KB", 1024),
        ("10KB", 10 * 1024),
        ("100KB", 100 * 1024),
        ("1MB", 1024 * 1024),
    ] {
        let msg = apel_text(size);
        let mut group = c.benchmark_group(format!("crypto/{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 100 * 1024 {
            group.sample_size(20);
        }
        for cipher in Cipher::ALL {
            let body = seal(&msg, &signer, &server.cert, cipher).expect("seal");
            group.bench_with_input(BenchmarkId::new("seal", cipher), &msg, |b, msg| {
                b.iter(|| seal(msg, &signer, &server.cert, cipher).expect("seal"))
            });
            group.bench_with_input(BenchmarkId::new("open", cipher), &body, |b, body| {
                b.iter(|| opener.open(body).expect("open"))
            });
            group.bench_with_input(BenchmarkId::new("seal+open", cipher), &msg, |b, msg| {
                b.iter(|| {
                    let body = seal(msg, &signer, &server.cert, cipher).expect("seal");
                    opener.open(&body).expect("open")
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
