//! Preparing the next message while the current one waits: lock, read, seal. No network.
//!
//! Guarantees:
//! - A message is sealed only once it is locked by us, so that two senders on one queue never
//!   send the same element; every path that gives up on a prepared message unlocks it.
//! - Sealing runs on the blocking pool, never on a runtime thread.
//! - The `ssm-msg-id` of an element ([`wire_id`]) is stable across resends and printable ASCII.

use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{Sender, SenderError};
use crate::crypto::{self, CryptoError};
use crate::protocol::Version;

/// A locked message whose sealing runs on the blocking pool.
pub(super) struct Preparing {
    /// The queue element.
    pub name: String,
    /// Its content, as queued (kept for the reject queue).
    pub data: Vec<u8>,
    /// Its MD5, which the receiver's ack must carry.
    pub md5: String,
    /// The sealing.
    pub task: JoinHandle<Result<Vec<u8>, CryptoError>>,
}

impl Sender {
    /// Locks the next lockable element of `names` and starts sealing it on the blocking pool,
    /// so that it is ready when the message in flight is acked. `None` when there is none left.
    pub(super) async fn prepare_next(
        &mut self,
        names: &mut impl Iterator<Item = String>,
    ) -> Result<Option<Preparing>, SenderError> {
        for name in names.by_ref() {
            if !self.outgoing.lock(&name)? {
                debug!(%name, "locked by someone else or gone; skipping");
                continue;
            }
            match self.start_sealing(&name).await {
                Ok(p) => return Ok(Some(p)),
                Err(e) => {
                    self.unlock(&name);
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    async fn start_sealing(&mut self, name: &str) -> Result<Preparing, SenderError> {
        let data = self.outgoing.get(name)?;
        let md5 = crypto::message_id(&data);
        let identity = self.settings.identity.clone();
        let cipher = self.settings.cipher;
        let to_seal = data.clone();
        let task = match self.settings.version {
            Version::V1 => {
                let cert = self.server_cert().await?;
                tokio::task::spawn_blocking(move || {
                    crypto::seal(&to_seal, &identity, &cert, cipher)
                })
            }
            // SSM2 encrypts only to a configured certificate; there is no certreq.
            Version::V2 => {
                let cert = self.server_cert.clone();
                tokio::task::spawn_blocking(move || {
                    crypto::seal_v2(&to_seal, &identity, cert.as_ref(), cipher)
                })
            }
        };
        Ok(Preparing {
            name: name.to_string(),
            data,
            md5,
            task,
        })
    }

    /// Gives a prepared message back to the queue: its sealing stops, its lock goes.
    pub(super) fn abandon(&self, prepared: Preparing) {
        prepared.task.abort();
        self.unlock(&prepared.name);
    }

    pub(super) fn unlock(&self, name: &str) {
        if let Err(err) = self.outgoing.unlock(name) {
            warn!(%err, %name, "could not unlock");
        }
    }
}

/// The `ssm-msg-id` for a queue element: its name, with every byte that is not printable
/// ASCII (and `%`, and space) written as `%XX`.
///
/// Receivers refuse header values outside printable ASCII, and a `directory` queue takes
/// whatever file names other tools chose; the encoding is stable across resends and keeps
/// distinct names distinct. Dirq element names are left as they are.
pub(super) fn wire_id(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::wire_id;

    #[test]
    fn wire_ids_are_printable_ascii_and_distinct() {
        assert_eq!(
            wire_id("6b06a840/6b06a85987a6c8"),
            "6b06a840/6b06a85987a6c8"
        );
        assert_eq!(wire_id("a:b;c=d"), "a:b;c=d");
        assert_eq!(wire_id("with space"), "with%20space");
        assert_eq!(wire_id("café"), "caf%C3%A9");
        assert_eq!(wire_id("a\nb"), "a%0Ab");
        assert_ne!(wire_id("%20"), wire_id(" "));
    }
}
