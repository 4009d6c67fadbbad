//! TLS for the MQTT connection and snapshot downloads: rustls with the ring
//! provider, the store's CA file and the device's client certificate.

use anyhow::{Context, bail};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Installs ring as rustls' process-wide crypto provider. Call once at start,
/// before any TLS is set up; later calls are harmless.
pub fn install_crypto_provider() {
    // Err only means another provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads every certificate of a PEM file.
pub fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("{} is not a PEM private key file", path.display()))?
        .with_context(|| format!("{} holds no PEM private key", path.display()))
}

/// A client configuration that trusts only the CA in `ca_file` and, when given,
/// presents the certificate and key of this device.
pub fn client_config(
    ca_file: &Path,
    client: Option<(&Path, &Path)>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certificates(ca_file)? {
        roots.add(cert).with_context(|| {
            format!(
                "{} holds a certificate rustls cannot use as a CA",
                ca_file.display()
            )
        })?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        Some((cert_file, key_file)) => builder
            .with_client_auth_cert(read_certificates(cert_file)?, read_private_key(key_file)?)
            .with_context(|| {
                format!(
                    "the client certificate {} does not match the key {}",
                    cert_file.display(),
                    key_file.display()
                )
            })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The rumqttc transport for [`client_config`].
pub fn mqtt_transport(
    ca_file: &Path,
    cert_file: &Path,
    key_file: &Path,
) -> anyhow::Result<rumqttc::Transport> {
    let config = client_config(ca_file, Some((cert_file, key_file)))?;
    Ok(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(config),
    ))
}
