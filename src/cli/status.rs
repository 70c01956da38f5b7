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
        json(&depths, now)
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

/// `{"outgoing":{"path":"…","messages":3,"oldest_age_seconds":12},…}` (`null` age when empty).
pub fn json(depths: &[Depth], now: SystemTime) -> String {
    let fields: Vec<String> = depths
        .iter()
        .map(|d| {
            let age = d
                .oldest_age(now)
                .map_or("null".to_string(), |a| a.as_secs().to_string());
            format!(
                "\"{}\":{{\"path\":{},\"messages\":{},\"oldest_age_seconds\":{}}}",
                d.name,
                json_string(&d.path.display().to_string()),
                d.count,
                age
            )
        })
        .collect();
    format!("{{{}}}\n", fields.join(","))
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
            json(&depths, now),
            "{\"outgoing\":{\"path\":\"/q/\\\"x\\\"\",\"messages\":2,\"oldest_age_seconds\":100},\"reject\":{\"path\":\"/q/reject\",\"messages\":0,\"oldest_age_seconds\":null}}\n"
        );
    }
}
