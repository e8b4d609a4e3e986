//! `triage models pull` against a local HTTP server that serves a model directory the way the
//! Hugging Face hub does (listing with LFS checksums, `resolve` URLs, `Range` requests).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::util::{root, run, triage};

const REPO: &str = "acme/tiny-bert-cls";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Default)]
struct Log {
    requests: Vec<(String, Option<String>, Option<String>)>, // path, range, authorization
}

struct Hub {
    endpoint: String,
    log: Arc<Mutex<Log>>,
}

/// Serves `files` for REPO at COMMIT; `corrupt` names a file served with wrong bytes.
fn serve(files: BTreeMap<String, Vec<u8>>, corrupt: Option<&'static str>) -> Hub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Log::default()));
    let files = Arc::new(files);
    let thread_log = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_owned();
            let (mut range, mut auth) = (None, None);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                match k.to_ascii_lowercase().as_str() {
                    "range" => range = Some(v.trim().to_owned()),
                    "authorization" => auth = Some(v.trim().to_owned()),
                    _ => {}
                }
            }
            thread_log
                .lock()
                .unwrap()
                .requests
                .push((path.clone(), range.clone(), auth));
            let (status, body): (&str, Vec<u8>) = if path
                == format!("/api/models/{REPO}/revision/main?blobs=true")
            {
                let siblings: Vec<serde_json::Value> = files
                    .iter()
                    .map(|(name, bytes)| {
                        if name.ends_with(".safetensors") {
                            let sha: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
                            serde_json::json!({"rfilename": name, "size": bytes.len(), "lfs": {"sha256": sha, "size": bytes.len()}})
                        } else {
                            serde_json::json!({"rfilename": name, "size": bytes.len()})
                        }
                    })
                    .collect();
                (
                    "200 OK",
                    serde_json::to_vec(
                        &serde_json::json!({"id": REPO, "sha": COMMIT, "siblings": siblings}),
                    )
                    .unwrap(),
                )
            } else if let Some(name) = path.strip_prefix(&format!("/{REPO}/resolve/{COMMIT}/")) {
                match files.get(name) {
                    Some(bytes) => {
                        let mut bytes = bytes.clone();
                        if corrupt == Some(name) {
                            let n = bytes.len();
                            bytes[n / 2] ^= 0xFF;
                        }
                        match range
                            .as_deref()
                            .and_then(|r| r.strip_prefix("bytes="))
                            .and_then(|r| r.strip_suffix('-'))
                        {
                            Some(from) => (
                                "206 Partial Content",
                                bytes[from.parse::<usize>().unwrap()..].to_vec(),
                            ),
                            None => ("200 OK", bytes),
                        }
                    }
                    None => ("404 Not Found", b"{}".to_vec()),
                }
            } else {
                ("404 Not Found", b"{}".to_vec())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
            let _ = stream.flush();
        }
    });
    Hub { endpoint, log }
}

fn tiny_files() -> BTreeMap<String, Vec<u8>> {
    let dir = root().join("tests/data/models/tiny-bert-cls");
    let mut files = BTreeMap::new();
    for name in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        files.insert(name.to_owned(), std::fs::read(dir.join(name)).unwrap());
    }
    // a format triage does not need must not be downloaded
    files.insert("pytorch_model.bin".to_owned(), vec![0u8; 1000]);
    files
}

fn pull(hub: &Hub, models: &std::path::Path, token: Option<&str>) -> std::process::Output {
    let mut c = triage();
    c.args([
        "models",
        "pull",
        REPO,
        "--models-dir",
        models.to_str().unwrap(),
    ])
    .env("HF_ENDPOINT", &hub.endpoint)
    .env_remove("HF_TOKEN");
    if let Some(t) = token {
        c.env("HF_TOKEN", t);
    }
    c.output().unwrap()
}

#[test]
fn pulls_a_model_directory_and_labels_with_it() {
    let files = tiny_files();
    let hub = serve(files.clone(), None);
    let models = tempfile::tempdir().unwrap();
    let o = pull(&hub, models.path(), Some("secret-token"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = models.path().join("tiny-bert-cls");
    for (name, bytes) in &files {
        if name == "pytorch_model.bin" {
            assert!(
                !dir.join(name).exists(),
                "redundant weights were downloaded"
            );
        } else {
            assert_eq!(&std::fs::read(dir.join(name)).unwrap(), bytes, "{name}");
        }
    }
    let source: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(".triage-source.json")).unwrap()).unwrap();
    assert_eq!(source["commit"], COMMIT);
    let log = hub.log.lock().unwrap();
    assert!(log
        .requests
        .iter()
        .all(|(_, _, auth)| auth.as_deref() == Some("Bearer secret-token")));
    assert!(log
        .requests
        .iter()
        .any(|(p, _, _)| p.contains(&format!("/resolve/{COMMIT}/model.safetensors"))));
    drop(log);

    // listed, with the checksum of the weights
    let o = run(
        &[
            "models",
            "list",
            "--models-dir",
            models.path().to_str().unwrap(),
        ],
        None,
    );
    let out = String::from_utf8(o.stdout).unwrap();
    let sha: String = Sha256::digest(&files["model.safetensors"])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        out.lines()
            .any(|l| l.starts_with("tiny-bert-cls") && l.ends_with(&sha)),
        "{out}"
    );

    // and usable: checkpoint mode on the pulled model
    let cfg = models.path().join("w.toml");
    std::fs::write(
        &cfg,
        "[model]\nname = \"tiny-bert-cls\"\n[labels]\nmode = \"checkpoint\"\n",
    )
    .unwrap();
    let o = run(
        &[
            "label",
            "-",
            "-c",
            cfg.to_str().unwrap(),
            "--models-dir",
            models.path().to_str().unwrap(),
        ],
        Some(b"{\"id\": \"x\", \"text\": \"free money click this link\"}\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["labels"].as_array().unwrap().len(), 4);
    assert!(r["model"].as_str().unwrap().ends_with(&sha));
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let files = tiny_files();
    let hub = serve(files.clone(), None);
    let models = tempfile::tempdir().unwrap();
    let dir = models.path().join("tiny-bert-cls");
    std::fs::create_dir_all(&dir).unwrap();
    let weights = &files["model.safetensors"];
    let half = weights.len() / 2;
    std::fs::write(dir.join("model.safetensors.part"), &weights[..half]).unwrap();
    let o = pull(&hub, models.path(), None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        &std::fs::read(dir.join("model.safetensors")).unwrap(),
        weights
    );
    assert!(!dir.join("model.safetensors.part").exists());
    let log = hub.log.lock().unwrap();
    let range = log
        .requests
        .iter()
        .find(|(p, _, _)| p.ends_with("/model.safetensors"))
        .unwrap()
        .1
        .clone();
    assert_eq!(range, Some(format!("bytes={half}-")));
}

#[test]
fn a_file_with_the_wrong_checksum_is_not_installed() {
    let hub = serve(tiny_files(), Some("model.safetensors"));
    let models = tempfile::tempdir().unwrap();
    let o = pull(&hub, models.path(), None);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("model.safetensors") && err.contains("sha256"),
        "{err}"
    );
    let dir = models.path().join("tiny-bert-cls");
    assert!(!dir.join("model.safetensors").exists());
    assert!(
        !dir.join("model.safetensors.part").exists(),
        "a wrong partial file must not be resumed from"
    );
}

#[test]
fn an_unreachable_hub_or_unknown_repo_is_a_clear_error() {
    let hub = serve(tiny_files(), None);
    let models = tempfile::tempdir().unwrap();
    let o = triage()
        .args([
            "models",
            "pull",
            "acme/nope",
            "--models-dir",
            models.path().to_str().unwrap(),
        ])
        .env("HF_ENDPOINT", &hub.endpoint)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));
    let o = triage()
        .args([
            "models",
            "pull",
            REPO,
            "--models-dir",
            models.path().to_str().unwrap(),
        ])
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("HF_ENDPOINT"));
}
