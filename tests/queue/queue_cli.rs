//! `ssm enqueue` and `ssm queue ls|count|purge`, run as the operator runs them.

use std::fs::{self, File};
use std::process::Output;
use std::time::{Duration, SystemTime};

use ssm::queue::{Outgoing, PathType};

fn ssm(args: &[&str], stdin: Option<&[u8]>) -> Output {
    crate::support::process::ssm_output(args, stdin)
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "ssm failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

use crate::support::process::path_str as p;

#[test]
fn enqueue_adds_files_in_order_and_prints_their_names() {
    for kind in ["dirq", "directory"] {
        let d = tempfile::tempdir().unwrap();
        let q = d.path().join("out");
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::write(&a, b"first record\n").unwrap();
        fs::write(&b, b"second record\n").unwrap();
        let out = stdout(&ssm(
            &[
                "enqueue",
                "--path",
                p(&q),
                "--path-type",
                kind,
                p(&a),
                p(&b),
            ],
            None,
        ));
        let names: Vec<&str> = out.lines().collect();
        assert_eq!(names.len(), 2, "{kind}");
        let queue = Outgoing::open(&q, kind.parse().unwrap()).unwrap();
        assert_eq!(queue.names().unwrap(), names, "{kind}: oldest first");
        assert_eq!(queue.get(names[0]).unwrap(), b"first record\n");
        assert_eq!(queue.get(names[1]).unwrap(), b"second record\n");
    }
}

#[test]
fn enqueue_reads_stdin_when_no_file_is_given() {
    let d = tempfile::tempdir().unwrap();
    let out = stdout(&ssm(
        &["enqueue", "--path", p(d.path())],
        Some(b"from stdin\0\xff"),
    ));
    let name = out.trim();
    let q = Outgoing::open(d.path(), PathType::QueueSimple).unwrap();
    assert_eq!(q.names().unwrap(), vec![name.to_string()]);
    assert_eq!(q.get(name).unwrap(), b"from stdin\0\xff");
}

#[test]
fn enqueue_fails_clearly_on_a_missing_file_or_bad_path_type() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope");
    let o = ssm(&["enqueue", "--path", p(d.path()), p(&missing)], None);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot read") && err.contains("nope"), "{err}");
    let o = ssm(
        &["enqueue", "--path", p(d.path()), "--path-type", "maildir"],
        Some(b"x"),
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("maildir"));
}

#[test]
fn queue_ls_and_count_show_elements_sizes_ages_and_locks() {
    let d = tempfile::tempdir().unwrap();
    let q = Outgoing::open(d.path(), PathType::QueueSimple).unwrap();
    let a = q.add(b"12345").unwrap();
    std::thread::sleep(Duration::from_millis(2));
    let b = q.add(b"xy").unwrap();
    assert!(q.lock(&b).unwrap());
    let out = stdout(&ssm(&["queue", "ls", "--path", p(d.path())], None));
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][0], a);
    assert_eq!(rows[0][1], "5");
    assert!(rows[0][2].parse::<u64>().unwrap() < 60);
    assert_eq!(rows[0][3], "-");
    assert_eq!(
        (rows[1][0], rows[1][1], rows[1][3]),
        (b.as_str(), "2", "locked")
    );
    let out = stdout(&ssm(&["queue", "count", "--path", p(d.path())], None));
    assert_eq!(out.trim(), "2");
}

#[test]
fn queue_purge_removes_stale_leftovers() {
    let d = tempfile::tempdir().unwrap();
    let q = Outgoing::open(d.path(), PathType::QueueSimple).unwrap();
    let a = q.add(b"data").unwrap();
    let tmp = d.path().join(&a[..8]).join("00000001000001.tmp");
    fs::write(&tmp, b"half").unwrap();
    File::open(&tmp)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(400))
        .unwrap();
    let out = stdout(&ssm(&["queue", "purge", "--path", p(d.path())], None));
    assert!(out.contains("removed 1 temporary files"), "{out}");
    assert!(!tmp.exists());
    assert_eq!(q.names().unwrap(), vec![a]);
}

#[test]
fn queue_commands_refuse_a_missing_directory() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("absent");
    for action in ["ls", "count", "purge"] {
        let o = ssm(&["queue", action, "--path", p(&missing)], None);
        assert_eq!(o.status.code(), Some(1), "{action}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
        assert!(!missing.exists(), "{action} must not create the queue");
    }
}
