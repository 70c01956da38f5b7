//! The start-up rules as one list, and the two ways of evaluating them ([`Checks`]).

use std::fmt::Display;

/// One start-up rule. The `ssm check` line of a rule starts with [`Rule::what`] (the broker
/// and destination lines add the address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `--metrics` needs `--daemon` (sender).
    MetricsNeedDaemon,
    /// Our certificate loads.
    Certificate,
    /// Our private key loads.
    PrivateKey,
    /// The key is the certificate's.
    KeyMatches,
    /// Our certificate is valid for at least [`super::MIN_VALIDITY`].
    CertificateExpiry,
    /// The trusted CAs load (at least one CA).
    TrustedCas,
    /// Our certificate chains to a trusted CA.
    CertificateChain,
    /// The receiver's certificate (sender): given and loadable, not ours; or a valid DN to ask
    /// for.
    ServerCertificate,
    /// The receiver's certificate chains to a trusted CA (with `verify_server_cert`).
    ServerCertificateChain,
    /// The receiver's certificate is valid for at least [`super::MIN_VALIDITY`].
    ServerCertificateExpiry,
    /// The allowed-DN file holds at least one DN (receiver).
    AllowedDns,
    /// The outgoing queue directory is writable or can be created (sender).
    OutgoingQueue,
    /// The message store directory is writable or can be created (receiver).
    MessageStore,
    /// The log file can be written.
    LogFile,
    /// The PID file names no live process and can be written.
    Pidfile,
    /// The metrics address resolves.
    MetricsAddress,
    /// Every broker answers a STOMP handshake; the destination takes a SUBSCRIBE.
    Broker,
}

/// The sender's rules, in the order they are evaluated and reported.
pub const SENDER_RULES: &[Rule] = &[
    Rule::MetricsNeedDaemon,
    Rule::Certificate,
    Rule::PrivateKey,
    Rule::KeyMatches,
    Rule::CertificateExpiry,
    Rule::TrustedCas,
    Rule::CertificateChain,
    Rule::ServerCertificate,
    Rule::ServerCertificateChain,
    Rule::ServerCertificateExpiry,
    Rule::OutgoingQueue,
    Rule::LogFile,
    Rule::Pidfile,
    Rule::MetricsAddress,
    Rule::Broker,
];

/// The receiver's rules, in the order they are evaluated and reported.
pub const RECEIVER_RULES: &[Rule] = &[
    Rule::Certificate,
    Rule::PrivateKey,
    Rule::KeyMatches,
    Rule::CertificateExpiry,
    Rule::TrustedCas,
    Rule::CertificateChain,
    Rule::AllowedDns,
    Rule::MessageStore,
    Rule::LogFile,
    Rule::Pidfile,
    Rule::MetricsAddress,
    Rule::Broker,
];

impl Rule {
    /// The name `ssm check` gives the rule.
    pub fn what(self) -> &'static str {
        match self {
            Rule::MetricsNeedDaemon => "metrics",
            Rule::Certificate => "certificate",
            Rule::PrivateKey => "private key",
            Rule::KeyMatches => "key matches certificate",
            Rule::CertificateExpiry => "certificate expiry",
            Rule::TrustedCas => "trusted CAs",
            Rule::CertificateChain => "certificate chain",
            Rule::ServerCertificate => "server certificate",
            Rule::ServerCertificateChain => "server certificate chain",
            Rule::ServerCertificateExpiry => "server certificate expiry",
            Rule::AllowedDns => "allowed DNs",
            Rule::OutgoingQueue => "outgoing queue",
            Rule::MessageStore => "message store",
            Rule::LogFile => "log file",
            Rule::Pidfile => "pidfile",
            Rule::MetricsAddress => "metrics address",
            Rule::Broker => "broker",
        }
    }

    /// Whether `ssm send` / `ssm receive` stop at this rule. The others are reported by
    /// `ssm check` only, because the daemon finds out by doing: it creates the queue, opens
    /// the log file, binds the metrics address, connects to the broker (and retries); our own
    /// certificate's chain matters to the peer's CAs, not to ours.
    pub fn stops_start(self) -> bool {
        !matches!(
            self,
            Rule::CertificateChain
                | Rule::OutgoingQueue
                | Rule::MessageStore
                | Rule::LogFile
                | Rule::MetricsAddress
                | Rule::Broker
        )
    }
}

/// Why a rule failed: the error `ssm send` / `ssm receive` exit with, and the `ssm check`
/// reason when it words the same failure differently (shorter, without the context the
/// daemon's message needs on its own).
#[derive(Debug)]
pub struct Failure {
    error: anyhow::Error,
    reason: Option<String>,
}

impl Failure {
    /// A failure reported the same way by both.
    pub fn new(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            error: error.into(),
            reason: None,
        }
    }

    /// A failure with a plain message for both.
    pub fn msg(message: impl Display) -> Failure {
        Failure::new(anyhow::anyhow!("{message}"))
    }

    /// The `ssm check` wording.
    pub fn reason(mut self, reason: impl Display) -> Failure {
        self.reason = Some(reason.to_string());
        self
    }
}

/// The result lines of a check, printed as they come.
#[derive(Debug, Default)]
pub struct Report {
    /// Every line, in order.
    pub lines: Vec<String>,
    /// How many failed.
    pub failures: usize,
    /// Print lines to stdout as they are added.
    pub echo: bool,
}

impl Report {
    fn push(&mut self, line: String) {
        if self.echo {
            println!("{line}");
        }
        self.lines.push(line);
    }

    /// Records a passed check.
    pub fn ok(&mut self, what: &str, detail: impl Display) {
        self.push(format!("OK   {what}: {detail}"));
    }

    /// Records a failed check.
    pub fn fail(&mut self, what: &str, reason: impl Display) {
        self.failures += 1;
        self.push(format!("FAIL {what}: {reason}"));
    }
}

/// How the rules are evaluated: stopping at the first failure (start-up), or reporting every
/// rule (`ssm check`).
#[derive(Debug)]
pub struct Checks {
    report: Option<Report>,
    offline: bool,
}

impl Checks {
    /// For `ssm send` / `ssm receive`: the first failed rule is the error.
    pub fn start() -> Checks {
        Checks {
            report: None,
            offline: true,
        }
    }

    /// For `ssm check`: every rule becomes a line of `report`; `offline` skips the broker.
    pub fn check(report: Report, offline: bool) -> Checks {
        Checks {
            report: Some(report),
            offline,
        }
    }

    /// Whether every rule is reported (`ssm check`) rather than enforced.
    pub fn reporting(&self) -> bool {
        self.report.is_some()
    }

    /// Whether the broker is to be probed (`ssm check` without `--offline`).
    pub(crate) fn probe_broker(&self) -> bool {
        self.report.is_some() && !self.offline
    }

    /// The report, once checking is done (empty when starting).
    pub fn into_report(self) -> Report {
        self.report.unwrap_or_default()
    }

    /// A passed rule: a line when reporting.
    pub fn ok(&mut self, rule: Rule, detail: impl Display) {
        self.ok_as(rule.what(), detail);
    }

    /// A passed rule, as a result (for rules that end on it).
    pub fn pass(&mut self, rule: Rule, detail: impl Display) -> anyhow::Result<()> {
        self.ok(rule, detail);
        Ok(())
    }

    /// A passed rule under a more precise name (`broker HOST:PORT`), or a warning reported as
    /// an `OK` line.
    pub fn ok_as(&mut self, what: &str, detail: impl Display) {
        if let Some(r) = &mut self.report {
            r.ok(what, detail);
        }
    }

    /// A failed rule: the error when starting, a `FAIL` line when reporting.
    pub fn fail(&mut self, rule: Rule, failure: Failure) -> anyhow::Result<()> {
        self.fail_as(rule.what(), failure)
    }

    /// A failed rule under a more precise name.
    pub fn fail_as(&mut self, what: &str, failure: Failure) -> anyhow::Result<()> {
        match &mut self.report {
            None => Err(failure.error),
            Some(r) => {
                match failure.reason {
                    Some(reason) => r.fail(what, reason),
                    None => r.fail(what, format!("{:#}", failure.error)),
                }
                Ok(())
            }
        }
    }

    /// `result` as the outcome of `rule`: its value when it passed (with an `OK` line made by
    /// `detail`), `None` when it failed and is reported.
    pub fn rule<T>(
        &mut self,
        rule: Rule,
        result: Result<T, Failure>,
        detail: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<Option<T>> {
        match result {
            Ok(v) => {
                if self.reporting() {
                    let d = detail(&v);
                    self.ok(rule, d);
                }
                Ok(Some(v))
            }
            Err(f) => {
                self.fail(rule, f)?;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_stops_at_the_first_failure_checking_reports_all() {
        let mut start = Checks::start();
        start.ok(Rule::Certificate, "fine");
        let err = start
            .fail(
                Rule::PrivateKey,
                Failure::msg("daemon text").reason("check text"),
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "daemon text");
        assert!(start.into_report().lines.is_empty());

        let mut check = Checks::check(Report::default(), true);
        check.ok(Rule::Certificate, "fine");
        check
            .fail(
                Rule::PrivateKey,
                Failure::msg("daemon text").reason("check text"),
            )
            .unwrap();
        check.fail(Rule::Pidfile, Failure::msg("same")).unwrap();
        let report = check.into_report();
        assert_eq!(
            report.lines,
            [
                "OK   certificate: fine",
                "FAIL private key: check text",
                "FAIL pidfile: same"
            ]
        );
        assert_eq!(report.failures, 2);
    }

    #[test]
    fn every_rule_has_a_name_and_the_lists_have_no_repeat() {
        for list in [SENDER_RULES, RECEIVER_RULES] {
            for (i, r) in list.iter().enumerate() {
                assert!(!r.what().is_empty());
                assert!(!list[..i].contains(r), "{r:?} twice");
            }
        }
        assert!(Rule::Pidfile.stops_start());
        assert!(!Rule::Broker.stops_start());
    }
}
