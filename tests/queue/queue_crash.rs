//! Crash safety of the queues: a writer that dies at any point never leaves a visible partial
//! element, and what it leaves behind is cleaned by `purge`.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use ssm::queue::{Dirq, Outgoing, PathType, Record};

fn backdate(path: &Path, secs: u64) {
    File::open(path)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn a_leftover_tmp_file_is_invisible_and_purged() {
    let d = tempfile::tempdir().unwrap();
    let q = Outgoing::open(d.path(), PathType::QueueSimple).unwrap();
    let kept = q.add(b"complete").unwrap();
    // What a writer killed between its write and its link leaves behind.
    let tmp = d.path().join(&kept[..8]).join("00000001000001.tmp");
    fs::write(&tmp, b"partial").unwrap();
    assert_eq!(q.names().unwrap(), vec![kept.clone()]);
    assert_eq!(q.count().unwrap(), 1);
    assert_eq!(
        q.purge().unwrap().temporary_removed,
        0,
        "too young to purge"
    );
    backdate(&tmp, 301);
    assert_eq!(q.purge().unwrap().temporary_removed, 1);
    assert!(!tmp.exists());
    assert_eq!(q.names().unwrap(), vec![kept]);
}

#[test]
fn a_half_built_dirq_element_is_invisible_and_purged() {
    let d = tempfile::tempdir().unwrap();
    let q = Dirq::open(d.path()).unwrap();
    let rec = Record {
        body: b"full".to_vec(),
        ..Record::default()
    };
    let kept = q.add(&rec).unwrap();
    let half = d.path().join("temporary").join("00000001000001");
    fs::create_dir(&half).unwrap();
    fs::write(half.join("body"), b"par").unwrap();
    assert_eq!(q.names().unwrap(), vec![kept.clone()]);
    backdate(&half, 301);
    assert_eq!(q.purge().unwrap().temporary_removed, 1);
    assert!(!half.exists());
    assert_eq!(q.get(&kept).unwrap(), rec);
}

/// Kills `ssm enqueue` at varying moments while it writes a 2 MB message; every element that
/// ever becomes visible must be the whole message.
fn kill_writers_in_a_loop(kind: &str) {
    let d = tempfile::tempdir().unwrap();
    let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let file = d.path().join("payload");
    fs::write(&file, &payload).unwrap();
    let qpath = d.path().join("q");
    for i in 0..30u64 {
        let mut child = Command::new(crate::support::process::SSM)
            .args(["enqueue", "--path-type", kind, "--path"])
            .arg(&qpath)
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(500 * (i % 12)));
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
    }
    let kind: PathType = kind.parse().unwrap();
    let q = Outgoing::open(&qpath, kind).unwrap();
    let names = q.names().unwrap();
    for name in &names {
        assert!(q.get(name).unwrap() == payload, "element {name} is partial");
    }
    let leftovers = walk(&qpath).len() - names.len();
    eprintln!("{kind}: {} complete, {leftovers} other files", names.len());
    // Whatever the kills left behind is cleaned once it is old enough.
    q.purge_with(Duration::from_nanos(1), Duration::from_nanos(1))
        .unwrap();
    assert_eq!(q.names().unwrap(), names);
    let files = walk(&qpath);
    assert_eq!(files.len(), names.len(), "leftovers after purge: {files:?}");
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk(&e));
        } else {
            out.push(e);
        }
    }
    out
}

#[test]
fn killing_enqueue_never_leaves_a_partial_dirq_element() {
    kill_writers_in_a_loop("dirq");
}

#[test]
fn killing_enqueue_never_leaves_a_partial_directory_message() {
    kill_writers_in_a_loop("directory");
}
