//! A full disk under the running agent: its state directory on a small tmpfs,
//! filled to the last byte. The screens keep reading; new POS input is refused
//! (HTTP 507, spool files left where they are); `/readyz` and `status` say the
//! disk is full; when space returns, the waiting file is recorded, the POS's
//! resend goes in, and nothing is lost, doubled or corrupted.
//!
//! Mounting a tmpfs needs root: as another user the test prints why it skips,
//! and under `CI=true` it fails instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use store_agent_e2e::http::{Response, request};
use store_agent_e2e::rig::{READY_TIMEOUT, STOP_TIMEOUT, wait_for};
use store_agent_e2e::{TestDir, config_text, path_str, poslog_sale, toml_string};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(at)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Writes `filler` until the file system refuses a single further byte.
fn fill(filler: &Path) -> u64 {
    let mut f = std::fs::File::create(filler).unwrap();
    let mut written = 0u64;
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![0x5a; chunk];
        while f.write_all(&buf).is_ok() {
            written += chunk as u64;
        }
    }
    let _ = f.sync_all();
    written
}

fn post_sale(addr: &str, seq: u32) -> Response {
    request(
        addr,
        "POST",
        "/api/v1/pos/transactions",
        &[("Content-Type", "application/xml")],
        poslog_sale(seq).as_bytes(),
    )
}

#[test]
fn a_full_disk_refuses_pos_input_keeps_the_screens_and_resumes_without_loss() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the disk-full test needs root (to mount a tmpfs) under CI"
        );
        eprintln!(
            "SKIP disk full: mounting a tmpfs needs root; run the suite as root (scripts/test.sh) to include it"
        );
        return;
    }
    let dir = TestDir::new();
    let state = dir.join("state");
    let tmpfs = Tmpfs::mount(&state, "24m");
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let (snapshot, summary) = dir.sample_data(300, 200);
    let config = dir.write(
        "config.toml",
        format!(
            "{}\n[http]\nlisten = \"127.0.0.1:0\"\n\n[spool]\npath = {}\nrescan_ms = 200\n",
            config_text(&state.join("store.db"))
                .replace("[database]\n", "[database]\nmin_free_bytes = 2097152\n"),
            toml_string(&path_str(&spool)),
        ),
    );
    dir.run_ok(["import", &snapshot, "--config", &config]);
    let mut agent = dir.spawn_ready(&config);
    let addr = agent.http_addr();
    assert_eq!(post_sale(&addr, 1).status, 201);
    // An associate signed in before the disk fills: reading needs no space.
    let page = request(&addr, "GET", "/console/sign-in", &[], b"");
    let cookie = page.session_cookie().unwrap();
    let a0 = &summary["associates"][0];
    let signed = request(
        &addr,
        "POST",
        "/api/v1/session",
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &page.csrf()),
            ("Content-Type", "application/json"),
        ],
        serde_json::json!({ "associate_id": a0["associate_id"], "pin": a0["pin"] })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(signed.status, 200, "{}", signed.body);
    let staff = signed.session_cookie().unwrap();

    let filler = state.join("filler");
    let filled = fill(&filler);
    assert!(filled > 0, "the tmpfs took no filler");

    // New POS input is refused, and says why.
    let refused = post_sale(&addr, 2);
    assert_eq!(refused.status, 507, "{}", refused.body);
    let error = refused.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("disk") && error.contains("full"), "{error}");
    // A spool file waits where the POS put it: not processed, not rejected.
    let waiting = spool.join("sale-3.xml");
    std::fs::write(&waiting, poslog_sale(3)).unwrap();
    assert!(
        agent.wait_for_stderr("Spool file waits: the disk is full.", READY_TIMEOUT),
        "{}",
        agent.stderr_so_far()
    );
    assert!(waiting.exists(), "the spool file stays in the folder");
    for sub in ["processed", "rejected"] {
        let n = std::fs::read_dir(spool.join(sub)).map_or(0, |d| d.count());
        assert_eq!(n, 0, "nothing in {sub}/ while the disk is full");
    }
    // The screens keep reading.
    let pickups = request(&addr, "GET", "/api/v1/pickups", &[("Cookie", &staff)], b"");
    assert_eq!(pickups.status, 200, "{}", pickups.body);
    assert_eq!(request(&addr, "GET", "/kiosk", &[], b"").status, 200);
    // Readiness and status report the condition.
    let ready = request(&addr, "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 503, "{}", ready.body);
    let storage = &ready.json()["checks"]["storage"];
    assert_eq!(storage["state"], "full", "{storage}");
    assert!(storage["disk_full_since_ms"].is_i64(), "{storage}");
    let status = dir.status_json(&config);
    assert_eq!(status["storage"]["state"], "full", "{status:#}");
    let text = dir.run_ok(["status", "--config", &config]);
    assert!(text.stdout.contains("DISK FULL"), "{text}");

    // Space returns: the waiting file is recorded and moved, the resend goes in.
    std::fs::remove_file(&filler).unwrap();
    assert!(
        wait_for(READY_TIMEOUT, || !waiting.exists()),
        "the spool file was not taken after space returned:\n{}",
        agent.stderr_so_far()
    );
    assert_eq!(std::fs::read_dir(spool.join("processed")).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(spool.join("rejected")).unwrap().count(), 0);
    let resent = post_sale(&addr, 2);
    assert_eq!(resent.status, 201, "{}", resent.body);
    assert_eq!(resent.json()["recorded"][0]["result"], "new");
    let ready = request(&addr, "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["checks"]["storage"]["state"], "ok");

    agent.signal(libc::SIGTERM);
    let out = agent.finish(STOP_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{out}");
    // Exactly the three sales, each once, each with its outbox row; the file is sound.
    let status = dir.status_json(&config);
    assert_eq!(status["counts"]["pos_transactions"], 3, "{status:#}");
    let pos_outbox = status["outbox"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["stream"] == "pos_transactions")
        .map(|o| o["depth"].clone());
    assert_eq!(pos_outbox, Some(serde_json::json!(3)), "{status:#}");
    let integrity = dir.run(["db", "integrity", "--config", &config]);
    assert_eq!(integrity.code(), Some(0), "{integrity}");
    drop(tmpfs);
}
