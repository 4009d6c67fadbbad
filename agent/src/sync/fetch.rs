//! Snapshot downloads: fetch the file a manifest names, check its size and
//! SHA-256, and load it into the store in one transaction.

use super::protocol::SnapshotManifest;
use crate::config::MqttConfig;
use crate::store::Store;
use crate::store::snapshot::{ImportExpectations, ImportReport};
use anyhow::{Context, bail};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// The HTTP client for snapshots and manifests: rustls (ring) trusting the
/// system's CAs and, when configured, the broker's CA file (a private cloud CA).
pub fn http_client(cfg: &MqttConfig) -> anyhow::Result<reqwest::Client> {
    super::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A broken system certificate is skipped, as the system's own tools do.
        let _ = roots.add(cert);
    }
    if let Some(ca) = &cfg.ca_file {
        for cert in super::tls::read_certificates(ca)? {
            roots
                .add(cert)
                .with_context(|| format!("mqtt.ca_file {} holds an unusable CA", ca.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(std::time::Duration::from_secs(15))
        .build()
        .context("cannot build the HTTPS client")
}

/// Plain HTTP is accepted only to this machine (the demo and the tests).
fn check_url(url: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("snapshot URL {url:?} does not parse"))?;
    let loopback = matches!(
        parsed.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    if parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback) {
        Ok(())
    } else {
        bail!("snapshot URL {url:?} must be https:// (plain http only on loopback)")
    }
}

/// Asks a manifest endpoint (`mqtt.snapshot_manifest_url`) for these streams.
pub async fn manifest(
    client: &reqwest::Client,
    url: &str,
    streams: &[String],
) -> anyhow::Result<SnapshotManifest> {
    check_url(url)?;
    let mut full =
        reqwest::Url::parse(url).with_context(|| format!("manifest URL {url:?} does not parse"))?;
    full.query_pairs_mut().append_pair("streams", &streams.join(","));
    let response = client
        .get(full)
        .send()
        .await
        .with_context(|| format!("cannot reach the snapshot manifest endpoint {url}"))?
        .error_for_status()
        .with_context(|| format!("the snapshot manifest endpoint {url} refused"))?;
    let body = response
        .bytes()
        .await
        .context("the manifest download broke off")?;
    serde_json::from_slice(&body)
        .with_context(|| format!("the manifest from {url} is not a snapshot manifest"))
}

/// Downloads `manifest.url` into `dir`, verifies it and imports it. The file is
/// removed afterwards whatever happened.
pub async fn download_and_import(
    client: &reqwest::Client,
    store: &Arc<Store>,
    manifest: &SnapshotManifest,
    dir: &Path,
    expect: ImportExpectations,
) -> anyhow::Result<ImportReport> {
    check_url(&manifest.url)?;
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create the snapshot folder {}", dir.display()))?;
    let file = dir.join(format!("snapshot-{}.jsonl", uuid::Uuid::now_v7()));
    let result = async {
        download(client, manifest, &file).await?;
        store
            .import_snapshot(&file, expect)
            .await
            .with_context(|| format!("the snapshot from {} does not load", manifest.url))
    }
    .await;
    let _ = tokio::fs::remove_file(&file).await;
    result
}

async fn download(
    client: &reqwest::Client,
    manifest: &SnapshotManifest,
    file: &PathBuf,
) -> anyhow::Result<()> {
    let response = client
        .get(&manifest.url)
        .send()
        .await
        .with_context(|| format!("cannot download the snapshot {}", manifest.url))?
        .error_for_status()
        .with_context(|| format!("the snapshot server refused {}", manifest.url))?;
    let mut out = tokio::fs::File::create(file)
        .await
        .with_context(|| format!("cannot create {}", file.display()))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("the download of {} broke off", manifest.url))?;
        size += chunk.len() as u64;
        if size > manifest.size {
            bail!(
                "the snapshot {} is larger than the manifest's {} bytes",
                manifest.url,
                manifest.size
            );
        }
        hasher.update(&chunk);
        out.write_all(&chunk)
            .await
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    out.sync_all()
        .await
        .with_context(|| format!("cannot write {}", file.display()))?;
    if size != manifest.size {
        bail!(
            "the snapshot {} has {size} bytes, the manifest says {}",
            manifest.url,
            manifest.size
        );
    }
    let digest = hex::encode(hasher.finalize());
    if !digest.eq_ignore_ascii_case(&manifest.sha256) {
        bail!(
            "the snapshot {} has SHA-256 {digest}, the manifest says {}",
            manifest.url,
            manifest.sha256
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(check_url("https://cloud.example.com/s.jsonl").is_ok());
        assert!(check_url("http://127.0.0.1:8080/s.jsonl").is_ok());
        assert!(check_url("http://localhost/s.jsonl").is_ok());
        assert!(check_url("http://cloud.example.com/s.jsonl").is_err());
        assert!(check_url("ftp://127.0.0.1/s").is_err());
        assert!(check_url("not a url").is_err());
    }
}
