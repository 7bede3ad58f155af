//! `--web.config.file`: the file format of the Prometheus exporter-toolkit
//! (`tls_server_config`, `http_server_config`, `basic_auth_users`), read
//! into settings. What tcp-exporter cannot honour (TLS 1.0/1.1, cipher
//! suite and curve lists, which rustls chooses itself) is refused by name
//! rather than ignored. Relative paths are relative to the file's folder,
//! as the toolkit reads them.

use std::path::{Path, PathBuf};

use crate::yaml::{self, Item, Node};

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

/// Parses the text of a web config; relative paths are joined to `dir`.
pub fn parse(text: &str, dir: &Path) -> Result<WebConfig, String> {
    let doc = yaml::parse(text).map_err(|e| e.to_string())?;
    let mut config = WebConfig::default();
    for (key, item) in entries(&doc, "the file")? {
        match key.as_str() {
            "tls_server_config" => config.tls = tls(item, dir)?,
            "basic_auth_users" => {
                for (user, hash) in entries(item, "basic_auth_users")? {
                    let hash = string(hash, &format!("basic_auth_users.{user}"))?;
                    check_bcrypt(&hash).map_err(|why| {
                        at(hash_line(item, user), &format!("user {user:?}: {why}"))
                    })?;
                    config.users.push((user.clone(), hash));
                }
            }
            "http_server_config" => {
                for (key, value) in entries(item, "http_server_config")? {
                    match key.as_str() {
                        "headers" => {
                            for (name, v) in entries(value, "headers")? {
                                let Some(allowed) = ALLOWED_HEADERS
                                    .iter()
                                    .find(|h| h.eq_ignore_ascii_case(name))
                                else {
                                    return Err(at(
                                        v.line,
                                        &format!(
                                            "the header {name:?} cannot be set; these can: {}",
                                            ALLOWED_HEADERS.join(", ")
                                        ),
                                    ));
                                };
                                let v = string(v, name)?;
                                if v.chars().any(|c| c.is_control()) {
                                    return Err(format!("header {name}: control characters"));
                                }
                                config.headers.push((allowed.to_string(), v));
                            }
                        }
                        "http2" => {
                            return Err(at(
                                value.line,
                                "http_server_config.http2: tcp-exporter serves HTTP/1.1 only",
                            ))
                        }
                        other => return Err(unknown(value, other, "http_server_config")),
                    }
                }
            }
            other => return Err(unknown(item, other, "the file")),
        }
    }
    Ok(config)
}

fn tls(item: &Item, dir: &Path) -> Result<Option<TlsSettings>, String> {
    if item.node == Node::Null {
        return Ok(None);
    }
    let (mut cert, mut key, mut ca) = (None, None, None);
    let mut client_auth = ClientAuth::None;
    let (mut min, mut max) = (TlsVersion::Tls12, TlsVersion::Tls13);
    for (k, v) in entries(item, "tls_server_config")? {
        let path = |v: &Item| -> Result<PathBuf, String> {
            let p = PathBuf::from(string(v, k)?);
            Ok(if p.is_relative() { dir.join(p) } else { p })
        };
        match k.as_str() {
            "cert_file" => cert = Some(path(v)?),
            "key_file" => key = Some(path(v)?),
            "client_ca_file" => ca = Some(path(v)?),
            "client_auth_type" => {
                client_auth = match string(v, k)?.as_str() {
                    "NoClientCert" => ClientAuth::None,
                    "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
                    "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
                    "RequestClientCert" | "RequireAnyClientCert" => {
                        return Err(at(
                            v.line,
                            "client_auth_type: a client certificate that is not verified \
                             proves nothing; use VerifyClientCertIfGiven or \
                             RequireAndVerifyClientCert",
                        ))
                    }
                    other => {
                        return Err(at(
                            v.line,
                            &format!("client_auth_type {other:?} is unknown"),
                        ))
                    }
                }
            }
            "min_version" => min = version(v)?,
            "max_version" => max = version(v)?,
            "cert" | "key" | "client_ca" => {
                return Err(at(
                    v.line,
                    &format!("{k}: inline certificates are not supported; use {k}_file"),
                ))
            }
            "cipher_suites" | "curve_preferences" | "prefer_server_cipher_suites" => {
                return Err(at(
                    v.line,
                    &format!(
                        "{k}: not supported; rustls offers only its own modern suites and \
                         curves (remove the key)"
                    ),
                ))
            }
            "client_allowed_sans" => return Err(at(v.line, "client_allowed_sans: not supported")),
            other => return Err(unknown(v, other, "tls_server_config")),
        }
    }
    let cert = cert.ok_or_else(|| at(item.line, "tls_server_config: cert_file is missing"))?;
    let key = key.ok_or_else(|| at(item.line, "tls_server_config: key_file is missing"))?;
    if client_auth != ClientAuth::None && ca.is_none() {
        return Err(at(
            item.line,
            "tls_server_config: client_auth_type needs client_ca_file",
        ));
    }
    if ca.is_some() && client_auth == ClientAuth::None {
        return Err(at(
            item.line,
            "tls_server_config: client_ca_file is set but client_auth_type is NoClientCert",
        ));
    }
    if min > max {
        return Err(at(
            item.line,
            "tls_server_config: min_version is above max_version",
        ));
    }
    Ok(Some(TlsSettings {
        cert_file: cert,
        key_file: key,
        client_auth,
        client_ca_file: ca,
        min_version: min,
        max_version: max,
    }))
}

fn version(v: &Item) -> Result<TlsVersion, String> {
    match string(v, "version")?.as_str() {
        "TLS12" => Ok(TlsVersion::Tls12),
        "TLS13" => Ok(TlsVersion::Tls13),
        "TLS10" | "TLS11" => Err(at(
            v.line,
            "TLS 1.0 and 1.1 are not supported; use TLS12 or TLS13",
        )),
        other => Err(at(
            v.line,
            &format!("TLS version {other:?} is unknown (TLS12, TLS13)"),
        )),
    }
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

fn hash_line(users: &Item, user: &str) -> usize {
    match &users.node {
        Node::Map(m) => m
            .iter()
            .find(|(k, _)| k == user)
            .map_or(users.line, |(_, v)| v.line),
        _ => users.line,
    }
}

fn at(line: usize, message: &str) -> String {
    format!("line {line}: {message}")
}

fn entries<'a>(item: &'a Item, what: &str) -> Result<Vec<(&'a String, &'a Item)>, String> {
    match &item.node {
        Node::Null => Ok(Vec::new()),
        Node::Map(m) => Ok(m.iter().map(|(k, v)| (k, v)).collect()),
        other => Err(at(
            item.line,
            &format!("{what}: expected a map, found {}", other.kind()),
        )),
    }
}

fn string(item: &Item, what: &str) -> Result<String, String> {
    match &item.node {
        Node::Scalar(s) if !s.is_empty() => Ok(s.clone()),
        other => Err(at(
            item.line,
            &format!("{what}: expected a value, found {}", other.kind()),
        )),
    }
}

fn unknown(item: &Item, key: &str, within: &str) -> String {
    at(item.line, &format!("unknown key {key:?} in {within}"))
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
        assert_eq!(c.users[0], ("prometheus".to_string(), HASH.to_string()));
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

    #[test]
    fn what_cannot_be_honoured_is_refused_with_the_line() {
        for (text, why) in [
            ("tls_server_config:\n  cert_file: a\n", "line 1: tls_server_config: key_file is missing"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n", "line 4: TLS 1.0"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [X]\n", "line 4: cipher_suites"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n", "proves nothing"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n", "min_version is above"),
            ("basic_auth_users:\n  bob: secret\n", "line 2: user \"bob\": not a bcrypt hash"),
            ("basic_auth_users:\n  bob:\n", "expected a value"),
            ("http_server_config:\n  headers:\n    Server: x\n", "line 3: the header \"Server\" cannot be set"),
            ("http_server_config:\n  http2: true\n", "HTTP/1.1 only"),
            ("tls_config:\n  a: b\n", "line 1: unknown key \"tls_config\""),
            ("- a\n", "the file: expected a map"),
        ] {
            let e = parse(text, Path::new(".")).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }
}
