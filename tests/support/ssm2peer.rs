//! The tests' own SSM2 peer, run as a process: `ssm2peer.py` (next to this file) on
//! `stomp.py==4.1.24` — the stomp.py the Python SSM 4.0 works with — and the `openssl smime`
//! command line. It sends SSM2 messages as the Python sender does (one `SEND` with `receipt`
//! and `empa-id`, the next only after its `RECEIPT`; body = `openssl smime -sign -text`, then
//! `-encrypt -aes128` to the server certificate when asked) and receives them as the Python
//! receiver does (decrypt when the body says `pkcs7-mime`, verify signature and chain), but
//! with client acknowledgement, after writing what it got to a file.
//!
//! The venv lives in `$CARGO_TARGET_TMPDIR/pyenv-ssm2` and is built once by
//! [`super::pyenv::venv`] (one builder at a time across test binaries). No `python3` or no
//! PyPI fails the test loudly: it never skips.
#![allow(dead_code)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use ssm::harness::pki::CertFiles;

use super::brokers::Target;
use super::process::path_str;

/// What the venv holds: the Python SSM 4.0's stomp.py, and dirq to read our stores as APEL's
/// loader does.
pub const PACKAGES: &[&str] = &["stomp.py==4.1.24", "dirq"];

const SCRIPT: &str = include_str!("ssm2peer.py");

/// The venv's `python`, building the venv first if needed.
pub fn python() -> PathBuf {
    super::pyenv::venv(
        "pyenv-ssm2",
        PACKAGES,
        "import dirq, stomp; assert stomp.__version__[:2] == (4, 1), stomp.__version__",
    )
}

/// The peer script, written next to the venv once per process (so that an edited script is
/// the one that runs).
pub fn script() -> PathBuf {
    let _ = python();
    super::pyenv::file("ssm2peer.py", SCRIPT)
}

/// How the peer seals one message.
#[derive(Clone)]
pub enum Seal {
    /// The bytes as they are (hostile input).
    Raw,
    /// `openssl smime -sign -text` with this certificate.
    Sign(CertFiles),
    /// Signed, then `openssl smime -encrypt -<cipher>` to this certificate.
    Encrypt(CertFiles, PathBuf, &'static str),
}

impl Seal {
    fn spec(&self) -> String {
        match self {
            Seal::Raw => "raw".into(),
            Seal::Sign(c) => format!("sign:{}:{}", path_str(&c.cert), path_str(&c.key)),
            Seal::Encrypt(c, to, cipher) => format!(
                "encrypt:{}:{}:{}:{cipher}",
                path_str(&c.cert),
                path_str(&c.key),
                path_str(to)
            ),
        }
    }
}

/// One message for the peer to send: its `empa-id` (none: no header) and its content.
pub struct Msg {
    pub id: Option<String>,
    pub body: Vec<u8>,
    pub seal: Seal,
}

/// One message the peer received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub empaid: String,
    /// The signer DN (slash form), or why opening failed.
    pub signer: Result<String, String>,
    /// The signed content (empty when opening failed).
    pub body: Vec<u8>,
}

/// The peer bound to one broker and a scratch directory.
pub struct Peer {
    dir: PathBuf,
    conf: String,
}

impl Peer {
    pub fn new(dir: &Path, t: &Target) -> Peer {
        fs::create_dir_all(dir).unwrap();
        let addr = t.socket_addr();
        let mut conf = format!("host={}\nport={}\n", addr.ip(), addr.port());
        if let Some((l, p)) = &t.login {
            conf.push_str(&format!("login={l}\npasscode={p}\n"));
        }
        Peer {
            dir: dir.to_path_buf(),
            conf,
        }
    }

    fn file(&self, prefix: &str) -> PathBuf {
        self.dir
            .join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()))
    }

    /// The command that sends `msgs` to `dest`, `delay_ms` apart (stdout: `sent <id>` lines).
    pub fn send_cmd(&self, dest: &str, msgs: &[Msg], delay_ms: u64) -> Command {
        let mut conf = format!("{}dest={dest}\ndelay_ms={delay_ms}\n", self.conf);
        for m in msgs {
            let f = self.file("body");
            fs::write(&f, &m.body).unwrap();
            conf.push_str(&format!(
                "msg {} {} {}\n",
                m.seal.spec(),
                m.id.as_deref().unwrap_or("-"),
                path_str(&f)
            ));
        }
        let cfg = self.file("send.cfg");
        fs::write(&cfg, conf).unwrap();
        let mut c = Command::new(python());
        c.arg(script()).arg("send").arg(cfg);
        c
    }

    /// Sends `msgs` to `dest`; every one must be receipted by the broker.
    pub fn send(&self, dest: &str, msgs: &[Msg]) {
        let out = self
            .send_cmd(dest, msgs, 0)
            .output()
            .expect("run ssm2peer send");
        assert!(
            out.status.success(),
            "ssm2peer send failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let sent = String::from_utf8_lossy(&out.stdout)
            .matches("sent ")
            .count();
        assert_eq!(sent, msgs.len(), "ssm2peer: receipts");
    }

    /// Subscribes to `dest` (returns once subscribed) and collects until `expect` messages
    /// came and `idle` passed without another, or `timeout`. `recip` decrypts.
    pub fn spawn_recv(
        &self,
        dest: &str,
        capath: &Path,
        recip: Option<&CertFiles>,
        expect: usize,
        timeout: Duration,
    ) -> PeerRecv {
        let out = self.file("got");
        let ready = self.file("ready");
        let mut conf = format!(
            "{}dest={dest}\ncapath={}\nexpect={expect}\ntimeout_s={}\nidle_s=1.5\nout={}\nready={}\n",
            self.conf,
            path_str(capath),
            timeout.as_secs(),
            path_str(&out),
            path_str(&ready)
        );
        if let Some(r) = recip {
            conf.push_str(&format!(
                "recip_cert={}\nrecip_key={}\n",
                path_str(&r.cert),
                path_str(&r.key)
            ));
        }
        let cfg = self.file("recv.cfg");
        fs::write(&cfg, conf).unwrap();
        let log = self.file("recv.log");
        let mut child = Command::new(python())
            .arg(script())
            .arg("recv")
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn ssm2peer recv");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.exists() {
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "ssm2peer recv exited ({st}) before subscribing:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "ssm2peer recv: no subscription");
            std::thread::sleep(Duration::from_millis(20));
        }
        PeerRecv { child, out, log }
    }
}

/// A running peer receiver.
pub struct PeerRecv {
    child: Child,
    out: PathBuf,
    log: PathBuf,
}

impl PeerRecv {
    /// Waits for it to finish; what it received, in order.
    pub fn wait(mut self) -> Vec<Got> {
        let st = self.child.wait().expect("wait ssm2peer recv");
        assert!(
            st.success(),
            "ssm2peer recv failed ({st}):\n{}",
            fs::read_to_string(&self.log).unwrap_or_default()
        );
        parse(&fs::read_to_string(&self.out).unwrap_or_default())
    }
}

impl Drop for PeerRecv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse(text: &str) -> Vec<Got> {
    text.lines()
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let empaid = f.next().unwrap_or_default().to_string();
            let signer = f.next().unwrap_or_default().to_string();
            let rest = f.next().unwrap_or_default();
            if signer == "ERROR" {
                Got {
                    empaid,
                    signer: Err(rest.to_string()),
                    body: Vec::new(),
                }
            } else {
                let body = base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .expect("ssm2peer output base64");
                Got {
                    empaid,
                    signer: Ok(signer),
                    body,
                }
            }
        })
        .collect()
}

/// A store's `incoming/` (or `reject/`) read with the Python `dirq` package, with the Python
/// SSM's schema, as APEL's loader reads it: (body as UTF-8, signer, empaid, error) per element.
pub fn py_dirq_read(queue: &Path) -> Vec<(Vec<u8>, String, String, String)> {
    let code = r#"
import base64, sys
from dirq.queue import Queue
schema = {'body': 'string', 'signer': 'string?', 'empaid': 'string?', 'error': 'string?'}
q = Queue(sys.argv[1], schema=schema)
name = q.first()
while name:
    if q.lock(name):
        m = q.get(name)
        q.unlock(name)
        f = lambda k: base64.b64encode((m.get(k) or '').encode('utf-8')).decode()
        print(f('body'), f('signer'), f('empaid'), f('error'))
    name = q.next()
"#;
    let out = Command::new(python())
        .args(["-c", code])
        .arg(queue)
        .output()
        .expect("run python dirq");
    assert!(
        out.status.success(),
        "python dirq read failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b64 = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("base64")
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let s = |i: usize| String::from_utf8(b64(f[i])).unwrap();
            (b64(f[0]), s(1), s(2), s(3))
        })
        .collect()
}
