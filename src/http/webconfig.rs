//! `--web.config.file`: the file format of the Prometheus exporter-toolkit
//! (`tls_server_config`, `http_server_config`, `basic_auth_users`), read
//! into settings. What tcp-exporter cannot honour (TLS 1.0/1.1, cipher
//! suite and curve lists, which rustls chooses itself) is refused by name
//! rather than ignored, as is any key the format does not have; each error
//! names its line (serde_norway reads the YAML, whole: flow style, block
//! scalars and anchors as Helm's `toYaml` and people write them).
//! Relative paths are relative to the file's folder, as the toolkit reads
//! them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// The settings the file gives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// User name and bcrypt hash; empty: no authentication.
    pub users: Vec<(String, String)>,
    /// Headers added to every response.
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// `NoClientCert` (the default).
    None,
    /// `VerifyClientCertIfGiven`.
    VerifyIfGiven,
    /// `RequireAndVerifyClientCert`.
    RequireAndVerify,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--web.config.file {path}: {message}")]
pub struct WebConfigError {
    pub path: String,
    pub message: String,
}

/// The headers the toolkit lets a config set, and so do we.
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// Reads and checks the file at `path`.
pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
    let fail = |message: String| WebConfigError {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse(&text, dir).map_err(fail)
}

/// The file as written: the toolkit's keys, each checked as it is read,
/// so that an error names its line. Keys the toolkit has and tcp-exporter
/// cannot honour are read only to be refused by name.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<BTreeMap<String, BcryptHash>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: NonEmpty,
    key_file: NonEmpty,
    client_ca_file: Option<NonEmpty>,
    client_auth_type: Option<ClientAuth>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
    #[serde(rename = "cert", default, deserialize_with = "inline_certificate")]
    _cert: (),
    #[serde(rename = "key", default, deserialize_with = "inline_certificate")]
    _key: (),
    #[serde(rename = "client_ca", default, deserialize_with = "inline_certificate")]
    _client_ca: (),
    #[serde(rename = "cipher_suites", default, deserialize_with = "own_suites")]
    _cipher_suites: (),
    #[serde(rename = "curve_preferences", default, deserialize_with = "own_suites")]
    _curve_preferences: (),
    #[serde(
        rename = "prefer_server_cipher_suites",
        default,
        deserialize_with = "own_suites"
    )]
    _prefer_server_cipher_suites: (),
    #[serde(
        rename = "client_allowed_sans",
        default,
        deserialize_with = "no_allowed_sans"
    )]
    _client_allowed_sans: (),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    headers: Option<BTreeMap<AllowedHeader, HeaderText>>,
    #[serde(rename = "http2", default, deserialize_with = "no_http2")]
    _http2: (),
}

/// A value that must be there and not empty.
struct NonEmpty(String);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Err(D::Error::custom("expected a value, found an empty one"));
        }
        Ok(NonEmpty(s))
    }
}

/// A bcrypt hash as htpasswd and the toolkit write it.
struct BcryptHash(String);

impl<'de> Deserialize<'de> for BcryptHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        check_bcrypt(&s).map_err(D::Error::custom)?;
        Ok(BcryptHash(s))
    }
}

/// One of the headers the toolkit lets a config set, in its canonical case.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct AllowedHeader(&'static str);

impl<'de> Deserialize<'de> for AllowedHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        ALLOWED_HEADERS
            .iter()
            .find(|h| h.eq_ignore_ascii_case(&name))
            .map(|h| AllowedHeader(h))
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "the header {name:?} cannot be set; these can: {}",
                    ALLOWED_HEADERS.join(", ")
                ))
            })
    }
}

/// A header value without control characters.
struct HeaderText(String);

impl<'de> Deserialize<'de> for HeaderText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = NonEmpty::deserialize(d)?.0;
        if v.chars().any(|c| c.is_control()) {
            return Err(D::Error::custom("a header value with control characters"));
        }
        Ok(HeaderText(v))
    }
}

impl<'de> Deserialize<'de> for ClientAuth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "NoClientCert" => Ok(ClientAuth::None),
            "VerifyClientCertIfGiven" => Ok(ClientAuth::VerifyIfGiven),
            "RequireAndVerifyClientCert" => Ok(ClientAuth::RequireAndVerify),
            "RequestClientCert" | "RequireAnyClientCert" => Err(D::Error::custom(
                "client_auth_type: a client certificate that is not verified proves nothing; \
                 use VerifyClientCertIfGiven or RequireAndVerifyClientCert",
            )),
            other => Err(D::Error::custom(format!(
                "client_auth_type {other:?} is unknown"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            "TLS10" | "TLS11" => Err(D::Error::custom(
                "TLS 1.0 and 1.1 are not supported; use TLS12 or TLS13",
            )),
            other => Err(D::Error::custom(format!(
                "TLS version {other:?} is unknown (TLS12, TLS13)"
            ))),
        }
    }
}

/// Reads the value of a key that is refused whatever it holds, and refuses
/// it with `why`.
fn refuse<'de, D: Deserializer<'de>>(d: D, why: &str) -> Result<(), D::Error> {
    serde::de::IgnoredAny::deserialize(d)?;
    Err(D::Error::custom(why))
}

fn inline_certificate<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    refuse(
        d,
        "cert, key, client_ca: inline certificates are not supported; use cert_file, \
         key_file, client_ca_file",
    )
}

fn own_suites<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    refuse(
        d,
        "cipher_suites, curve_preferences, prefer_server_cipher_suites: not supported; rustls \
         offers only its own modern suites and curves (remove the key)",
    )
}

fn no_allowed_sans<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    refuse(d, "client_allowed_sans: not supported")
}

fn no_http2<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    refuse(
        d,
        "http_server_config.http2: tcp-exporter serves HTTP/1.1 only",
    )
}

/// Parses the text of a web config; relative paths are joined to `dir`.
pub fn parse(text: &str, dir: &Path) -> Result<WebConfig, String> {
    // An empty file (or one of comments only) is an empty config.
    let file: File = if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        File::default()
    } else {
        serde_norway::from_str(text).map_err(|e| e.to_string())?
    };
    let mut config = WebConfig {
        users: file
            .basic_auth_users
            .unwrap_or_default()
            .into_iter()
            .map(|(user, hash)| (user, hash.0))
            .collect(),
        ..WebConfig::default()
    };
    if let Some(http) = file.http_server_config {
        config.headers = http
            .headers
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name.0.to_string(), value.0))
            .collect();
    }
    config.tls = file.tls_server_config.map(|t| tls(t, dir)).transpose()?;
    Ok(config)
}

/// What needs more than one key of `tls_server_config`.
fn tls(t: TlsFile, dir: &Path) -> Result<TlsSettings, String> {
    let path = |p: NonEmpty| {
        let p = PathBuf::from(p.0);
        if p.is_relative() {
            dir.join(p)
        } else {
            p
        }
    };
    let client_auth = t.client_auth_type.unwrap_or(ClientAuth::None);
    let client_ca_file = t.client_ca_file.map(path);
    if client_auth != ClientAuth::None && client_ca_file.is_none() {
        return Err("tls_server_config: client_auth_type needs client_ca_file".into());
    }
    if client_ca_file.is_some() && client_auth == ClientAuth::None {
        return Err(
            "tls_server_config: client_ca_file is set but client_auth_type is NoClientCert".into(),
        );
    }
    let min_version = t.min_version.unwrap_or(TlsVersion::Tls12);
    let max_version = t.max_version.unwrap_or(TlsVersion::Tls13);
    if min_version > max_version {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    Ok(TlsSettings {
        cert_file: path(t.cert_file),
        key_file: path(t.key_file),
        client_auth,
        client_ca_file,
        min_version,
        max_version,
    })
}

/// A bcrypt hash as htpasswd and the toolkit write it: `$2a$`, `$2b$` or
/// `$2y$`, a two-digit cost, 53 characters of salt and hash.
fn check_bcrypt(hash: &str) -> Result<(), &'static str> {
    let b = hash.as_bytes();
    let prefix_ok = b.len() == 60
        && b[0] == b'$'
        && b[1] == b'2'
        && matches!(b[2], b'a' | b'b' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$';
    if !prefix_ok {
        return Err("not a bcrypt hash (expected $2y$NN$ and 53 more characters, as `htpasswd -nBC 10 USER` writes)");
    }
    let cost = (b[4] - b'0') * 10 + (b[5] - b'0');
    if !(4..=31).contains(&cost) {
        return Err("bcrypt cost out of range (4 to 31)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$ZbYpvBCsVVwNJqyqVn3UZOeC2GJGSz4OwbI6tpXQB7ycLg5uyDeWe";

    #[test]
    fn a_toolkit_config_is_read_with_paths_relative_to_its_folder() {
        let text = format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: /abs/tls.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             min_version: TLS13\nhttp_server_config:\n  headers:\n    \
             strict-transport-security: max-age=31536000\nbasic_auth_users:\n  \
             prometheus: {HASH}\n  'other': '{HASH}'\n"
        );
        let c = parse(&text, Path::new("/etc/tcpx")).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert_file, Path::new("/etc/tcpx/tls.crt"));
        assert_eq!(tls.key_file, Path::new("/abs/tls.key"));
        assert_eq!(
            tls.client_ca_file.as_deref(),
            Some(Path::new("/etc/tcpx/ca.crt"))
        );
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerify);
        assert_eq!(
            (tls.min_version, tls.max_version),
            (TlsVersion::Tls13, TlsVersion::Tls13)
        );
        assert_eq!(c.users.len(), 2);
        assert!(c
            .users
            .contains(&("prometheus".to_string(), HASH.to_string())));
        assert_eq!(
            c.headers,
            [(
                "Strict-Transport-Security".to_string(),
                "max-age=31536000".to_string()
            )]
        );
    }

    #[test]
    fn an_empty_file_means_plain_http_without_auth() {
        assert_eq!(
            parse("# nothing\n", Path::new(".")).unwrap(),
            WebConfig::default()
        );
        assert_eq!(
            parse("tls_server_config:\nbasic_auth_users:\n", Path::new(".")).unwrap(),
            WebConfig::default()
        );
    }

    /// serde_norway places an error in a value at the start of its map
    /// (the section's first key), one in a key at the key itself, and one
    /// at the top level nowhere: the messages name the key.
    #[test]
    fn what_cannot_be_honoured_is_refused_with_the_line() {
        for (text, why, line) in [
            ("tls_server_config:\n  cert_file: a\n", "missing field `key_file`", Some(2)),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n", "TLS 1.0", Some(2)),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [X]\n", "cipher_suites", Some(2)),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cert: |\n    PEM\n", "inline certificates", Some(2)),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file", None),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n", "proves nothing", Some(2)),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n", "min_version is above", None),
            ("basic_auth_users:\n  bob: secret\n", "not a bcrypt hash", Some(2)),
            ("basic_auth_users:\n  bob:\n", "not a bcrypt hash", Some(2)),
            ("http_server_config:\n  headers:\n    Server: x\n", "the header \"Server\" cannot be set", Some(3)),
            ("http_server_config:\n  http2: true\n", "HTTP/1.1 only", Some(2)),
            ("tls_config:\n  a: b\n", "unknown field `tls_config`", None),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cert_fil: c\n", "unknown field `cert_fil`", Some(4)),
            ("- a\n", "invalid type: sequence", None),
        ] {
            let e = parse(text, Path::new(".")).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
            if let Some(line) = line {
                assert!(e.contains(&format!("line {line} ")), "{text:?}: {e}");
            }
        }
    }

    #[test]
    fn flow_style_block_scalars_and_anchors_read_as_helm_writes_them() {
        let text = format!(
            "tls_server_config: {{cert_file: tls.crt, key_file: \"tls.key\"}}\n\
             http_server_config:\n  headers:\n    Content-Security-Policy: >-\n      \
             default-src 'self';\n      img-src 'self'\n\
             basic_auth_users: &users\n  \"yes\": '{HASH}'\n  \"1234\": {HASH}\n"
        );
        let c = parse(&text, Path::new("/etc/tcpx")).unwrap();
        assert_eq!(c.tls.unwrap().key_file, Path::new("/etc/tcpx/tls.key"));
        assert_eq!(
            c.headers,
            [(
                "Content-Security-Policy".to_string(),
                "default-src 'self'; img-src 'self'".to_string()
            )]
        );
        let users: Vec<&str> = c.users.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(users, ["1234", "yes"]);
    }
}
