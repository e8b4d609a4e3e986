//! Runs that are killed (SIGKILL) or interrupted (SIGINT) at random points resume into output,
//! errors and summary byte-identical to an uninterrupted run; and the output never depends on
//! the thread count.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{root, triage};

/// A dump of `n` records over the tiny model's vocabulary, with a bad line every 97 records.
fn dump(dir: &Path, n: usize) -> PathBuf {
    let words = [
        "join", "the", "fight", "now", "free", "money", "click", "this", "link", "council",
        "approved", "budget", "weather", "is", "sunny", "today",
    ];
    let mut s = String::new();
    let mut x: u64 = 12345;
    for i in 0..n {
        if i % 97 == 13 {
            s.push_str("{\"id\": \"broken\", \"text\": \n");
            continue;
        }
        let len = 2 + (i % 11);
        let text: Vec<&str> = (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                words[(x >> 33) as usize % words.len()]
            })
            .collect();
        s.push_str(&format!(
            "{{\"id\": \"r{i}\", \"text\": \"{}\"}}\n",
            text.join(" ")
        ));
    }
    let p = dir.join("dump.jsonl");
    std::fs::write(&p, s).unwrap();
    p
}

fn config(dir: &Path) -> PathBuf {
    crate::util::checkpoint_config(dir, &root().join("tests/data/models/tiny-bert-cls"))
}

fn label(input: &Path, out: &Path, cfg: &Path, extra: &[&str]) -> Command {
    let mut c = triage();
    c.args([
        "label",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-c",
        cfg.to_str().unwrap(),
        "--progress",
        "never",
    ])
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

/// Waits (at most 60 s) until the run has written its first checkpoint: it is then labelling,
/// with its Ctrl-C handler installed.
fn wait_for_checkpoint(out: &Path) {
    let cp = PathBuf::from(format!("{}.checkpoint.json", out.display()));
    for _ in 0..600 {
        if cp.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no checkpoint appeared at {}", cp.display());
}

fn files(out: &Path) -> Vec<Vec<u8>> {
    ["", ".errors.jsonl", ".summary.json"]
        .iter()
        .map(|suffix| std::fs::read(format!("{}{suffix}", out.display())).unwrap())
        .collect()
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn verify(manifest: &Path) -> std::process::Output {
    triage().arg("verify").arg(manifest).output().unwrap()
}

#[test]
fn killed_at_random_points_resumes_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let input = dump(dir.path(), 30_000);
    let cfg = config(dir.path());
    let reference = dir.path().join("ref.jsonl");
    let t = Instant::now();
    let o = label(&input, &reference, &cfg, &[]).output().unwrap();
    let full = t.elapsed();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let want = files(&reference);
    assert!(want[0].len() > 1_000_000 && !want[1].is_empty());

    let out = dir.path().join("out.jsonl");
    let mut seed: u64 = 0x5eed;
    let mut kills = 0;
    for _ in 0..8 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        // each attempt runs for a random share of a fifth of the full run, so most are killed
        let delay =
            Duration::from_millis(30 + (seed >> 33) % (full.as_millis() as u64 / 5).max(50));
        let mut child = label(&input, &out, &cfg, &["--resume"]).spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    let o = label(&input, &out, &cfg, &["--resume"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = files(&out);
    assert!(got[0] == want[0], "output differs after {kills} kills");
    assert!(got[1] == want[1], "errors differ");
    assert_eq!(
        String::from_utf8_lossy(&got[2]),
        String::from_utf8_lossy(&want[2])
    );
    assert!(
        kills >= 4,
        "only {kills} kills landed mid-run (run takes {full:?})"
    );
    // resuming a complete run changes nothing
    let o = label(&input, &out, &cfg, &["--resume"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("already complete"));
    assert_eq!(files(&out), want);
}

#[test]
fn interrupted_runs_checkpoint_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let input = dump(dir.path(), 30_000);
    let cfg = config(dir.path());
    let reference = dir.path().join("ref.jsonl");
    assert_eq!(
        label(&input, &reference, &cfg, &["--threads", "1"])
            .status()
            .unwrap()
            .code(),
        Some(1)
    );
    let out = dir.path().join("out.jsonl");
    let child = label(&input, &out, &cfg, &[]).spawn().unwrap();
    wait_for_checkpoint(&out);
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    // signalled right after its first checkpoint, with ~29,700 records still to go
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("--resume"), "{err}");
    let cp: serde_json::Value = serde_json::from_slice(
        &std::fs::read(format!("{}.checkpoint.json", out.display())).unwrap(),
    )
    .unwrap();
    assert_eq!(cp["complete"], false);
    assert!(cp["lines_done"].as_u64().unwrap() > 0);
    // the interrupted run's manifest says so, and does not verify
    let manifest = PathBuf::from(format!("{}.manifest.json", out.display()));
    let m = read_json(&manifest);
    assert_eq!(
        (
            m["complete"].as_bool(),
            m["steps"][0]["interrupted"].as_bool()
        ),
        (Some(false), Some(true))
    );
    let v = verify(&manifest);
    assert_eq!(v.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&v.stdout).contains("INCOMPLETE"));
    let o = label(&input, &out, &cfg, &["--resume", "--threads", "2"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // also: 1 thread for the reference, 2 here: the output does not depend on the thread count
    assert_eq!(files(&out), files(&reference));
    // the resumed run's manifest names both parts of the run, and verifies
    let r = read_json(&manifest);
    assert_eq!(
        (r["complete"].as_bool(), r["resumed"].as_bool()),
        (Some(true), Some(true))
    );
    let steps = crate::util::field_of_each(&r["steps"], "command");
    assert_eq!(steps, ["label", "label --resume"]);
    assert_eq!(r["started"], m["started"]);
    assert_eq!(r["steps"][0]["records"], m["records"]);
    assert_eq!(verify(&manifest).status.code(), Some(0));
}

#[test]
fn a_checkpoint_of_another_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dump(dir.path(), 300);
    let cfg = config(dir.path());
    let out = dir.path().join("out.jsonl");
    label(&input, &out, &cfg, &[]).status().unwrap();
    let other = dump(&dir.path().join("x").tap_mkdir(), 301);
    let o = label(&other, &out, &cfg, &["--resume"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("belongs to another run"));
    let o = triage()
        .args(["label", input.to_str().unwrap(), "--resume"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn duplicate_texts_are_inferred_once_with_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut s = String::new();
    let bases = [
        "free money click this link",
        "join the fight now",
        "the weather is sunny today",
        "council approved",
        "budget",
        "FREE Money CLICK this LINK",
    ];
    let tails = [
        "now", "the", "this", "is", "today", "sunny", "fight", "link",
    ];
    for i in 0..2000 {
        // 5 x 8 = 40 distinct texts: the tokenizer lower-cases, so the last base is the first
        let t = format!("{} {}", bases[i % 6], tails[(i / 6) % 8]);
        s.push_str(&format!("{{\"id\": \"{i}\", \"text\": \"{t}\"}}\n"));
    }
    let input = dir.path().join("dup.jsonl");
    std::fs::write(&input, s).unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    let oa = label(&input, &a, &cfg, &[]).output().unwrap();
    let ob = label(&input, &b, &cfg, &["--no-dedupe"]).output().unwrap();
    assert!(oa.status.success() && ob.status.success());
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "reuse changes the output"
    );
    let ta = String::from_utf8_lossy(&oa.stderr);
    let tb = String::from_utf8_lossy(&ob.stderr);
    assert!(
        ta.contains("2000 labelled (1960 reused earlier scores)"),
        "{ta}"
    );
    assert!(
        tb.contains("2000 labelled (0 reused earlier scores)"),
        "{tb}"
    );
    let summary = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
    assert_eq!(
        summary("a.jsonl.summary.json"),
        summary("b.jsonl.summary.json")
    );
}

#[test]
fn shards_merge_into_what_one_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dump(dir.path(), 3000);
    let cfg = config(dir.path());
    let whole = dir.path().join("whole.jsonl");
    assert_eq!(
        label(&input, &whole, &cfg, &[]).status().unwrap().code(),
        Some(1)
    );
    let mut parts = Vec::new();
    for i in 0..3 {
        let part = dir.path().join(format!("part{i}.jsonl"));
        let shard = format!("{i}/3");
        label(&input, &part, &cfg, &["--shard", &shard])
            .status()
            .unwrap();
        let n = std::fs::read_to_string(&part).unwrap().lines().count();
        assert!(n > 500 && n < 1500, "shard {i} holds {n} records");
        parts.push(part);
    }
    let merged = dir.path().join("merged.jsonl");
    let o = triage()
        .arg("merge")
        .arg("-o")
        .arg(&merged)
        .args(&parts)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(files(&merged), files(&whole));
    // the merged manifest names its parts' manifests; verify follows them to the input
    let manifest = PathBuf::from(format!("{}.manifest.json", merged.display()));
    let m = read_json(&manifest);
    assert_eq!(m["kind"], "merge");
    let roles = crate::util::field_of_each(&m["files"], "role");
    assert_eq!(
        roles,
        ["manifest", "manifest", "manifest", "output", "errors", "summary"]
    );
    assert_eq!(
        m["config_id"],
        read_json(&PathBuf::from(format!(
            "{}.manifest.json",
            parts[0].display()
        )))["config_id"]
    );
    let v = verify(&manifest);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
    let report = String::from_utf8_lossy(&v.stdout).into_owned();
    assert_eq!(report.matches("ok       input").count(), 3, "{report}");
    // one byte of the input: found through every part
    let before = std::fs::read(&input).unwrap();
    let mut changed = before.clone();
    changed[100] ^= 1;
    std::fs::write(&input, &changed).unwrap();
    let v = verify(&manifest);
    assert_eq!(v.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&v.stdout)
            .matches("CHANGED  input")
            .count(),
        3
    );
    // --shallow checks the merge's own files only
    let shallow = triage()
        .args(["verify", "--shallow"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(shallow.status.code(), Some(0));
    std::fs::write(&input, &before).unwrap();
    // a part changed after the merge
    let body = std::fs::read(&parts[1]).unwrap();
    std::fs::write(&parts[1], [&body[..], b"\n"].concat()).unwrap();
    let v = verify(&manifest);
    assert_eq!(v.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&v.stdout).contains("CHANGED  output"));
    std::fs::write(&parts[1], body).unwrap();
    // the same part twice is refused
    let o = triage()
        .arg("merge")
        .arg("-o")
        .arg(dir.path().join("bad.jsonl"))
        .args([&parts[0], &parts[0]])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("out of order or repeated"));
    let o = triage()
        .args(["label", "x.jsonl", "--shard", "3/3"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_full_disk_is_a_clear_error_with_a_consistent_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let input = dump(dir.path(), 3000); // a bad line every 97 records
    let cfg = config(dir.path());
    let reference = dir.path().join("ref.jsonl");
    label(&input, &reference, &cfg, &[]).status().unwrap();
    let out = dir.path().join("out.jsonl");
    // error records go to a device that is always full
    let o = label(&input, &out, &cfg, &["--errors", "/dev/full"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/dev/full") && err.contains("No space left"),
        "{err}"
    );
    // nothing after the last good checkpoint is trusted: resuming with a working errors file
    // gives what one uninterrupted run gives
    let o = label(
        &input,
        &out,
        &cfg,
        &[
            "--resume",
            "--errors",
            &format!("{}.errors.jsonl", out.display()),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(files(&out), files(&reference));
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // long records (several windows each), so that the orderly stop after the first Ctrl-C,
    // which finishes the chunks already read, takes far longer than it takes to send the
    // second (with one-line records it could finish first and print the summary)
    let input = dir.path().join("long.jsonl");
    let text = "the council approved the budget and the weather is sunny today ".repeat(40);
    let lines: String = (0..20_000)
        .map(|i| format!("{{\"id\": \"r{i}\", \"text\": \"{i} {text}\"}}\n"))
        .collect();
    std::fs::write(&input, lines).unwrap();
    let cfg = config(dir.path());
    let out = dir.path().join("out.jsonl");
    let mut child = label(&input, &out, &cfg, &[]).spawn().unwrap();
    wait_for_checkpoint(&out);
    // stderr line by line, so that the second Ctrl-C goes only once the first has been taken
    // (two signals pending at once would count as one)
    let stderr = child.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let line = line.unwrap();
            let _ = lines.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let interrupt = || {
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
    };
    interrupt();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) if line.contains("Ctrl-C again") => break,
            Ok(_) => {}
            Err(e) => panic!("no message after the first Ctrl-C: {e}"),
        }
    }
    interrupt();
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    // the immediate exit, not the orderly stop that finishes the chunks and prints the summary
    assert!(
        err.contains("interrupted again") && !err.contains("records:"),
        "{err}"
    );
}

#[test]
fn a_small_duplicate_cache_evicts_without_losing_records() {
    // regression: a text found in the cache could be evicted by the same chunk's new entries
    // before its scores were read, and became an "inference" error record
    let dir = tempfile::tempdir().unwrap();
    let input = dump(dir.path(), 5000); // 16 words, lengths 2-12: many repeats, many distinct
    let cfg = config(dir.path());
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    label(&input, &a, &cfg, &["--dedupe-capacity", "3"])
        .status()
        .unwrap();
    label(&input, &b, &cfg, &["--no-dedupe"]).status().unwrap();
    let errors = std::fs::read_to_string(dir.path().join("a.jsonl.errors.jsonl")).unwrap();
    assert!(!errors.contains("inference"), "{errors}");
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
}
