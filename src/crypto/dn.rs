//! Distinguished names: structured names ([`Dn`]), their slash form, and the allowed-DN list.
//!
//! Guarantees:
//! - Names are compared **RDN by RDN**, never as strings: a [`Dn`] is the sequence of a name's
//!   RDNs, each the set of its `key=value` attributes. A certificate whose subject is
//!   `C=UK, O="ssmtest/CN=client-a.test"` (a `/` inside a value), or that has the multi-valued
//!   RDN `O=ssmtest+CN=client-a.test`, never equals `/C=UK/O=ssmtest/CN=client-a.test`.
//! - [`subject_dn`] renders a name in slash form, `/K=V/K=V...`, with OpenSSL's short names in
//!   certificate order and values as UTF-8 — what `openssl x509 -subject -nameopt compat`
//!   prints. Where that output would be ambiguous it escapes: `/` and `+` inside a value are
//!   written `\/` and `\+` (as OpenSSL 3 does), the attributes of a multi-valued RDN are joined
//!   by an unescaped `+`, and a `\` is doubled when it precedes `/`, `+`, `\`, `x` or ends the
//!   value. [`Dn::parse`] reads that form back exactly (`Dn::parse(&subject_dn(c))` is the
//!   certificate's name), so a rendered DN can be matched again.
//! - [`Dn::parse`] reads the DN lines found in allowed-DN files: OpenSSL's `compat` output
//!   (`\/`, `\+`, `\xHH` byte escapes, other backslashes literal), and older unescaped lines
//!   where a `/` or `+` inside a value is followed by text without `=` (`/CN=ldap/host.org` is
//!   one CN `ldap/host.org`: a piece without `key=` cannot be an attribute of its own).
//!
//! Matching rule: a signer is allowed when its name is **exactly** (case-sensitive, attribute
//! by attribute) one of the listed DNs, as the current reference implementation does (the
//! older v1 compared case-insensitively); only the order of the attributes inside one
//! multi-valued RDN does not matter (it is a set). Leading and trailing whitespace of a line is
//! not part of the DN.

use std::collections::HashSet;
use std::path::Path;

use openssl::x509::{X509NameRef, X509Ref};

use super::error::CryptoError;

/// A distinguished name: its RDNs in order, each a non-empty list of `(key, value)` attributes.
///
/// Equality and hashing ignore the order of the attributes inside one RDN (a DER SET).
#[derive(Clone, Debug)]
pub struct Dn {
    rdns: Vec<Vec<(String, String)>>,
}

impl Dn {
    /// The name of a certificate subject or issuer.
    pub fn of_name(name: &X509NameRef) -> Dn {
        let entries: Vec<(String, String)> = name
            .entries()
            .map(|entry| {
                let object = entry.object();
                let key = match object.nid().short_name() {
                    Ok(short) => short.to_string(),
                    // An attribute OpenSSL has no name for: its dotted OID, as OpenSSL does.
                    Err(_) => object.to_string(),
                };
                let value = match entry.data().to_string() {
                    Ok(v) => v,
                    Err(_) => String::from_utf8_lossy(entry.data().as_slice()).into_owned(),
                };
                (key, value)
            })
            .collect();
        // The entries of an X509_NAME are flat; which RDN each belongs to is only visible in
        // the encoding (SEQUENCE OF SET OF attribute). The entries are kept in encoding order.
        let sizes = name
            .to_der()
            .ok()
            .and_then(|der| rdn_sizes(&der))
            .filter(|s| s.iter().sum::<usize>() == entries.len());
        let mut rdns = Vec::new();
        match sizes {
            Some(sizes) => {
                let mut it = entries.into_iter();
                for n in sizes {
                    rdns.push(it.by_ref().take(n).collect());
                }
            }
            // Cannot happen for a name OpenSSL encoded itself; one RDN holding everything
            // equals no ordinary DN (the safe direction).
            None if !entries.is_empty() => rdns.push(entries),
            None => {}
        }
        Dn { rdns }
    }

    /// Parses a DN in slash form (see the module documentation). `None` when the text does
    /// not start with `/` or has a piece that is not `key=value`.
    pub fn parse(text: &str) -> Option<Dn> {
        let rest = text.strip_prefix('/')?;
        // Split at unescaped `/` and `+`, keeping which separator came before each piece.
        let mut pieces: Vec<(char, String)> = Vec::new();
        let mut current = String::new();
        let mut sep = '/';
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    current.push('\\');
                    if let Some(next) = chars.next() {
                        current.push(next);
                    }
                }
                '/' | '+' => {
                    pieces.push((sep, std::mem::take(&mut current)));
                    sep = c;
                }
                _ => current.push(c),
            }
        }
        pieces.push((sep, current));

        let mut rdns: Vec<Vec<(String, String)>> = Vec::new();
        for (sep, piece) in pieces {
            match split_attribute(&piece) {
                Some((key, value)) => {
                    let attr = (key.to_string(), value.to_string());
                    match (sep, rdns.last_mut()) {
                        ('+', Some(rdn)) => rdn.push(attr),
                        _ => rdns.push(vec![attr]),
                    }
                }
                None => {
                    // Not an attribute: an unescaped `/` or `+` inside the previous value.
                    let (_, value) = rdns.last_mut()?.last_mut()?;
                    value.push(sep);
                    value.push_str(&piece);
                }
            }
        }
        for rdn in &mut rdns {
            for (_, value) in rdn.iter_mut() {
                *value = unescape(value);
            }
        }
        Some(Dn { rdns })
    }

    /// The slash form (see the module documentation).
    pub fn to_slash(&self) -> String {
        let mut out = String::new();
        for rdn in &self.rdns {
            for (i, (key, value)) in rdn.iter().enumerate() {
                out.push(if i == 0 { '/' } else { '+' });
                out.push_str(key);
                out.push('=');
                escape_into(&mut out, value);
            }
        }
        out
    }

    /// The number of RDNs.
    pub fn len(&self) -> usize {
        self.rdns.len()
    }

    /// Whether the name has no RDN.
    pub fn is_empty(&self) -> bool {
        self.rdns.is_empty()
    }

    /// The RDNs with the attributes of each sorted: what equality compares.
    fn canonical(&self) -> Vec<Vec<(&str, &str)>> {
        self.rdns
            .iter()
            .map(|rdn| {
                let mut attrs: Vec<(&str, &str)> =
                    rdn.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                attrs.sort_unstable();
                attrs
            })
            .collect()
    }
}

impl PartialEq for Dn {
    fn eq(&self, other: &Dn) -> bool {
        self.canonical() == other.canonical()
    }
}

impl Eq for Dn {}

impl std::hash::Hash for Dn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.canonical().hash(state);
    }
}

impl std::fmt::Display for Dn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_slash())
    }
}

/// `key=value` when `piece` starts with an attribute name (letters, digits, `.`, `-`, `_`)
/// and `=`; the value is still escaped.
fn split_attribute(piece: &str) -> Option<(&str, &str)> {
    let (key, value) = piece.split_once('=')?;
    let valid = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    valid.then_some((key, value))
}

/// Resolves `\/`, `\+`, `\\` and `\xHH`; any other backslash is literal (OpenSSL's `compat`
/// output does not escape it).
fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' {
            match bytes.get(i + 1) {
                Some(&c @ (b'/' | b'+' | b'\\')) => {
                    out.push(c);
                    i += 2;
                    continue;
                }
                Some(b'x') => {
                    let hex = bytes
                        .get(i + 2..i + 4)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    if let Some(byte) = hex {
                        out.push(byte);
                        i += 4;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends `value` escaped so that [`unescape`] (after splitting) gives it back.
fn escape_into(out: &mut String, value: &str) {
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' => out.push_str("\\/"),
            '+' => out.push_str("\\+"),
            '\\' => match chars.peek() {
                None | Some('/' | '+' | '\\' | 'x') => out.push_str("\\\\"),
                Some(_) => out.push('\\'),
            },
            _ => out.push(c),
        }
    }
}

/// The number of attributes in each RDN of a DER-encoded Name (SEQUENCE OF SET OF
/// AttributeTypeAndValue), or `None` if it is not one.
fn rdn_sizes(der: &[u8]) -> Option<Vec<usize>> {
    let (tag, body, rest) = super::der::element(der)?;
    if tag != super::der::SEQUENCE || !rest.is_empty() {
        return None;
    }
    let mut sizes = Vec::new();
    let mut sets = body;
    while !sets.is_empty() {
        let (tag, set, next) = super::der::element(sets)?;
        if tag != super::der::SET {
            return None;
        }
        let mut n = 0;
        let mut attrs = set;
        while !attrs.is_empty() {
            let (_, _, after) = super::der::element(attrs)?;
            attrs = after;
            n += 1;
        }
        sizes.push(n);
        sets = next;
    }
    Some(sizes)
}

/// The subject DN of `cert` in slash form, e.g. `/C=UK/O=eScience/CN=host.example.org`.
pub fn subject_dn(cert: &X509Ref) -> String {
    name_to_slash(cert.subject_name())
}

/// An X.509 name in slash form (see the module documentation).
pub fn name_to_slash(name: &X509NameRef) -> String {
    Dn::of_name(name).to_slash()
}

/// The list of DNs allowed to send messages (the receiver's allowed-DN file).
#[derive(Clone, Debug, Default)]
pub struct DnList {
    dns: HashSet<Dn>,
}

impl DnList {
    /// Parses allowed-DN text: one DN per line in slash form; blank lines and lines starting with
    /// `#` are skipped; surrounding whitespace is trimmed. A line that is not a DN is left out
    /// and reported in the returned warnings (one per line, with its line number).
    pub fn parse(text: &str) -> (DnList, Vec<String>) {
        let mut dns = HashSet::new();
        let mut warnings = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match Dn::parse(line).filter(|dn| !dn.is_empty()) {
                Some(dn) => {
                    dns.insert(dn);
                }
                None => warnings.push(format!("line {}: not a DN: {line:?}", number + 1)),
            }
        }
        (DnList { dns }, warnings)
    }

    /// Reads and parses an allowed-DN file, logging a warning for each line that is not a DN.
    ///
    /// Fails with [`CryptoError::DnList`] if the file cannot be read or holds no valid DN.
    pub fn load(path: &Path) -> Result<DnList, CryptoError> {
        let err = |reason: String| CryptoError::DnList {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|e| err(format!("not UTF-8: {e}")))?;
        let (list, warnings) = DnList::parse(&text);
        for warning in &warnings {
            tracing::warn!("allowed-DN list {}: {warning}", path.display());
        }
        if list.is_empty() {
            return Err(err("no valid DN in the file".into()));
        }
        Ok(list)
    }

    /// Whether `dn` (slash form) is in the list: an exact, case-sensitive comparison, RDN by
    /// RDN (see the module docs). Text that is not a DN is in no list.
    pub fn contains(&self, dn: &str) -> bool {
        Dn::parse(dn).is_some_and(|dn| self.dns.contains(&dn))
    }

    /// Whether the name is in the list.
    pub fn contains_dn(&self, dn: &Dn) -> bool {
        self.dns.contains(dn)
    }

    /// The number of distinct DNs.
    pub fn len(&self) -> usize {
        self.dns.len()
    }

    /// Whether the list holds no DN.
    pub fn is_empty(&self) -> bool {
        self.dns.is_empty()
    }

    /// The DNs, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Dn> {
        self.dns.iter()
    }
}

/// Size, mtime (seconds, nanoseconds) and inode of a file: what must not change between reads.
type FileStamp = (u64, i64, i64, u64);

/// The allowed-DN file of a running receiver: loads it, and re-reads it (on SIGHUP) only into
/// a list that is whole.
///
/// A reload must never act on a half-written file (an editor or a script rewriting it in place
/// while logrotate's SIGHUP arrives). A re-read list replaces the one in use only if:
/// - two reads [`DnFile::SETTLE`] apart give the same bytes and the same size, mtime and inode
///   (tried up to [`DnFile::TRIES`] times while the file keeps changing);
/// - it is UTF-8, its last line ends with a newline (a writer stopped mid-line leaves none) and
///   it holds at least one DN;
/// - it is not smaller than the list in use by more than a quarter (and two DNs or more). A
///   bigger cut looks like a file cut short at a line end; it is refused once and accepted
///   when the next reload finds the very same content (a second SIGHUP confirms a deliberate
///   cut; a restart accepts any valid file).
#[derive(Debug)]
pub struct DnFile {
    path: std::path::PathBuf,
    /// The content of a big cut refused once, which a reload finding it again accepts.
    refused_cut: Option<String>,
}

impl DnFile {
    /// Time between two reads that must agree.
    pub const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);
    /// Pairs of reads tried before giving up on a file that keeps changing.
    pub const TRIES: usize = 10;

    /// The file at `path` (nothing is read yet).
    pub fn new(path: &Path) -> DnFile {
        DnFile {
            path: path.to_path_buf(),
            refused_cut: None,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the list at start-up (see [`DnList::load`]; the file must also read the same
    /// twice).
    pub fn load(&self) -> Result<DnList, CryptoError> {
        let text = self.read_settled()?;
        self.parse_checked(&text)
    }

    /// Re-reads the file for a list to replace `current`; an error means `current` must stay
    /// in use (see the type's documentation for what is refused). Blocks for at least
    /// [`DnFile::SETTLE`].
    pub fn reload(&mut self, current: &DnList) -> Result<DnList, CryptoError> {
        let text = self.read_settled()?;
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(self.err(
                "the last line has no newline: the file may still be being written (end it with a newline)"
                    .into(),
            ));
        }
        let list = self.parse_checked(&text)?;
        let (now, before) = (list.len(), current.len());
        // Shrinking by more than a quarter (and by two DNs or more) at once is what a file cut
        // short at a line end looks like; replacing or adding DNs is not.
        if before.saturating_sub(now) >= 2 && now * 4 < before * 3 {
            if self.refused_cut.as_deref() == Some(text.as_str()) {
                self.refused_cut = None;
                tracing::warn!(
                    file = %self.path.display(),
                    now,
                    before,
                    "allowed-DN list cut down, confirmed by a second reload"
                );
                return Ok(list);
            }
            self.refused_cut = Some(text);
            return Err(self.err(format!(
                "it holds {now} DNs where {before} are in use, as a file cut short would; \
                 send SIGHUP again to confirm if that is intended"
            )));
        }
        self.refused_cut = None;
        Ok(list)
    }

    fn err(&self, reason: String) -> CryptoError {
        CryptoError::DnList {
            path: self.path.clone(),
            reason,
        }
    }

    fn parse_checked(&self, text: &str) -> Result<DnList, CryptoError> {
        let (list, warnings) = DnList::parse(text);
        for warning in &warnings {
            tracing::warn!("allowed-DN list {}: {warning}", self.path.display());
        }
        if list.is_empty() {
            return Err(self.err("no valid DN in the file".into()));
        }
        Ok(list)
    }

    /// Reads until two reads [`DnFile::SETTLE`] apart agree (bytes and metadata).
    fn read_settled(&self) -> Result<String, CryptoError> {
        let mut previous = self.read_once()?;
        for _ in 0..DnFile::TRIES {
            std::thread::sleep(DnFile::SETTLE);
            let next = self.read_once()?;
            if next == previous && next.0 .0 != u64::MAX {
                let (_, bytes) = next;
                return String::from_utf8(bytes).map_err(|e| self.err(format!("not UTF-8: {e}")));
            }
            previous = next;
        }
        Err(self.err(format!(
            "the file kept changing for {} s; not used",
            (DnFile::SETTLE * DnFile::TRIES as u32).as_secs()
        )))
    }

    fn read_once(&self) -> Result<(FileStamp, Vec<u8>), CryptoError> {
        use std::os::unix::fs::MetadataExt;
        let io = |e: std::io::Error| self.err(e.to_string());
        let before = std::fs::metadata(&self.path).map_err(io)?;
        let bytes = std::fs::read(&self.path).map_err(io)?;
        let after = std::fs::metadata(&self.path).map_err(io)?;
        let stamp = |m: &std::fs::Metadata| (m.len(), m.mtime(), m.mtime_nsec(), m.ino());
        if stamp(&before) != stamp(&after) || before.len() != bytes.len() as u64 {
            // Changed while being read: never equal to the next read.
            return Ok(((u64::MAX, 0, 0, 0), bytes));
        }
        Ok((stamp(&after), bytes))
    }
}

impl FromIterator<String> for DnList {
    /// Collects DNs in slash form; text that is not a DN is left out.
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        DnList {
            dns: iter.into_iter().filter_map(|s| Dn::parse(&s)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(s: &str) -> Dn {
        Dn::parse(s).unwrap_or_else(|| panic!("not a DN: {s:?}"))
    }

    fn attrs(d: &Dn) -> Vec<Vec<(&str, &str)>> {
        d.rdns
            .iter()
            .map(|r| r.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
            .collect()
    }

    #[test]
    fn parses_plain_escaped_multivalued_and_legacy_forms() {
        assert_eq!(
            attrs(&dn("/C=UK/O=ssmtest/CN=client-a.test")),
            vec![
                vec![("C", "UK")],
                vec![("O", "ssmtest")],
                vec![("CN", "client-a.test")]
            ]
        );
        assert_eq!(
            attrs(&dn("/C=UK/O=ssmtest\\/CN=client-a.test")),
            vec![vec![("C", "UK")], vec![("O", "ssmtest/CN=client-a.test")]]
        );
        assert_eq!(
            attrs(&dn("/C=UK/O=ssmtest+CN=client-a.test")),
            vec![
                vec![("C", "UK")],
                vec![("O", "ssmtest"), ("CN", "client-a.test")]
            ]
        );
        assert_eq!(
            attrs(&dn("/C=UK/O=ssmtest\\+CN=client-a.test")),
            vec![vec![("C", "UK")], vec![("O", "ssmtest+CN=client-a.test")]]
        );
        // Unescaped legacy lines: a piece without `key=` belongs to the value before it.
        assert_eq!(
            attrs(&dn("/O=Grid/CN=ldap/host.example.org")),
            vec![vec![("O", "Grid")], vec![("CN", "ldap/host.example.org")]]
        );
        assert_eq!(attrs(&dn("/CN=a+b c")), vec![vec![("CN", "a+b c")]]);
        // OpenSSL compat leaves other backslashes alone and writes bytes as \xHH.
        assert_eq!(
            attrs(&dn("/O=a\\b, c=\"d\"/CN=\\xC3\\xA9t\\xC3\\xA9")),
            vec![vec![("O", "a\\b, c=\"d\"")], vec![("CN", "été")]]
        );
        assert_eq!(attrs(&dn("/CN=x=y")), vec![vec![("CN", "x=y")]]);
        assert!(Dn::parse("CN=x").is_none());
        assert!(Dn::parse("/not a dn").is_none());
        assert!(Dn::parse("/ CN=x").is_none());
    }

    #[test]
    fn spoofed_names_differ_from_the_real_one() {
        let real = dn("/C=UK/O=ssmtest/CN=client-a.test");
        for spoof in [
            "/C=UK/O=ssmtest\\/CN=client-a.test",
            "/C=UK/O=ssmtest+CN=client-a.test",
            "/C=UK/O=ssmtest\\+CN=client-a.test",
            "/C=UK/O=ssmtest\\\\/CN=client-a.test",
        ] {
            assert_ne!(dn(spoof), real, "{spoof}");
        }
        // Attribute order inside one RDN does not matter; order of RDNs does.
        assert_eq!(dn("/C=UK/O=a+CN=b"), dn("/C=UK/CN=b+O=a"));
        assert_ne!(dn("/C=UK/O=a/CN=b"), dn("/C=UK/CN=b/O=a"));
    }

    #[test]
    fn rendering_parses_back_to_the_same_name() {
        let values = [
            "plain", "a/b", "a+b", "a\\b", "ends\\", "a\\/b", "a\\+b", "\\x41", "\\\\", "x=y", "",
            "été", "/CN=evil",
        ];
        for v in values {
            for w in values {
                let name = Dn {
                    rdns: vec![
                        vec![("O".into(), v.into())],
                        vec![("CN".into(), w.into()), ("OU".into(), v.into())],
                    ],
                };
                let text = name.to_slash();
                let back = Dn::parse(&text).unwrap_or_else(|| panic!("{text}"));
                assert_eq!(attrs(&back), attrs(&name), "{text}");
            }
        }
    }

    #[test]
    fn der_rdn_sizes() {
        // SEQUENCE { SET { a }, SET { b, c } } with dummy attributes.
        let der = [
            0x30, 0x0c, 0x31, 0x04, 0x30, 0x02, 0x05, 0x00, 0x31, 0x04, 0x30, 0x00, 0x30, 0x00,
        ];
        assert_eq!(rdn_sizes(&der), Some(vec![1, 2]));
        assert_eq!(rdn_sizes(&der[..5]), None);
        assert_eq!(rdn_sizes(&[0x31, 0x00]), None);
    }

    #[test]
    fn list_matches_rdn_by_rdn() {
        let (list, warnings) =
            DnList::parse("/C=UK/O=ssmtest/CN=client-a.test\n/O=x\\/y\nnot a dn\n");
        assert_eq!(list.len(), 2);
        assert_eq!(warnings.len(), 1);
        assert!(list.contains("/C=UK/O=ssmtest/CN=client-a.test"));
        assert!(!list.contains("/C=UK/O=ssmtest\\/CN=client-a.test"));
        assert!(!list.contains("/C=UK/O=ssmtest+CN=client-a.test"));
        assert!(list.contains("/O=x\\/y"));
        assert!(list.contains("/O=x/y"));
        assert!(!list.contains("/O=x/CN=y"));
    }
}
