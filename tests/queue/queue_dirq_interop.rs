//! Interoperability of `ssm::queue` with the reference Python `dirq` package (from PyPI), in
//! both directions, for the outgoing `QueueSimple` and the incoming/reject `Queue` with schema.

use crate::support::pyenv;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ssm::queue::{Dirq, MessageStore, Outgoing, PathType, Record};

const INCOMING_SCHEMA: &str = "{'body': 'string', 'signer': 'string?', 'empaid': 'string?'}";
const REJECT_SCHEMA: &str =
    "{'body': 'string', 'signer': 'string?', 'empaid': 'string?', 'error': 'string?'}";

/// Runs a Python script with the queue path as `sys.argv[1]` and returns its stdout.
fn py(script: &str, args: &[&str]) -> String {
    let out = Command::new(pyenv::python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python output is UTF-8")
}

use crate::support::process::path_str as s;

#[test]
fn python_queue_simple_adds_and_ssm_reads_locks_removes() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("out");
    let names = py(
        r#"
import sys, time
from dirq.QueueSimple import QueueSimple
q = QueueSimple(sys.argv[1])
for i in range(20):
    print(q.add(("record %d\n" % i).encode()))
"#,
        &[s(&path)],
    );
    let py_names: Vec<String> = names.lines().map(str::to_string).collect();
    assert_eq!(py_names.len(), 20);
    let q = Outgoing::open(&path, PathType::QueueSimple).unwrap();
    let ours = q.names().unwrap();
    assert_eq!(q.count().unwrap(), 20);
    // Python's names are in insertion order; ours sort by name, which is time order.
    let mut expected = py_names.clone();
    expected.sort();
    assert_eq!(ours, expected);
    // A lock taken by Python is respected by ssm.
    py(
        "import sys\nfrom dirq.QueueSimple import QueueSimple\nassert QueueSimple(sys.argv[1]).lock(sys.argv[2])",
        &[s(&path), &py_names[0]],
    );
    assert!(!q.lock(&py_names[0]).unwrap());
    for (i, name) in py_names.iter().enumerate().skip(1) {
        assert!(q.lock(name).unwrap());
        assert_eq!(q.get(name).unwrap(), format!("record {i}\n").into_bytes());
        q.remove(name).unwrap();
    }
    let left = py(
        "import sys\nfrom dirq.QueueSimple import QueueSimple\nprint(QueueSimple(sys.argv[1]).count())",
        &[s(&path)],
    );
    assert_eq!(left.trim(), "1");
}

#[test]
fn ssm_adds_and_python_queue_simple_reads_locks_removes() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("out");
    let q = Outgoing::open(&path, PathType::QueueSimple).unwrap();
    let mut added = Vec::new();
    for i in 0..20 {
        added.push(q.add(format!("msg {i}\u{e9}").as_bytes()).unwrap());
    }
    // ssm holds a lock on the last one: Python must not get it.
    assert!(q.lock(&added[19]).unwrap());
    let out = py(
        r#"
import sys
from dirq.QueueSimple import QueueSimple
q = QueueSimple(sys.argv[1])
print(q.count())
for name in q:
    if not q.lock(name):
        print("busy " + name)
        continue
    data = q.get(name)
    q.remove(name)
    print(name + " " + data.decode("utf-8"))
"#,
        &[s(&path)],
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("20"));
    let rest: Vec<&str> = lines.collect();
    assert_eq!(rest.len(), 20);
    for (i, line) in rest.iter().take(19).enumerate() {
        assert_eq!(*line, format!("{} msg {i}\u{e9}", added[i]));
    }
    assert_eq!(rest[19], format!("busy {}", added[19]));
    assert_eq!(q.names().unwrap(), vec![added[19].clone()]);
}

fn rec(i: usize, error: Option<&str>) -> Record {
    Record {
        body: format!("APEL-summary-job-message: v0.3\nSite: S{i}\n%%\n").into_bytes(),
        signer: Some(format!("/C=UK/O=eScience/CN=host{i}.example.org")),
        empaid: if i % 2 == 0 {
            Some(format!("id-{i}"))
        } else {
            None
        },
        error: error.map(str::to_string),
    }
}

#[test]
fn ssm_incoming_and_reject_are_read_by_python_queue_with_schema() {
    let d = tempfile::tempdir().unwrap();
    let store = MessageStore::open(d.path()).unwrap();
    let inc: Vec<Record> = (0..6).map(|i| rec(i, None)).collect();
    let mut inc_names = store.incoming.add_batch(&inc[..3]).unwrap();
    for r in &inc[3..] {
        inc_names.push(store.incoming.add(r).unwrap());
    }
    let rej = [
        rec(7, Some("signer not in allowed DNs")),
        rec(8, Some("bad\tsig\n")),
    ];
    let rej_names = store.reject.add_batch(&rej).unwrap();
    let script = r#"
import sys, ast
from dirq.queue import Queue
q = Queue(sys.argv[1], schema=ast.literal_eval(sys.argv[2]))
for name in q:
    assert q.lock(name)
    e = q.get(name)
    q.remove(name)
    print(name)
    for k in sorted(e):
        print(k + "=" + e[k].encode("unicode_escape").decode("ascii"))
    print("")
"#;
    let check = |dir: &Dirq, schema: &str, names: &[String], recs: &[Record]| {
        let out = py(script, &[s(dir.path()), schema]);
        let got = parse_listing(&out);
        assert_eq!(got.len(), recs.len());
        for ((name, fields), (want_name, want)) in got.iter().zip(names.iter().zip(recs)) {
            assert_eq!(name, want_name);
            assert_eq!(
                fields.get("body").map(|s| s.as_bytes()),
                Some(&want.body[..])
            );
            assert_eq!(fields.get("signer"), want.signer.as_ref());
            assert_eq!(fields.get("empaid"), want.empaid.as_ref());
            assert_eq!(fields.get("error"), want.error.as_ref());
        }
        assert_eq!(dir.count().unwrap(), 0);
    };
    check(&store.incoming, INCOMING_SCHEMA, &inc_names, &inc);
    check(&store.reject, REJECT_SCHEMA, &rej_names, &rej);
}

/// Parses the listing printed above: blocks of a name line then `field=escaped value` lines.
fn parse_listing(flat: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for block in flat.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut lines = block.lines();
        let name = lines.next().unwrap().to_string();
        let mut fields = BTreeMap::new();
        for l in lines {
            let (k, v) = l.split_once('=').unwrap();
            fields.insert(k.to_string(), unescape(v));
        }
        out.push((name, fields));
    }
    out
}

fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            other => panic!("unexpected escape {other:?} in {v}"),
        }
    }
    out
}

#[test]
fn python_queue_adds_and_ssm_reads_incoming_and_reject() {
    let d = tempfile::tempdir().unwrap();
    let script = r#"
import sys, ast
from dirq.queue import Queue
q = Queue(sys.argv[1], schema=ast.literal_eval(sys.argv[2]))
print(q.add({'body': 'line one\nline two\n', 'signer': '/C=UK/CN=a', 'empaid': 'm1'}))
print(q.add({'body': 'only body \u00e9'}))
if len(sys.argv) > 3:
    print(q.add({'body': 'rejected', 'signer': '/CN=b', 'error': 'bad signature'}))
"#;
    let inc_path = d.path().join("incoming");
    let rej_path = d.path().join("reject");
    let inc_names: Vec<String> = py(script, &[s(&inc_path), INCOMING_SCHEMA])
        .lines()
        .map(str::to_string)
        .collect();
    let rej_names: Vec<String> = py(script, &[s(&rej_path), REJECT_SCHEMA, "reject"])
        .lines()
        .map(str::to_string)
        .collect();
    let store = MessageStore::open(d.path()).unwrap();
    assert_eq!(store.incoming.names().unwrap(), inc_names);
    assert_eq!(store.reject.names().unwrap(), rej_names);
    let one = store.incoming.get(&inc_names[0]).unwrap();
    assert_eq!(
        one,
        Record {
            body: b"line one\nline two\n".to_vec(),
            signer: Some("/C=UK/CN=a".into()),
            empaid: Some("m1".into()),
            error: None
        }
    );
    let two = store.incoming.get(&inc_names[1]).unwrap();
    assert_eq!(two.body, "only body \u{e9}".as_bytes());
    assert_eq!((two.signer, two.empaid), (None, None));
    let r = store.reject.get(&rej_names[2]).unwrap();
    assert_eq!(r.error.as_deref(), Some("bad signature"));
    // A lock taken by Python is respected, and ours by Python.
    assert!(store.incoming.lock(&inc_names[0]).unwrap());
    let locked = py(
        "import sys\nfrom dirq.queue import Queue\nq = Queue(sys.argv[1])\nprint(q.lock(sys.argv[2]), q.lock(sys.argv[3]))",
        &[s(&inc_path), &inc_names[0], &inc_names[1]],
    );
    assert_eq!(locked.trim(), "False True");
    assert!(!store.incoming.lock(&inc_names[1]).unwrap());
    store.incoming.remove(&inc_names[0]).unwrap();
    store.incoming.remove(&inc_names[1]).unwrap();
    let count = py(
        "import sys\nfrom dirq.queue import Queue\nprint(Queue(sys.argv[1]).count())",
        &[s(&inc_path)],
    );
    assert_eq!(count.trim(), "0");
}

#[test]
fn python_writer_and_ssm_reader_at_the_same_time_lose_nothing() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("out");
    let q = Outgoing::open(&path, PathType::QueueSimple).unwrap();
    let mut writer = Command::new(pyenv::python())
        .arg("-c")
        .arg(
            r#"
import sys
from dirq.QueueSimple import QueueSimple
q = QueueSimple(sys.argv[1])
for i in range(500):
    q.add(("m%d" % i).encode())
"#,
        )
        .arg(&path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = writer.try_wait().unwrap();
        let names = q.names().unwrap();
        if names.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
        }
        for name in names {
            if q.lock(&name).unwrap() {
                seen.push(String::from_utf8(q.get(&name).unwrap()).unwrap());
                q.remove(&name).unwrap();
            }
        }
        if let Some(status) = done {
            assert!(status.success(), "python writer failed: {status}");
            if q.count().unwrap() == 0 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "drain did not finish");
    }
    let got: BTreeSet<String> = seen.iter().cloned().collect();
    let want: BTreeSet<String> = (0..500).map(|i| format!("m{i}")).collect();
    assert_eq!(seen.len(), 500, "each element read exactly once");
    assert_eq!(got, want);
}
