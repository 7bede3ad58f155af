//! TLS for the HTTP server, with rustls (ring): the server configuration
//! built from `tls_server_config`, and built again when the certificate,
//! key or client CA files change, so that a rotated certificate (a
//! Kubernetes Secret updated by cert-manager) is served without a restart.
//! A change that does not load keeps the previous configuration and says
//! why once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::webconfig::{ClientAuth, TlsSettings, TlsVersion};

/// How often the files are looked at for a change, at most.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

pub struct Tls {
    settings: TlsSettings,
    state: Mutex<State>,
}

struct State {
    acceptor: TlsAcceptor,
    /// The files' modification times and sizes when it was built.
    stamp: Vec<Option<(SystemTime, u64)>>,
    checked: Instant,
    /// The last reload failure reported, so it is reported once.
    failed: Option<String>,
}

impl Tls {
    /// Loads the certificate and key: an error here stops the start.
    pub fn load(settings: TlsSettings) -> Result<Tls, String> {
        let stamp = stamp(&settings);
        let acceptor = TlsAcceptor::from(Arc::new(build(&settings)?));
        Ok(Tls {
            settings,
            state: Mutex::new(State {
                acceptor,
                stamp,
                checked: Instant::now(),
                failed: None,
            }),
        })
    }

    /// The acceptor for a new connection, rebuilt first if the files changed.
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = Instant::now();
            let now = stamp(&self.settings);
            if now != state.stamp {
                match build(&self.settings) {
                    Ok(config) => {
                        state.acceptor = TlsAcceptor::from(Arc::new(config));
                        state.stamp = now;
                        state.failed = None;
                        eprintln!("tcp-exporter: TLS certificate reloaded");
                    }
                    Err(e) => {
                        if state.failed.as_ref() != Some(&e) {
                            eprintln!(
                                "tcp-exporter: TLS files changed but do not load ({e}); \
                                 serving the previous certificate"
                            );
                            state.failed = Some(e);
                        }
                    }
                }
            }
        }
        state.acceptor.clone()
    }
}

fn files(settings: &TlsSettings) -> Vec<&Path> {
    let mut files = vec![settings.cert_file.as_path(), settings.key_file.as_path()];
    files.extend(settings.client_ca_file.as_deref());
    files
}

fn stamp(settings: &TlsSettings) -> Vec<Option<(SystemTime, u64)>> {
    files(settings)
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

fn certs(path: &PathBuf, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// The rustls server configuration the settings describe.
fn build(settings: &TlsSettings) -> Result<ServerConfig, String> {
    let provider = Arc::new(default_provider());
    let versions: Vec<_> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (settings.min_version..=settings.max_version).contains(v))
    .map(|(_, v)| v)
    .collect();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?;
    let builder = match (&settings.client_ca_file, settings.client_auth) {
        (Some(ca), auth) if auth != ClientAuth::None => {
            let mut roots = RootCertStore::empty();
            for cert in certs(ca, "client_ca_file")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::VerifyIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
        _ => builder.with_no_client_auth(),
    };
    let chain = certs(&settings.cert_file, "cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&settings.key_file)
        .map_err(|e| format!("key_file {}: {e}", settings.key_file.display()))?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("cert_file and key_file: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
