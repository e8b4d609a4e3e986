//! `triage report`: on a labelled output written by hand (every count known), the figures,
//! the order of the queue, evidence marked in escaped text, right-to-left texts, the errors and
//! the report's own manifest; then on a fresh run of the default model over the sample dump,
//! rendered in headless Chromium (Debian's), with a screenshot and the rendered DOM checked.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::queue::record;
use crate::util::{lines, model_installed, root, skip, triage};

fn report(dir: &Path, labelled: &Path, input: &Path, config: &Path, extra: &[&str]) -> String {
    let html = dir.join("report.html");
    let out = triage()
        .args(["report", labelled.to_str().unwrap(), "--input"])
        .arg(input)
        .args(["-c", config.to_str().unwrap(), "-o", html.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(html).unwrap()
}

/// The text between `<tag id="id"...>` and the next `</tag>`... of the element with this id
/// (the report's sections do not nest elements of their own tag).
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let end = html[start..]
        .find("</section>")
        .map_or(html.len(), |e| start + e);
    &html[start..end]
}

fn tile(html: &str, id: &str) -> u64 {
    let s = &html[html.find(&format!("id=\"{id}\"")).unwrap()..];
    let b = &s[s.find("<b>").unwrap() + 3..];
    b[..b.find("</b>").unwrap()].parse().unwrap()
}

#[test]
fn the_report_shows_counts_queue_evidence_and_errors_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("w.toml");
    std::fs::write(
        &cfg,
        "[model]\nname = \"unused\"\n[labels]\n[labels.violent_extremism]\nseverity = 5\nthreshold = 0.6\n[labels.hate]\nseverity = 3\n",
    )
    .unwrap();
    let texts = [
        "Join us and take up arms. The weather is nice.",
        "<script>alert(1)</script> they are vermin & must go",
        "انضموا إلى قافلة المجاهدين وحملوا السلاح",
        "A plain message about dinner.",
    ];
    let dump = crate::util::dump_of(&texts);
    let input = d.join("dump.jsonl");
    std::fs::write(&input, dump).unwrap();
    let ve = "violent_extremism";
    let out = [
        // ve 0.9 x 5 = 4.5; evidence "Join us and take up arms."
        record(
            "r1",
            1,
            "en",
            &[(ve, 0.9, true), ("hate", 0.05, false)],
            (0, 25),
            &[],
            "r1",
        ),
        // hate 0.8 x 3 = 2.4; evidence the script tag
        record(
            "r2",
            2,
            "en",
            &[(ve, 0.1, false), ("hate", 0.8, true)],
            (0, 25),
            &[],
            "r2",
        ),
        // ve 0.95 x 5 = 4.75: first
        record(
            "r3",
            3,
            "ar",
            &[(ve, 0.95, true), ("hate", 0.3, false)],
            (0, 40),
            &[],
            "r3",
        ),
        record(
            "r4",
            4,
            "en",
            &[(ve, 0.02, false), ("hate", 0.01, false)],
            (0, 29),
            &[],
            "r4",
        ),
    ];
    let labelled = d.join("out.jsonl");
    std::fs::write(&labelled, out.join("\n") + "\n").unwrap();
    std::fs::write(
        d.join("out.jsonl.errors.jsonl"),
        "{\"id\":null,\"file\":\"dump.jsonl\",\"line\":7,\"error\":{\"kind\":\"invalid_json\",\"reason\":\"invalid JSON: EOF\"},\"position\":7}\n",
    )
    .unwrap();
    let html = report(d, &labelled, &input, &cfg, &[]);

    // nothing that a browser would fetch, and a policy that forbids it
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    for bad in ["<script", "src=", "href=", "url(", "@import"] {
        assert!(!html.contains(bad), "{bad} in the report");
    }
    // the figures
    assert_eq!(tile(&html, "n-records"), 4);
    assert_eq!(tile(&html, "n-flagged"), 3);
    assert_eq!(tile(&html, "n-queue"), 3);
    assert_eq!(tile(&html, "n-languages"), 2);
    assert_eq!(tile(&html, "n-errors"), 1);
    let langs = section(&html, "languages");
    assert_eq!(langs.matches("<g class=\"bar\">").count(), 2);
    assert!(langs.contains("<title>en: 3</title>") && langs.contains("<title>ar: 1</title>"));
    let labels = section(&html, "labels");
    assert!(labels.contains("<title>violent_extremism: 2</title>"));
    assert!(labels.contains("<title>hate: 1</title>"));
    // histograms: one per label, the scores in their bins, the threshold marked
    let scores = section(&html, "scores");
    assert_eq!(scores.matches("<svg class=\"hist\"").count(), 2);
    assert!(scores.contains("<title>0.90 to 0.95: 1 records</title>"));
    assert!(scores.contains("<title>threshold 0.6</title>"));
    // the queue: highest priority first, evidence marked in escaped text, Arabic right to left
    let queue = section(&html, "queue");
    let order: Vec<&str> = queue
        .split("data-id=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert_eq!(order, ["r3", "r1", "r2"]);
    assert!(queue.contains("<mark>Join us and take up arms.</mark> The weather is nice."));
    assert!(queue.contains(
        "<mark>&lt;script&gt;alert(1)&lt;/script&gt;</mark> they are vermin &amp; must go"
    ));
    assert!(queue.contains(&format!(
        "<div class=\"text\" lang=\"ar\" dir=\"rtl\"><mark>{}</mark></div>",
        texts[2]
    )));
    assert!(queue.contains("<div class=\"text\" lang=\"en\" dir=\"ltr\">"));
    // errors with file and line
    let errors = section(&html, "errors");
    assert!(errors.contains("<td>dump.jsonl</td><td class=\"n\">7</td>"));
    assert!(errors.contains("invalid_json"));
    // --top and --lang
    let top1 = report(d, &labelled, &input, &cfg, &["--top", "1", "--lang", "en"]);
    let q = section(&top1, "queue");
    assert_eq!(q.matches("class=\"item\"").count(), 1);
    assert!(q.contains("data-id=\"r1\"") && q.contains("The 1 records of highest priority of 2"));

    // the report's manifest names the labelled output; verify notices a changed one
    let manifest = d.join("report.html.manifest.json");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(m["kind"], "report");
    let roles = crate::util::field_of_each(&m["files"], "role");
    assert_eq!(roles, ["labelled", "input", "workspace", "output"]);
    let verify = || {
        triage()
            .args(["verify", manifest.to_str().unwrap()])
            .output()
            .unwrap()
    };
    assert_eq!(verify().status.code(), Some(0));
    std::fs::write(&labelled, out[..3].join("\n") + "\n").unwrap();
    let v = verify();
    assert_eq!(v.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&v.stdout).contains("CHANGED  labelled"));
}

/// Debian's Chromium (`/usr/bin/chromium`, or `TRIAGE_CHROMIUM`).
fn chromium() -> Option<PathBuf> {
    let p = std::env::var_os("TRIAGE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if p.exists() {
        Some(p)
    } else {
        skip(&format!(
            "{} is missing: `apt-get install chromium` (scripts/test.sh does)",
            p.display()
        ));
        None
    }
}

fn headless(chromium: &Path, profile: &Path) -> Command {
    let mut c = Command::new(chromium);
    // no network at all: the flags keep Chromium's own background connections off
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[test]
fn a_fresh_run_on_the_sample_dump_renders_in_a_real_browser() {
    let Some(_) = model_installed() else { return };
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sample = root().join("tests/data/sample.jsonl");
    let labelled = d.join("labelled.jsonl");
    let run = triage()
        .args([
            "label",
            sample.to_str().unwrap(),
            "-o",
            labelled.to_str().unwrap(),
        ])
        .args(["--progress", "never"])
        .output()
        .unwrap();
    // the sample holds bad lines on purpose: exit 1, error records
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let cfg = root().join("workspace.toml");
    let html_path = d.join("report.html");
    let html = report(d, &labelled, &sample, &cfg, &[]);
    let records = lines(&labelled);
    let errors = lines(&d.join("labelled.jsonl.errors.jsonl"));
    assert!(!errors.is_empty());

    // what the browser made of it
    let dom = headless(&chromium, &d.join("profile"))
        .arg("--dump-dom")
        .arg(format!("file://{}", html_path.display()))
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8(dom.stdout).unwrap();
    for id in [
        "overview",
        "languages",
        "labels",
        "by-language",
        "scores",
        "queue",
        "errors",
        "provenance",
    ] {
        assert!(dom.contains(&format!("<section id=\"{id}\">")), "#{id}");
    }
    let mut langs: Vec<&str> = records
        .iter()
        .map(|r| r["lang"].as_str().unwrap())
        .collect();
    langs.sort();
    langs.dedup();
    assert_eq!(
        section(&dom, "languages").matches("class=\"bar\"").count(),
        langs.len()
    );
    assert_eq!(tile(&dom, "n-records"), records.len() as u64);
    let flagged = records
        .iter()
        .filter(|r| {
            r["labels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["flagged"] == true)
        })
        .count();
    assert_eq!(tile(&dom, "n-flagged"), flagged as u64);
    assert!(flagged > 0, "the default model flags some of the sample");
    // the top of the queue, each with its text; the right-to-left ones right to left
    let queue = section(&dom, "queue");
    let items = queue.matches("class=\"item\"").count();
    assert_eq!(items, flagged.min(50));
    for lang in ["ar", "fa", "ur", "ps"] {
        let n = queue
            .matches(&format!("lang=\"{lang}\" dir=\"rtl\""))
            .count();
        let of = queue.matches(&format!("data-lang=\"{lang}\"")).count();
        assert_eq!(n, of, "{lang}: {n} of {of} texts right to left");
    }
    assert!(queue.contains("<mark>"));
    // every error record listed with its file and line
    let table = section(&dom, "errors");
    for e in &errors {
        let file = e["file"].as_str().unwrap();
        assert!(
            table.contains(&format!(
                "<td>{file}</td><td class=\"n\">{}</td>",
                e["line"]
            )),
            "{e}"
        );
    }
    // provenance from the run's manifest
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("labelled.jsonl.manifest.json")).unwrap())
            .unwrap();
    assert!(section(&dom, "provenance").contains(m["config_id"].as_str().unwrap()));

    // the screenshot, kept with the test's output
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let shot = shots.join("report-sample.png");
    let _ = std::fs::remove_file(&shot);
    let s = headless(&chromium, &d.join("profile"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,2400")
        .arg(format!("file://{}", html_path.display()))
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (1200, 2400));
    // a page with charts and text compresses far less than a blank one (a few kB)
    assert!(png.len() > 100_000, "{} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());
    drop(html);
}
