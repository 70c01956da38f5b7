//! The AMS path of the harness: an `ssm ams-server` in this process, and the run's
//! configuration files said for it. Shared by `ssm demo --transport ams` and
//! `ssm bench --transport ams`, so that both run the same server with the same configuration.
//!
//! Guarantees:
//! - The server listens on a free loopback port with the run's throwaway server certificate
//!   (which names `localhost`), serves one project (`accounting`), one topic and one
//!   subscription of it, and one token that may publish and consume. The subscription exists
//!   before anything is published, so it keeps everything published from the start (a receiver
//!   started later drains it all).
//! - Senders and the receiver are configured as an operator would change a STOMP configuration
//!   for AMS: the files [`Setup`] writes for STOMP, with `protocol = AMS`, `[broker] host`,
//!   `ams_project`, `token`, the topic or subscription as `destination`, and `ssm_version = 2`
//!   (AMS carries SSM2 only). They are then read by the ordinary loader and built by the same
//!   code as `ssm send -c` and `ssm receive -c`.
//! - The server is in memory only and is stopped by [`AmsRun::shutdown`] (or when dropped).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::ams_server::{self, AmsServerConfig, AmsServerHandle, Role, StateConfig};
use crate::crypto::Cipher;
use crate::harness::demo::{SenderOptions, Setup};
use crate::protocol::Version;
use crate::stomp::BrokerAddr;

/// The AMS project the harness's server serves (the real service's name for accounting).
const PROJECT: &str = "accounting";

/// An `ssm ams-server` running in this process for one run.
pub struct AmsRun {
    handle: AmsServerHandle,
    addr: BrokerAddr,
    topic: String,
    subscription: String,
    server_cert: PathBuf,
}

impl AmsRun {
    /// Starts the server for `setup`'s PKI with `topic` and its `subscription`.
    pub async fn start(setup: &Setup, topic: &str, subscription: &str) -> anyhow::Result<AmsRun> {
        let token = uuid::Uuid::new_v4().to_string();
        let state = StateConfig {
            project: PROJECT.into(),
            tokens: vec![(token, Role::Both)],
            topics: vec![topic.into()],
            subscriptions: vec![(subscription.into(), topic.into())],
            ..StateConfig::default()
        };
        let handle = ams_server::start(AmsServerConfig::new(
            "127.0.0.1:0".parse()?,
            setup.pki.server.cert.clone(),
            setup.pki.server.key.clone(),
            state,
        ))
        .await
        .context("starting ssm ams-server")?;
        let local = handle.local_addr();
        Ok(AmsRun {
            handle,
            addr: BrokerAddr {
                host: local.ip().to_string(),
                port: local.port(),
            },
            topic: topic.into(),
            subscription: subscription.into(),
            server_cert: setup.pki.server.cert.clone(),
        })
    }

    /// Where the AMS API listens.
    pub fn addr(&self) -> &BrokerAddr {
        &self.addr
    }

    /// What carried the messages, for a report.
    pub fn label(&self) -> String {
        format!("ssm ams-server (in-process, {}), SSM2 over AMS", self.addr)
    }

    /// Writes one `sender.cfg` per sender of `setup` that publishes to the topic, SSM2 with
    /// `window` messages in flight; returns their paths.
    pub fn write_sender_configs(
        &self,
        setup: &Setup,
        cipher: Cipher,
        window: u32,
    ) -> anyhow::Result<Vec<PathBuf>> {
        let paths = setup.write_sender_configs(&SenderOptions {
            broker: &self.addr,
            login: None,
            destination: &self.topic,
            cipher,
            // SSM2 has no certreq: every sender reads the server certificate.
            certreq_first: false,
            ssm_version: Version::V2,
            window,
        })?;
        for path in &paths {
            self.rewrite(path, &self.topic)?;
        }
        Ok(paths)
    }

    /// Writes the receiver's `receiver.cfg`, which pulls from the subscription; returns its path.
    pub fn write_receiver_config(&self, setup: &Setup) -> anyhow::Result<PathBuf> {
        let path = setup.write_receiver_config(&self.addr, None, &self.subscription)?;
        self.rewrite(&path, &self.subscription)?;
        Ok(path)
    }

    /// Stops the server and closes its connections.
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }

    /// Rewrites a configuration file written for STOMP for this server (see [`ams_config`]).
    fn rewrite(&self, path: &Path, destination: &str) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let text = ams_config(
            &text,
            self.addr.port,
            self.handle.token(),
            destination,
            &self.server_cert,
        );
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// A configuration file the harness wrote for STOMP, as the same file says it for AMS (as an
/// operator would change it: `protocol: AMS`, `[broker] host`, `ams_project`, `token`, SSM2).
/// The host is `localhost`, the name the server certificate carries.
fn ams_config(text: &str, port: u16, token: &str, destination: &str, server_cert: &Path) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let (key, _) = line.split_once(" = ").unwrap_or((line, ""));
        let line = match key {
            "protocol" => "protocol = AMS".to_string(),
            "brokers" => format!("host = localhost:{port}"),
            "use_ssl" => "use_ssl = true".to_string(),
            "server_dn" => format!("server_cert = {}", server_cert.display()),
            "destination" => {
                format!("destination = {destination}\nams_project = {PROJECT}\ntoken = {token}")
            }
            "ssm_version" => "ssm_version = 2".to_string(),
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Loadable, ReceiverConfig, SenderConfig};

    #[tokio::test]
    async fn the_configs_load_for_ams() {
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup::prepare(&dir.path().join("run"), 2).unwrap();
        let run = AmsRun::start(&setup, "t-topic", "t-sub").await.unwrap();
        let port = run.addr().port;
        assert!(port > 0);
        for path in run.write_sender_configs(&setup, Cipher::Aes128, 8).unwrap() {
            let (cfg, warnings) = SenderConfig::load(&path).unwrap();
            assert!(warnings.is_empty(), "{warnings:?}");
            assert_eq!(cfg.destination, "t-topic");
            assert_eq!(cfg.ssm_version, Version::V2);
            assert_eq!(
                cfg.common.broker.brokers,
                vec![("localhost".to_string(), port)]
            );
            let ams = cfg.common.ams.as_ref().unwrap();
            assert_eq!(ams.project, PROJECT);
            assert_eq!(ams.token.as_deref(), Some(run.handle.token()));
        }
        let path = run.write_receiver_config(&setup).unwrap();
        let (cfg, _) = ReceiverConfig::load(&path).unwrap();
        assert_eq!(cfg.destination, "t-sub");
        assert!(cfg.common.ams.is_some());
        run.shutdown().await;
    }
}
