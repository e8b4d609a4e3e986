//! `triage label` and `triage detect` on the default model.

use std::path::Path;

use serde_json::Value;

use crate::util::{json_lines, lines, model_installed, root, run};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Ids of the good records of the sample dump, in file order, and the line of each bad one.
fn sample() -> (Vec<String>, Vec<u64>) {
    let text = std::fs::read(root().join("tests/data/sample.jsonl")).unwrap();
    let mut ids = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(o))
                if o.get("text")
                    .is_some_and(|t| t.as_str().is_some_and(|s| !s.trim().is_empty())) =>
            {
                ids.push(o["id"].as_str().unwrap().to_owned())
            }
            _ => bad.push(i as u64 + 1),
        }
    }
    (ids, bad)
}

#[test]
fn labels_the_sample_dump_in_order_with_errors_aside() {
    let Some(_) = model_installed() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("labelled.jsonl");
    let summary = dir.path().join("summary.json");
    let o = run(
        &[
            "label",
            "tests/data/sample.jsonl",
            "-o",
            out.to_str().unwrap(),
            "--summary-json",
            summary.to_str().unwrap(),
        ],
        None,
    );
    // some records are bad on purpose: exit status 1, everything else labelled
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let (ids, bad) = sample();
    let got = lines(&out);
    assert_eq!(got.len(), ids.len(), "one output per good input");
    let got_ids: Vec<&str> = got.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(got_ids, ids, "input order kept");
    let model_id = got[0]["model"].as_str().unwrap().to_owned();
    assert!(
        model_id.starts_with("multilingual-e5-small@sha256:") && model_id.len() == 29 + 64,
        "{model_id}"
    );
    for r in &got {
        let labels = r["labels"].as_array().unwrap();
        assert_eq!(labels.len(), 3);
        let best = labels
            .iter()
            .max_by(|a, b| {
                a["score"]
                    .as_f64()
                    .partial_cmp(&b["score"].as_f64())
                    .unwrap()
            })
            .unwrap();
        // the top label is the best one when it is flagged, and null (none) otherwise
        if best["flagged"] == true {
            assert_eq!(r["top"], best["label"]);
        } else {
            assert!(r["top"].is_null(), "{r}");
            assert!(labels.iter().all(|l| l["flagged"] == false), "{r}");
        }
        assert!(r["lang_listed"].is_boolean(), "{r}");
        let chars = r["chars"].as_u64().unwrap();
        let (s, e) = (
            r["evidence"]["start"].as_u64().unwrap(),
            r["evidence"]["end"].as_u64().unwrap(),
        );
        assert!(s < e && e <= chars, "{r}");
        assert!(r["windows"].as_u64().unwrap() >= 1);
        assert!(
            ["Latin", "Arabic", "Cyrillic", "Bengali", "Common"]
                .contains(&r["script"].as_str().unwrap()),
            "{r}"
        );
        assert_eq!(r["model"], model_id.as_str());
    }
    // long records were cut into windows, and the evidence is a strict part of the text
    assert!(got.iter().any(|r| r["windows"].as_u64().unwrap() >= 3
        && r["evidence"]["end"].as_u64() < r["chars"].as_u64()));

    let errors = lines(&dir.path().join("labelled.jsonl.errors.jsonl"));
    let err_lines: Vec<u64> = errors.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(err_lines, bad);
    let kinds: Vec<&str> = errors
        .iter()
        .map(|e| e["error"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "invalid_json",
            "missing_field",
            "invalid_field",
            "invalid_field",
            "empty_text",
            "invalid_utf8",
            "not_an_object"
        ]
    );
    for e in &errors {
        assert_eq!(e["file"], "tests/data/sample.jsonl");
        assert!(!e["error"]["reason"].as_str().unwrap().is_empty());
    }
    assert_eq!(errors[1]["id"], "bad-missing");
    assert_eq!(errors[1]["error"]["field"], "text");

    let s: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["labelled"].as_u64().unwrap() as usize, ids.len());
    assert_eq!(s["errors"].as_u64().unwrap() as usize, bad.len());
    let langs = s["languages"].as_object().unwrap();
    assert!(langs.len() >= 12, "{langs:?}");
    let table = stderr(&o);
    assert!(
        table.contains("records/s") && table.contains("language") && table.contains("flagged"),
        "{table}"
    );
}

#[test]
fn stdin_to_stdout_and_exit_zero_when_all_are_labelled() {
    let Some(_) = model_installed() else {
        return;
    };
    let input = "{\"id\": \"a\", \"text\": \"Gagnez 5000 euros par semaine, cliquez sur ce lien !\"}\n\
                 {\"id\": \"b\", \"text\": \"The central bank raised interest rates on Wednesday.\"}\r\n\
                 \n{\"text\": \"Вступайте в наши ряды, братья, берите оружие.\"}";
    let o = run(
        &["label", "-", "-o", "-", "--progress", "never"],
        Some(format!("\u{feff}{input}").as_bytes()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out: Vec<Value> = json_lines(&o.stdout);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["id"], "a");
    assert_eq!(out[0]["lang"], "fr");
    assert_eq!(out[0]["top"], "spam");
    assert_eq!(out[1]["lang"], "en");
    assert!(
        out[1]["top"].is_null(),
        "a news report is of none of the labels: {}",
        out[1]
    );
    assert_eq!(
        out[2]["id"], "4",
        "a record without id is named by its line"
    );
    assert_eq!(out[2]["lang"], "ru");
}

#[test]
fn errors_go_to_stderr_with_stdout_and_max_errors_stops_early() {
    let Some(_) = model_installed() else {
        return;
    };
    let input =
        b"{\"id\": 1, \"text\": \"ok\"}\nnot json\n{\"id\": 3}\n{\"id\": 4, \"text\": \"fine\"}\n";
    let o = run(&["label", "-", "--progress", "never"], Some(input));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("\"line\":2") && err.contains("invalid_json"),
        "{err}"
    );
    assert!(
        err.contains("\"line\":3") && err.contains("missing_field"),
        "{err}"
    );
    assert_eq!(String::from_utf8(o.stdout).unwrap().lines().count(), 2);

    let o = run(
        &["label", "-", "--max-errors", "1", "--progress", "never"],
        Some(input),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("stopped early"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("missing_field"));
}

/// `triage label` on the sample dump with the shipped workspace.toml changed by `edit`, written
/// to `path`.
fn label_with_config(path: &Path, edit: impl Fn(&str) -> String) -> std::process::Output {
    let good = std::fs::read_to_string(root().join("workspace.toml")).unwrap();
    std::fs::write(path, edit(&good)).unwrap();
    run(
        &[
            "label",
            "tests/data/sample.jsonl",
            "-c",
            path.to_str().unwrap(),
            "--models-dir",
            "models",
        ],
        None,
    )
}

#[test]
fn configuration_and_usage_errors_exit_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("workspace.toml");
    let good = std::fs::read_to_string(root().join("workspace.toml")).unwrap();
    let o = label_with_config(&bad, |c| c.replace("[input]", "[input]\ncolour = \"red\""));
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains(bad.to_str().unwrap()) && e.contains("colour"),
        "{e}"
    );

    let o = run(&["label", "no/such/dump.jsonl"], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no/such/dump.jsonl"));

    let o = run(&["label", "--no-such-flag"], None);
    assert_eq!(o.status.code(), Some(2));

    std::fs::write(
        &bad,
        good.replace("multilingual-e5-small", "not-installed-model"),
    )
    .unwrap();
    let o = run(
        &[
            "label",
            "tests/data/sample.jsonl",
            "-c",
            bad.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not-installed-model") && stderr(&o).contains("models pull"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn news_about_terrorism_ordinary_text_and_unlisted_languages() {
    let Some(_) = model_installed() else {
        return;
    };
    let input = [
        "Police said on Tuesday that three men had been detained after the explosion at the metro station, which killed 14 people; the group behind it has not been named.",
        "Prosecutors told the court the defendant had shared videos of the militant group and planned to travel to Syria to join it.",
        "Cancel",
        "File not found. Check the name and try again.",
        "Der Wetterdienst erwartet für das Wochenende Sonne und bis zu 24 Grad.",
        "O governo anunciou ontem novas medidas para apoiar os agricultores depois da seca.",
        "Міська рада знову збереться наступного тижня, щоб обговорити бюджет.",
        "Brothers, pick up your weapons and join the mujahideen; kill the unbelievers wherever you find them.",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| format!("{}\n", serde_json::json!({"id": i, "text": t})))
    .collect::<String>();
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("s.json");
    let o = run(
        &[
            "label",
            "-",
            "-o",
            "-",
            "--progress",
            "never",
            "--summary-json",
            summary.to_str().unwrap(),
        ],
        Some(input.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out: Vec<Value> = json_lines(&o.stdout);
    for r in &out[..7] {
        assert!(r["top"].is_null(), "ordinary text, no label: {r}");
    }
    assert_eq!(out[7]["top"], "violent_extremism", "{}", out[7]);
    // Portuguese and Ukrainian are not on the list: reported as themselves, and labelled
    for (r, lang) in [(&out[5], "pt"), (&out[6], "uk")] {
        assert_eq!(
            (r["lang"].as_str(), r["lang_listed"].as_bool()),
            (Some(lang), Some(false)),
            "{r}"
        );
        assert_eq!(r["labels"].as_array().unwrap().len(), 3);
    }
    assert_eq!(out[4]["lang_listed"], true);
    let s: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(
        s["unlisted_languages"],
        serde_json::json!({"pt": 1, "uk": 1})
    );
    assert_eq!(s["unflagged"], 7);
    let table = stderr(&o);
    assert!(table.contains("(not in [languages] allow)"), "{table}");
}

#[test]
fn prototypes_mode_runs_without_the_trained_head() {
    let Some(_) = model_installed() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("workspace.toml");
    let good = std::fs::read_to_string(root().join("workspace.toml")).unwrap();
    // the head is missing: a clear error naming it and the ways out
    std::fs::write(&cfg, good.replace("heads/starter", "heads/not-trained")).unwrap();
    let input = b"{\"id\": 1, \"text\": \"Gagnez 5000 euros par semaine, cliquez sur ce lien maintenant !\"}\n{\"id\": 2, \"text\": \"Open file\"}\n";
    let cfg_path = cfg.to_str().unwrap();
    let label = |extra: &[&str]| {
        let mut args = vec![
            "label",
            "-",
            "-o",
            "-",
            "--progress",
            "never",
            "--models-dir",
            "models",
            "-c",
            cfg_path,
        ];
        args.extend_from_slice(extra);
        run(&args, Some(input))
    };
    let o = label(&[]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("heads/not-trained")
            && e.contains("--mode prototypes")
            && e.contains("scripts/setup.sh"),
        "{e}"
    );
    // the same taxonomy by prototypes: open-world scores, no training needed
    let o = label(&["--mode", "prototypes"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out: Vec<Value> = json_lines(&o.stdout);
    assert_eq!(out[0]["top"], "spam", "{}", out[0]);
    assert!(out[1]["top"].is_null(), "{}", out[1]);
    // counter-examples without saying what the label is: a configuration error naming it
    std::fs::write(
        &cfg,
        format!("{good}\n[labels.fraud]\ncounter_examples = [\"A bank statement.\"]\n"),
    )
    .unwrap();
    let o = label(&[]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("fraud") && e.contains("counter_examples"), "{e}");
}

#[test]
fn detect_prints_one_language_per_line() {
    let input = "The weather is lovely today in London.\nبازار تهران امروز شاهد افزایش قیمت طلا بود\n12345\n\nپه کابل کې نن ورځ یو نوی ښوونځی پرانیستل شو.\n";
    let o = run(&["detect"], Some(input.as_bytes()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let langs: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(langs, ["en", "fa", "und", "und", "ps"]);
    let o = run(
        &["detect", "--json", "-c", "workspace.toml"],
        Some("Guten Morgen, wie geht es dir heute?\n".as_bytes()),
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["lang"], "de");
    assert_eq!(v["script"], "Latin");
}

#[test]
fn detect_spans_reports_a_quote_in_another_language() {
    let input = "The banner read \"لا إله إلا الله محمد رسول الله\" and the crowd chanted.\n";
    let o = run(
        &["detect", "--json", "--spans", "-c", "workspace.toml"],
        Some(input.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let spans = v["spans"].as_array().unwrap();
    let langs: Vec<&str> = spans.iter().map(|s| s["lang"].as_str().unwrap()).collect();
    assert_eq!(langs, ["en", "ar", "en"], "{v}");
    let chars: Vec<char> = input.chars().collect();
    let (start, end) = (
        spans[1]["start"].as_u64().unwrap() as usize,
        spans[1]["end"].as_u64().unwrap() as usize,
    );
    let quoted: String = chars[start..end].iter().collect();
    assert!(quoted.contains("محمد رسول الله"), "{quoted}");
    let shares: f64 = spans.iter().map(|s| s["share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-3, "{v}");
}

#[test]
fn models_list_shows_the_default_model_with_its_checksum() {
    let Some(_) = model_installed() else {
        return;
    };
    let o = run(&["models", "list"], None);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8(o.stdout).unwrap();
    let line = out
        .lines()
        .find(|l| l.starts_with("multilingual-e5-small"))
        .expect(&out);
    let sha =
        triage_classify::checksum::weights_sha256(&root().join("models/multilingual-e5-small"))
            .unwrap();
    assert!(
        line.contains("bert") && line.contains("MiB") && line.ends_with(&sha),
        "{line}"
    );
}

/// The first `n` good records of the sample dump, as a small dump.
fn sample_head(n: usize) -> String {
    // the dump has an invalid UTF-8 line on purpose
    String::from_utf8_lossy(&std::fs::read(root().join("tests/data/sample.jsonl")).unwrap())
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["text"].is_string()))
        .take(n)
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(not(feature = "tch"))]
#[test]
fn the_tch_backend_in_a_build_without_it_is_a_usage_error() {
    let Some(_) = model_installed() else {
        return;
    };
    let o = run(
        &["label", "-", "--backend", "tch"],
        Some(sample_head(2).as_bytes()),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--features tch"), "{}", stderr(&o));
    let o = run(
        &["label", "-", "--backend", "candle", "--dtype", "bf16"],
        Some(sample_head(2).as_bytes()),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("bf16 needs the tch backend"),
        "{}",
        stderr(&o)
    );
}

/// The label scores of `triage label - args...` on `input`, record by record.
#[cfg(any(feature = "tch", feature = "ort"))]
fn scores(input: &str, args: &[&str]) -> Vec<Vec<f64>> {
    let mut all = vec!["label", "-"];
    all.extend_from_slice(args);
    let o = run(&all, Some(input.as_bytes()));
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["score"].as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[cfg(any(feature = "tch", feature = "ort"))]
fn largest_difference(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0f64, f64::max)
}

#[cfg(feature = "tch")]
#[test]
fn label_with_the_tch_backend_gives_candles_scores() {
    let Some(_) = model_installed() else {
        return;
    };
    let input = sample_head(12);
    let candle = scores(&input, &["--backend", "candle"]);
    let tch = scores(&input, &["--backend", "tch"]);
    assert_eq!(candle.len(), 12);
    let diff = largest_difference(&candle, &tch);
    // scores are written with 6 decimals
    assert!(diff <= 2e-6 + 1e-4, "largest score difference {diff}");
    let bf16 = scores(&input, &["--backend", "tch", "--dtype", "bf16"]);
    assert_eq!(bf16.len(), 12);
}

#[cfg(feature = "ort")]
#[test]
fn label_with_the_ort_backend_gives_candles_scores() {
    let Some(_) = model_installed() else {
        return;
    };
    if !crate::util::ort_installed() {
        return;
    }
    let input = sample_head(12);
    let candle = scores(&input, &["--backend", "candle"]);
    let ort = scores(&input, &["--backend", "ort", "--dtype", "f32"]);
    assert_eq!(candle.len(), 12);
    let diff = largest_difference(&candle, &ort);
    assert!(diff <= 2e-6 + 1e-4, "largest score difference {diff}");
    // int8 (without refinement): close, not the same
    let int8 = scores(
        &input,
        &[
            "--backend",
            "ort",
            "--dtype",
            "int8",
            "--refine-margin",
            "off",
        ],
    );
    let diff = largest_difference(&candle, &int8);
    assert!(
        diff > 1e-6 && diff < 0.1,
        "largest int8 score difference {diff}"
    );
}

#[cfg(feature = "ort")]
#[test]
fn the_ort_backend_finds_the_library_setup_installed() {
    let Some(_) = model_installed() else {
        return;
    };
    if !crate::util::ort_installed() {
        return;
    }
    let lib = std::path::PathBuf::from(std::env::var_os("ORT_DYLIB_PATH").unwrap());
    // a cache laid out as scripts/setup_onnxruntime.sh lays it out
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("onnxruntime-1.32.0");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink(&lib, dir.join("libonnxruntime.so.1.32.0")).unwrap();
    let o = crate::util::triage()
        .args(["label", "-", "--backend", "ort", "--progress", "never"])
        .env_remove("ORT_DYLIB_PATH")
        .env("TRIAGE_CACHE", cache.path())
        .stdin(std::fs::File::open(crate::util::root().join("tests/data/sample.jsonl")).unwrap())
        .output()
        .unwrap();
    // the sample's bad lines: exit 1, but every good record labelled
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(crate::util::json_lines(&o.stdout).len(), 315);
}

/// `triage label - args...` on `input` where no ONNX Runtime library is named (no
/// `ORT_DYLIB_PATH`) or installed (an empty `TRIAGE_CACHE`).
#[cfg(feature = "ort")]
fn label_without_ort(args: &[&str], input: &str) -> std::process::Output {
    let empty = tempfile::tempdir().unwrap();
    let mut c = crate::util::triage();
    c.args(["label", "-"])
        .args(args)
        .env_remove("ORT_DYLIB_PATH")
        .env("TRIAGE_CACHE", empty.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[cfg(feature = "ort")]
#[test]
fn the_ort_backend_without_its_library_is_a_usage_error() {
    let Some(_) = model_installed() else {
        return;
    };
    // no library named, and none where scripts/setup.sh puts it
    let o = label_without_ort(&["--backend", "ort"], &sample_head(2));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ORT_DYLIB_PATH is not set")
            && stderr(&o).contains("setup_onnxruntime"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
}

/// The shipped workspace runs ort int8 with refinement; where ONNX Runtime's library is not
/// installed, `triage label` says so and labels with candle f32: the same records as asking
/// for candle f32 on the command line.
#[cfg(feature = "ort")]
#[test]
fn the_default_engine_without_its_library_falls_back_to_candle_f32_and_says_so() {
    let Some(_) = model_installed() else {
        return;
    };
    let input = sample_head(3);
    let label =
        |args: &[&str]| label_without_ort(&[&["--progress", "never"], args].concat(), &input);
    let fallback = label(&[]);
    assert_eq!(fallback.status.code(), Some(0), "{}", stderr(&fallback));
    let e = stderr(&fallback);
    assert!(
        e.contains("ONNX Runtime's library is not installed")
            && e.contains("labelling with candle f32")
            && e.contains("setup_onnxruntime.sh"),
        "{e}"
    );
    let candle = label(&["--backend", "candle"]);
    assert_eq!(candle.status.code(), Some(0), "{}", stderr(&candle));
    assert!(
        !stderr(&candle).contains("not installed"),
        "{}",
        stderr(&candle)
    );
    assert_eq!(
        crate::util::json_lines(&fallback.stdout),
        crate::util::json_lines(&candle.stdout)
    );
    assert_eq!(crate::util::json_lines(&candle.stdout).len(), 3);
}

#[cfg(feature = "ort")]
#[test]
fn bench_compares_candle_f32_with_ort_int8_refined() {
    let Some(_) = model_installed() else {
        return;
    };
    if !crate::util::ort_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.jsonl");
    std::fs::write(&dump, sample_head(6)).unwrap();
    let o = run(
        &[
            "bench",
            dump.to_str().unwrap(),
            "--backend",
            "ort",
            "--dtype",
            "int8",
            "--refine-margin",
            "0.02",
        ],
        None,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}{}", out, stderr(&o));
    // the baseline runs without refinement, the asked configuration with it
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name:?} in\n{out}"))
            .to_string()
    };
    assert!(row("candle f32 ").trim_end().ends_with("1.00x"), "{out}");
    let refined = row("ort int8+refine0.02 ");
    let records_per_s: f64 = refined.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(records_per_s > 0.0, "{refined}");
}

#[test]
fn an_unknown_device_names_the_file_and_key_and_a_gpu_needs_a_cuda_build() {
    let Some(_) = model_installed() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("workspace.toml");
    let o = label_with_config(&bad, |c| c.replace("[model]", "[model]\ndevice = \"gpu\""));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(bad.to_str().unwrap()) && e.contains("device") && e.contains("\"gpu\""),
        "{e}"
    );

    let o = run(&["label", "-", "--device", "cuda:x"], Some(b""));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cuda:N"), "{}", stderr(&o));

    if !cfg!(feature = "cuda") {
        let o = run(
            &["label", "tests/data/sample.jsonl", "--device", "cuda"],
            None,
        );
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("no CUDA") && e.contains("scripts/setup_cuda.sh"),
            "{e}"
        );
        assert!(o.stdout.is_empty());
    }
}
