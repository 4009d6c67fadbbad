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

/// Why the TLS part of a broker connection failed, in the terms store IT fixes it
/// by. Shared by the running agent (`status`, the log) and `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The broker's certificate does not chain to the CA in `mqtt.ca_file`.
    UntrustedBroker(String),
    /// The broker's certificate does not name `mqtt.host`.
    WrongHostName(String),
    /// The broker's certificate is expired or not valid yet (or this clock is wrong).
    BrokerCertificateDates(String),
    /// Another fault of the broker's certificate.
    BrokerCertificate(String),
    /// The broker refused this device's certificate: a TLS alert from it.
    DeviceRefused(String),
}

impl Refusal {
    /// The refusal a rustls error means, if it is one.
    pub fn of(e: &rustls::Error) -> Option<Refusal> {
        use rustls::CertificateError as C;
        Some(match e {
            rustls::Error::InvalidCertificate(c) => {
                let detail = c.to_string();
                match c {
                    C::UnknownIssuer | C::BadSignature => Refusal::UntrustedBroker(detail),
                    C::NotValidForName | C::NotValidForNameContext { .. } => Refusal::WrongHostName(detail),
                    C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
                        Refusal::BrokerCertificateDates(detail)
                    }
                    _ => Refusal::BrokerCertificate(detail),
                }
            }
            rustls::Error::AlertReceived(alert) => Refusal::DeviceRefused(format!("TLS alert {alert:?}")),
            _ => return None,
        })
    }

    /// The refusal somewhere in an error's chain (rumqttc and reqwest wrap the
    /// rustls error in I/O errors).
    pub fn find(e: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
        let mut next = Some(e);
        while let Some(err) = next {
            if let Some(r) = err.downcast_ref::<rustls::Error>() {
                return Refusal::of(r);
            }
            // io::Error's `source` skips the error it wraps: look inside it.
            next = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => err.source(),
            };
        }
        None
    }

    /// What to do about it, naming the setting to change.
    pub fn fix(&self) -> &'static str {
        match self {
            Refusal::UntrustedBroker(_) => {
                "mqtt.ca_file must hold the CA that signed the broker's certificate"
            }
            Refusal::WrongHostName(_) => "mqtt.host must be a name the broker's certificate is issued for",
            Refusal::BrokerCertificateDates(_) => {
                "check this device's clock; otherwise the broker's certificate must be renewed"
            }
            Refusal::BrokerCertificate(_) => {
                "the broker needs a certificate issued for TLS servers by the store's CA"
            }
            Refusal::DeviceRefused(_) => {
                "the broker must trust the CA that issued the device certificate, and the certificate must be valid today"
            }
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::UntrustedBroker(d) => write!(
                f,
                "the broker's certificate is not signed by the configured CA ({d})"
            ),
            Refusal::WrongHostName(d) => {
                write!(f, "the broker's certificate is not for this host name ({d})")
            }
            Refusal::BrokerCertificateDates(d) => {
                write!(f, "the broker's certificate is not valid now ({d})")
            }
            Refusal::BrokerCertificate(d) => write!(f, "the broker's certificate is not accepted ({d})"),
            Refusal::DeviceRefused(d) => write!(f, "the broker refused this device's certificate ({d})"),
        }
    }
}

/// The validity of the first certificate in a PEM file, as Unix seconds
/// (not before, not after); `None` when it cannot be read.
pub fn certificate_validity(path: &Path) -> Option<(i64, i64)> {
    let der = read_certificates(path).ok()?.into_iter().next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

/// A Unix time as a UTC date, `2026-12-06`.
pub fn utc_date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_else(|_| unix.to_string())
}
