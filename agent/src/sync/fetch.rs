//! Snapshot downloads: fetch the file a manifest names, check its size and
//! SHA-256, and load it into the store in one transaction.

use super::protocol::SnapshotManifest;
use crate::config::MqttConfig;
use crate::store::Store;
use crate::store::snapshot::{ImportExpectations, ImportReport};
use anyhow::{Context, bail};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

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

/// How many downloaded chunks may wait for the parser: enough to keep the
/// network busy while SQLite works, bounded so a fast link cannot fill memory.
const CHUNKS_IN_FLIGHT: usize = 64;

/// Downloads `manifest.url` and imports it as it arrives, verifying size and
/// SHA-256 on the way. The import commits only after the last byte arrived and
/// matched the manifest: a short, long or altered file fails the read at its end,
/// and the transaction rolls back. Streaming saves the time of writing the file
/// and reading it back (and its disk space).
pub async fn download_and_import(
    client: &reqwest::Client,
    store: &Arc<Store>,
    manifest: &SnapshotManifest,
    expect: ImportExpectations,
) -> anyhow::Result<ImportReport> {
    check_url(&manifest.url)?;
    let response = client
        .get(&manifest.url)
        .send()
        .await
        .with_context(|| format!("cannot download the snapshot {}", manifest.url))?
        .error_for_status()
        .with_context(|| format!("the snapshot server refused {}", manifest.url))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, String>>(CHUNKS_IN_FLIGHT);
    let reader = ChannelReader {
        rx,
        chunk: Vec::new(),
        pos: 0,
    };
    let import = store.import_snapshot_stream(PathBuf::from(&manifest.url), Box::new(reader), expect);
    let download = async move {
        let result = stream_verified(response, manifest, &tx).await;
        if let Err(e) = &result {
            // The parser must fail, not see a clean end of file.
            let _ = tx.send(Err(format!("{e:#}"))).await;
        }
        result
    };
    let (downloaded, imported) = tokio::join!(download, import);
    downloaded?;
    imported.with_context(|| format!("the snapshot from {} does not load", manifest.url))
}

/// Feeds the body to the parser, counting and hashing it; checks both at the end.
async fn stream_verified(
    response: reqwest::Response,
    manifest: &SnapshotManifest,
    tx: &tokio::sync::mpsc::Sender<Result<Vec<u8>, String>>,
) -> anyhow::Result<()> {
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
        if tx.send(Ok(chunk.to_vec())).await.is_err() {
            // The import stopped early; its error says why.
            return Ok(());
        }
    }
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

/// The parser thread's view of the download: blocking reads of the chunks the
/// download task sends (the parser is a plain thread, so blocking is its job).
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                // The sender is dropped only after the size and hash matched.
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{self, SampleSpec};
    use crate::store::{KeyedHasher, StoreOptions};

    /// Serves `body` at http://127.0.0.1:PORT/s.jsonl until the test ends.
    async fn serve(body: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/s.jsonl",
            axum::routing::get(move || async move { body.clone() }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/s.jsonl")
    }

    fn hasher() -> KeyedHasher {
        sample::demo_hasher()
    }

    fn customers(store: &Store) -> i64 {
        store
            .reads()
            .with(|c| Ok(c.query_row("SELECT count(*) FROM customers", [], |r| r.get(0))?))
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_streamed_snapshot_commits_only_when_size_and_hash_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(StoreOptions::new(dir.path().join("s.db"), hasher())).unwrap());
        let mut body = Vec::new();
        sample::write_snapshot(&SampleSpec::new(3, 50, 20), &hasher(), &mut body).unwrap();
        let url = serve(body.clone()).await;
        let config = crate::config::Config::parse(
            "[store]\ntenant_id = \"t\"\nstore_id = \"s\"\ndevice_id = \"d\"\n\
             [loyalty]\nhash_key = \"6464646464646464646464646464646464646464646464646464646464646464\"\n\
             [mqtt]\nhost = \"127.0.0.1\"\nallow_plaintext = true\n",
            &|_| None,
        )
        .unwrap();
        let client = http_client(config.mqtt.as_ref().unwrap()).unwrap();
        let good = SnapshotManifest {
            url: url.clone(),
            size: body.len() as u64,
            sha256: hex::encode(Sha256::digest(&body)),
            streams: Default::default(),
        };
        let expect = ImportExpectations::default;

        // A wrong hash is found at the very end of the body: nothing is committed.
        let bad_hash = SnapshotManifest {
            sha256: "00".repeat(32),
            ..good.clone()
        };
        let e = download_and_import(&client, &store, &bad_hash, expect())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("SHA-256"), "{e:#}");
        assert_eq!(customers(&store), 0);
        // So is a body shorter than the manifest says.
        let too_short = SnapshotManifest {
            size: good.size + 1,
            ..good.clone()
        };
        let e = download_and_import(&client, &store, &too_short, expect())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("bytes"), "{e:#}");
        assert_eq!(customers(&store), 0);

        let report = download_and_import(&client, &store, &good, expect())
            .await
            .unwrap();
        assert!(report.records > 50);
        assert_eq!(customers(&store), 50);
    }

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
