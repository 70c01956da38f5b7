//! Several consumers draining one queue at once (each with its own queue object, as separate
//! processes would) take every element exactly once: locks are exclusive.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

use ssm::queue::{Dirq, Outgoing, PathType, Record};

const N: usize = 200;
const CONSUMERS: usize = 4;

fn drain_outgoing(path: &Path, kind: PathType) -> Vec<Vec<u8>> {
    let q = Outgoing::open(path, kind).unwrap();
    let mut got = Vec::new();
    loop {
        let names = q.names().unwrap();
        if names.is_empty() {
            return got;
        }
        for name in names {
            if q.lock(&name).unwrap() {
                got.push(q.get(&name).unwrap());
                q.remove(&name).unwrap();
            }
        }
    }
}

fn check(all: Vec<Vec<u8>>) {
    assert_eq!(all.len(), N, "every element taken exactly once");
    let set: BTreeSet<Vec<u8>> = all.into_iter().collect();
    let want: BTreeSet<Vec<u8>> = (0..N).map(|i| format!("m{i}").into_bytes()).collect();
    assert_eq!(set, want);
}

#[test]
fn concurrent_consumers_of_outgoing_queues_take_each_element_once() {
    for kind in [PathType::QueueSimple, PathType::Directory] {
        let d = tempfile::tempdir().unwrap();
        let q = Outgoing::open(d.path(), kind).unwrap();
        for i in 0..N {
            q.add(format!("m{i}").as_bytes()).unwrap();
        }
        let all = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..CONSUMERS)
            .map(|_| {
                let (path, all) = (d.path().to_path_buf(), all.clone());
                thread::spawn(move || {
                    let got = drain_outgoing(&path, kind);
                    all.lock().unwrap().extend(got);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        check(Arc::try_unwrap(all).unwrap().into_inner().unwrap());
    }
}

#[test]
fn concurrent_consumers_of_a_dirq_take_each_element_once() {
    let d = tempfile::tempdir().unwrap();
    let q = Dirq::open(d.path()).unwrap();
    let recs: Vec<Record> = (0..N)
        .map(|i| Record {
            body: format!("m{i}").into_bytes(),
            ..Record::default()
        })
        .collect();
    q.add_batch(&recs).unwrap();
    let all = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let (path, all) = (d.path().to_path_buf(), all.clone());
            thread::spawn(move || {
                let q = Dirq::open(&path).unwrap();
                let mut got = Vec::new();
                loop {
                    let names = q.names().unwrap();
                    if names.is_empty() {
                        break;
                    }
                    for name in names {
                        if q.lock(&name).unwrap() {
                            got.push(q.get(&name).unwrap().body);
                            q.remove(&name).unwrap();
                        }
                    }
                }
                all.lock().unwrap().extend(got);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    check(Arc::try_unwrap(all).unwrap().into_inner().unwrap());
}
