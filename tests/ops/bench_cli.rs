//! `ssm bench` runs end to end with tiny numbers and prints a valid JSON line at the end.
//! (Speed itself is not asserted here: see `scripts/bench-guard.sh` and docs/performance.md.)

use std::collections::HashMap;
use std::process::Command;

/// A JSON value of a flat object: a number or a string.
#[derive(Debug, PartialEq)]
enum Value {
    Num(f64),
    Str(String),
}

/// Parses a flat JSON object of numbers and strings (what `ssm bench` prints); `None` when the
/// text is not exactly that (not JSON, or a value that is neither a number nor a string).
fn parse_flat_json(text: &str) -> Option<HashMap<String, Value>> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).ok()?;
    object
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                serde_json::Value::Number(n) => Value::Num(n.as_f64()?),
                serde_json::Value::String(s) => Value::Str(s),
                _ => return None,
            };
            Some((key, value))
        })
        .collect()
}

#[test]
fn the_flat_json_parser_rejects_what_is_not_json() {
    assert!(parse_flat_json("{\"a\":1,\"b\":\"x\\\"y\"}").is_some());
    assert!(parse_flat_json("{\"a\":1,}").is_none());
    assert!(parse_flat_json("{\"a\":1} x").is_none());
    assert!(parse_flat_json("{\"a\":nan}").is_none());
    assert!(parse_flat_json("{a:1}").is_none());
    assert!(parse_flat_json("{\"a\":null}").is_none());
    assert!(parse_flat_json("{\"a\":{\"b\":1}}").is_none());
}

#[test]
fn bench_runs_and_prints_json() {
    let out = Command::new(crate::support::process::SSM)
        .args([
            "bench",
            "--senders",
            "2",
            "--messages",
            "3",
            "--size",
            "1k",
            "--cipher",
            "des3",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("run ssm bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ssm bench failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("throughput:"), "no human report:\n{stdout}");
    let last = stdout.lines().last().expect("some output");
    let json = parse_flat_json(last).unwrap_or_else(|| panic!("not flat JSON: {last}"));
    let num = |k: &str| match json.get(k) {
        Some(Value::Num(n)) => *n,
        other => panic!("{k}: {other:?} in {last}"),
    };
    assert_eq!(num("senders"), 2.0);
    assert_eq!(num("messages"), 3.0);
    assert_eq!(num("size"), 1024.0);
    assert_eq!(num("acked"), 6.0);
    assert_eq!(json.get("cipher"), Some(&Value::Str("des3".into())));
    // The store was in a temporary directory: its file system is named, as `describe` sees it.
    let fs = ssm::ops::filesystem::describe(&std::env::temp_dir()).to_string();
    assert_ne!(fs, "unknown");
    assert_eq!(json.get("store_fs"), Some(&Value::Str(fs.clone())));
    assert!(stdout.contains(&format!("store on:      {fs}")), "{stdout}");
    assert!(num("msgs_per_s") > 0.0);
    assert!(num("mb_per_s") > 0.0);
    assert!(num("p99_ms") >= num("p50_ms"));
    // Both children really ran as processes of their own and reported their memory.
    assert!(num("sender_peak_rss_kb") > 1000.0);
    assert!(num("receiver_peak_rss_kb") > 1000.0);
}

#[test]
fn bench_json_only_prints_one_line() {
    let out = Command::new(crate::support::process::SSM)
        .args(["bench", "--json", "--messages", "2", "--size", "300"])
        .output()
        .expect("run ssm bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(parse_flat_json(&stdout).is_some(), "{stdout}");
}

#[test]
fn bench_refuses_bad_arguments() {
    refused(&[
        &["bench", "--size", "ten"][..],
        &["bench", "--senders", "0"],
        &["bench", "--cipher", "rc4"],
    ]);
}

/// Each of these command lines fails, with a message on standard error.
fn refused(cases: &[&[&str]]) {
    for args in cases {
        let out = Command::new(crate::support::process::SSM)
            .args(*args)
            .output()
            .expect("run ssm bench");
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn bench_over_ams_reports_both_sides_and_the_bound() {
    // A very short drain: the senders fill the subscription of an in-process ssm ams-server,
    // then the receiver empties it; both rates, CPU, the RSA ratio and memory must be there.
    let out = Command::new(crate::support::process::SSM)
        .args([
            "bench",
            "--json",
            "--transport",
            "ams",
            "--mode",
            "drain",
            "--messages",
            "20",
            "--size",
            "2k",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("run ssm bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ssm bench --transport ams failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("some output");
    let json = parse_flat_json(last).unwrap_or_else(|| panic!("not flat JSON: {last}"));
    let num = |k: &str| match json.get(k) {
        Some(Value::Num(n)) => *n,
        other => panic!("{k}: {other:?} in {last}"),
    };
    assert_eq!(json.get("transport"), Some(&Value::Str("ams".into())));
    assert_eq!(json.get("mode"), Some(&Value::Str("drain".into())));
    match json.get("broker") {
        Some(Value::Str(b)) => assert!(b.contains("ssm ams-server"), "{b}"),
        other => panic!("broker: {other:?}"),
    }
    // AMS carries SSM2 only: the bench chose it without being told.
    assert_eq!(num("ssm_version"), 2.0);
    assert_eq!(num("acked"), 20.0);
    assert_eq!(num("retried"), 0.0);
    assert!(num("msgs_per_s") > 0.0, "{last}");
    assert!(num("drain_msgs_per_s") > 0.0, "{last}");
    // Each side does at least its one private-key operation per message, and more besides.
    assert!(
        num("rsa_sign_ms") > 0.0 && num("rsa_decrypt_ms") > 0.0,
        "{last}"
    );
    assert!(num("sender_rsa_ratio") > 1.0, "{last}");
    assert!(num("receiver_rsa_ratio") > 1.0, "{last}");
    assert!(num("sender_peak_rss_kb") > 1000.0, "{last}");
    assert!(num("receiver_peak_rss_kb") > 1000.0, "{last}");
    assert!(num("p99_ms") >= num("p50_ms"), "{last}");
}

#[test]
fn bench_over_ams_refuses_v1_and_a_stomp_broker() {
    refused(&[
        &["bench", "--transport", "ams", "--ssm-version", "1"][..],
        &["bench", "--transport", "ams", "--broker", "localhost:61613"],
    ]);
}
