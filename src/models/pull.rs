//! `triage models pull`: download a model directory from a Hugging Face hub.
//!
//! Speaks the hub's HTTP interface: `GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true`
//! lists the files (with the SHA-256 of large files), `GET {endpoint}/{repo}/resolve/{commit}/{file}`
//! serves each. `HF_ENDPOINT` changes the hub, `HF_TOKEN` authenticates. Downloads go to
//! `<file>.part` and resume with a `Range` request; a file is moved into place only once its
//! size and checksum are right.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

/// What to pull, and where.
pub struct PullRequest<'a> {
    /// `owner/name`.
    pub repo: &'a str,
    /// Branch, tag or commit.
    pub revision: &'a str,
    /// Folder name under `models_dir` (default: the repository's name).
    pub name: Option<&'a str>,
    /// Where model directories live.
    pub models_dir: &'a Path,
}

#[derive(Deserialize)]
struct RepoInfo {
    sha: Option<String>,
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

/// Weight formats that are not needed when a `.safetensors` file is there.
fn redundant(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    name.starts_with("onnx/")
        || name.starts_with("openvino/")
        || matches!(
            base,
            "pytorch_model.bin"
                | "tf_model.h5"
                | "flax_model.msgpack"
                | "rust_model.ot"
                | "model.onnx"
        )
        || base.ends_with(".ot")
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(30))
        .timeout_read(std::time::Duration::from_secs(120))
        .build()
}

fn get(agent: &ureq::Agent, url: &str, range_from: Option<u64>) -> Result<ureq::Response> {
    let mut req = agent
        .get(url)
        .set("User-Agent", concat!("triage/", env!("CARGO_PKG_VERSION")));
    if let Ok(token) = std::env::var("HF_TOKEN") {
        if !token.is_empty() {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
    }
    if let Some(n) = range_from {
        req = req.set("Range", &format!("bytes={n}-"));
    }
    match req.call() {
        Ok(r) => Ok(r),
        Err(ureq::Error::Status(401 | 403, _)) => {
            bail!("{url}: access denied (set HF_TOKEN for gated or private models)")
        }
        Err(ureq::Error::Status(404, _)) => {
            bail!("{url}: not found (check the repository id and revision)")
        }
        Err(ureq::Error::Status(code, r)) => bail!("{url}: HTTP {code} {}", r.status_text()),
        Err(e) => bail!("{url}: {e} (is the hub reachable? HF_ENDPOINT changes it)"),
    }
}

/// Downloads the repository's files into `models_dir/<name>`; returns that directory.
pub fn pull(req: &PullRequest) -> Result<PathBuf> {
    ensure!(
        req.repo.split('/').count() == 2 && !req.repo.contains(".."),
        "{:?} is not a hub repository id (owner/name)",
        req.repo
    );
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let endpoint = endpoint.trim_end_matches('/');
    let agent = agent();
    let info_url = format!(
        "{endpoint}/api/models/{}/revision/{}?blobs=true",
        req.repo, req.revision
    );
    let info: RepoInfo = serde_json::from_reader(get(&agent, &info_url, None)?.into_reader())
        .with_context(|| format!("{info_url}: not a model listing"))?;
    let commit = info.sha.clone().unwrap_or_else(|| req.revision.to_owned());
    let has_safetensors = info
        .siblings
        .iter()
        .any(|s| s.rfilename.ends_with(".safetensors"));
    ensure!(
        has_safetensors,
        "{} has no .safetensors weights; triage reads only safetensors",
        req.repo
    );
    let name = req
        .name
        .unwrap_or_else(|| req.repo.rsplit('/').next().unwrap_or(req.repo));
    let dir = req.models_dir.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for s in info
        .siblings
        .iter()
        .filter(|s| !redundant(&s.rfilename) && !s.rfilename.starts_with('.'))
    {
        ensure!(
            !s.rfilename.contains("..") && !s.rfilename.starts_with('/'),
            "refusing file name {:?}",
            s.rfilename
        );
        let dest = dir.join(&s.rfilename);
        let (size, sha) = match &s.lfs {
            Some(l) => (Some(l.size), Some(l.sha256.as_str())),
            None => (s.size, None),
        };
        if dest.exists() && verify(&dest, size, sha).is_ok() {
            tracing::info!("{} is already complete", s.rfilename);
            continue;
        }
        let url = format!("{endpoint}/{}/resolve/{commit}/{}", req.repo, s.rfilename);
        download(&agent, &url, &dest, size, sha)
            .with_context(|| format!("downloading {}", s.rfilename))?;
    }
    std::fs::write(
        dir.join(".triage-source.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "repo": req.repo, "revision": req.revision, "commit": commit, "endpoint": endpoint,
        }))?,
    )?;
    Ok(dir)
}

fn verify(path: &Path, size: Option<u64>, sha256: Option<&str>) -> Result<()> {
    let len = std::fs::metadata(path)?.len();
    if let Some(s) = size {
        ensure!(
            len == s,
            "{} has {len} bytes, the hub says {s}",
            path.display()
        );
    }
    if let Some(want) = sha256 {
        let got = triage_classify::checksum::sha256_file(path)?;
        ensure!(
            got == want,
            "{}: sha256 {got}, the hub says {want}",
            path.display()
        );
    }
    Ok(())
}

fn download(
    agent: &ureq::Agent,
    url: &str,
    dest: &Path,
    size: Option<u64>,
    sha256: Option<&str>,
) -> Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let part = PathBuf::from(format!("{}.part", dest.display()));
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let resume = have > 0 && size.is_none_or(|s| have < s);
    let resp = get(agent, url, resume.then_some(have))?;
    let mut file = if resume && resp.status() == 206 {
        tracing::info!("resuming {} at byte {have}", dest.display());
        OpenOptions::new().append(true).open(&part)?
    } else {
        std::fs::File::create(&part)?
    };
    let mut body = resp.into_reader();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = body
            .read(&mut buf)
            .context("connection lost (run the same command again to resume)")?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])?;
    }
    file.sync_all()?;
    drop(file);
    if let Err(e) = verify(&part, size, sha256) {
        // A wrong file must not be resumed from: start over next time.
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, dest)?;
    Ok(())
}
