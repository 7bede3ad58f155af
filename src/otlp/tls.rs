//! TLS to the receiver (an `https://` endpoint): the receiver's certificate
//! checked against `--otlp-ca` (else the system's roots), and with
//! `--otlp-cert`/`--otlp-key` a client certificate for receivers that ask
//! for one. The files are read at start; a file that does not load stops
//! the start with its reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// `--otlp-ca`, `--otlp-cert`, `--otlp-key`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    /// The client certificate and its key, together.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// What the files hold, read once.
#[derive(Clone, Debug)]
pub struct TlsMaterial {
    /// PEM of the CA certificates, if given.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM of the client certificate chain and of its key.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// The same, for rustls (HTTP).
    pub client: Arc<ClientConfig>,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{what} {}", path.display()))
}

fn certs(pem: &[u8], path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{what} {}: no certificate in it", path.display());
    }
    Ok(certs)
}

/// Reads and checks the files.
pub fn load(files: &TlsFiles) -> Result<TlsMaterial> {
    load_for(files, "--otlp")
}

/// Reads and checks the files, named in errors as the flags `{flags}-ca`,
/// `{flags}-cert` and `{flags}-key` (`tcp-exporter top` has its own).
pub fn load_for(files: &TlsFiles, flags: &str) -> Result<TlsMaterial> {
    let (ca_flag, cert_flag, key_flag) = (
        format!("{flags}-ca"),
        format!("{flags}-cert"),
        format!("{flags}-key"),
    );
    let mut roots = RootCertStore::empty();
    let ca_pem = match &files.ca {
        Some(path) => {
            let pem = read(path, &ca_flag)?;
            for cert in certs(&pem, path, &ca_flag)? {
                roots
                    .add(cert)
                    .map_err(|e| anyhow::anyhow!("{ca_flag} {}: {e}", path.display()))?;
            }
            Some(pem)
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            None
        }
    };
    let builder = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots);
    let (client, identity_pem) = match &files.identity {
        Some((cert, key)) => {
            let cert_pem = read(cert, &cert_flag)?;
            let key_pem = read(key, &key_flag)?;
            let chain = certs(&cert_pem, cert, &cert_flag)?;
            let private = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| anyhow::anyhow!("{key_flag} {}: {e}", key.display()))?;
            let client = builder
                .with_client_auth_cert(chain, private)
                .with_context(|| format!("{cert_flag} and {key_flag}"))?;
            (client, Some((cert_pem, key_pem)))
        }
        None => (builder.with_no_client_auth(), None),
    };
    Ok(TlsMaterial {
        ca_pem,
        identity_pem,
        client: Arc::new(client),
    })
}
