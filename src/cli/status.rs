//! `ssm status`: how many messages wait and how old the oldest is, for humans and scripts.
//!
//! Reads the directories only (see [`crate::queue::depth`]): safe next to a running sender or
//! receiver. `--store` reads a receiver's store (`incoming/` and `reject/`); otherwise `--path`
//! is an outgoing queue (with its local `reject/` queue, if any).

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::queue::depth::{self, Depth};
use crate::queue::{sender_reject, PathType};

/// Arguments of `ssm status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The outgoing queue directory, or with `--store` the receiver's store (parent of
    /// incoming/ and reject/).
    #[arg(long, value_name = "DIR")]
    pub path: PathBuf,
    /// Outgoing queue layout: dirq or directory [default: dirq].
    #[arg(long, value_name = "TYPE", value_parser = crate::config::values::parse_path_type, conflicts_with = "store")]
    pub path_type: Option<PathType>,
    /// `--path` is a receiver's store.
    #[arg(long)]
    pub store: bool,
    /// One JSON object on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Runs `ssm status`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.path.is_dir() {
        anyhow::bail!("{} is not a directory", args.path.display());
    }
    let depths = read(&args)?;
    let now = SystemTime::now();
    let text = if args.json {
        json(&depths, now)?
    } else {
        human(&depths, now)
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The depths `ssm status` reports for these arguments.
pub fn read(args: &Args) -> anyhow::Result<Vec<Depth>> {
    Ok(if args.store {
        depth::store(&args.path)?.to_vec()
    } else {
        vec![
            depth::outgoing(&args.path, args.path_type.unwrap_or_default())?,
            depth::dirq("reject", &sender_reject(&args.path))?,
        ]
    })
}

/// One line per queue: `incoming  12 messages, oldest 340 s (/var/spool/apel/incoming)`.
pub fn human(depths: &[Depth], now: SystemTime) -> String {
    let mut out = String::new();
    for d in depths {
        let oldest = match d.oldest_age(now) {
            Some(age) => format!(", oldest {} s", age.as_secs()),
            None => String::new(),
        };
        out.push_str(&format!(
            "{:<9} {} messages{} ({})\n",
            d.name,
            d.count,
            oldest,
            d.path.display()
        ));
    }
    out
}

/// `{"outgoing":{"path":"…","messages":3,"oldest_age_seconds":12},…}` (`null` age when empty),
/// the queues in the order given.
pub fn json(depths: &[Depth], now: SystemTime) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string(&Queues { depths, now })?;
    text.push('\n');
    Ok(text)
}

/// The depths as a JSON object keyed by queue name (a struct would fix the names).
struct Queues<'a> {
    depths: &'a [Depth],
    now: SystemTime,
}

/// One queue in `status --json`.
#[derive(serde::Serialize)]
struct QueueJson {
    path: String,
    messages: usize,
    oldest_age_seconds: Option<u64>,
}

impl serde::Serialize for Queues<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.depths.iter().map(|d| {
            let queue = QueueJson {
                path: d.path.display().to_string(),
                messages: d.count,
                oldest_age_seconds: d.oldest_age(self.now).map(|a| a.as_secs()),
            };
            (d.name, queue)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_for_humans_and_scripts() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let depths = vec![
            Depth {
                name: "outgoing",
                path: PathBuf::from("/q/\"x\""),
                count: 2,
                oldest: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(900)),
            },
            Depth {
                name: "reject",
                path: PathBuf::from("/q/reject"),
                count: 0,
                oldest: None,
            },
        ];
        assert_eq!(
            human(&depths, now),
            "outgoing  2 messages, oldest 100 s (/q/\"x\")\nreject    0 messages (/q/reject)\n"
        );
        assert_eq!(
            json(&depths, now).unwrap(),
            "{\"outgoing\":{\"path\":\"/q/\\\"x\\\"\",\"messages\":2,\"oldest_age_seconds\":100},\"reject\":{\"path\":\"/q/reject\",\"messages\":0,\"oldest_age_seconds\":null}}\n"
        );
    }

    #[test]
    fn json_paths_with_control_characters_read_back() {
        let depths = vec![Depth {
            name: "incoming",
            path: PathBuf::from("/q/a\nb\\c\u{1}"),
            count: 1,
            oldest: None,
        }];
        let text = json(&depths, SystemTime::now()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["incoming"]["path"], "/q/a\nb\\c\u{1}");
        assert_eq!(back["incoming"]["messages"], 1);
        assert!(back["incoming"]["oldest_age_seconds"].is_null());
    }
}
