//! `triage train` and `triage eval` end to end on a small committed set.

use serde_json::Value;

use crate::util::{lines, model_installed, root, triage};

#[test]
fn train_label_with_the_head_evaluate_and_write_thresholds() {
    let Some(model) = model_installed() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("head");
    let cache = dir.path().join("cache");
    let train = |extra: &[&str]| {
        triage()
            .args([
                "train",
                "tests/data/topics_train.jsonl",
                "--out",
                head.to_str().unwrap(),
                "--cache-dir",
                cache.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = train(&[]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("single-label") && err.contains("0 cached, 60 computed"),
        "{err}"
    );
    let meta: Value =
        serde_json::from_slice(&std::fs::read(head.join("head.json")).unwrap()).unwrap();
    assert_eq!(meta["labels"].as_array().unwrap().len(), 5);
    assert_eq!(meta["activation"], "softmax");
    let sha = triage_classify::checksum::weights_sha256(&model).unwrap();
    assert_eq!(meta["encoder_sha256"], sha.as_str());
    assert_eq!(meta["data_sha256"].as_str().unwrap().len(), 64);
    let first_weights = std::fs::read(head.join("head.safetensors")).unwrap();

    // the second run reads every embedding from the cache and gives the same head
    let o = train(&[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("60 cached, 0 computed"));
    assert_eq!(
        std::fs::read(head.join("head.safetensors")).unwrap(),
        first_weights
    );

    // label with the head through workspace.toml
    let cfg = dir.path().join("workspace.toml");
    std::fs::write(
        &cfg,
        format!(
            "# my taxonomy\n[model]\nname = {:?}\nprefix = \"query: \"\n\n[labels]\nmode = \"head\"\nhead = {:?}\nmulti_label = false\n",
            model.to_str().unwrap(),
            head.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = dir.path().join("labelled.jsonl");
    let o = triage()
        .args([
            "label",
            "tests/data/topics_gold.jsonl",
            "-o",
            out.to_str().unwrap(),
            "-c",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let gold = lines(&root().join("tests/data/topics_gold.jsonl"));
    let got = lines(&out);
    assert_eq!(got.len(), gold.len());
    let correct = got
        .iter()
        .zip(&gold)
        .filter(|(g, t)| g["top"] == t["label"])
        .count();
    // five labels (chance 0.2), trained on four other languages
    assert!(
        correct as f64 / gold.len() as f64 > 0.6,
        "{correct}/{}",
        gold.len()
    );

    // evaluate: tables, JSON, pictures, and thresholds written back
    let report = dir.path().join("report");
    let o = triage()
        .args([
            "eval",
            "tests/data/topics_gold.jsonl",
            "-c",
            cfg.to_str().unwrap(),
            "--out",
            report.to_str().unwrap(),
        ])
        .args([
            "--cache-dir",
            cache.to_str().unwrap(),
            "--write-thresholds",
            "--min-support",
            "3",
            "--precision",
            "0.9",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("macro") && stdout.contains("confusion") && stdout.contains("language"),
        "{stdout}"
    );
    let r: Value =
        serde_json::from_slice(&std::fs::read(report.join("eval.json")).unwrap()).unwrap();
    assert_eq!(r["records"], 120);
    assert!(r["macro"]["f1"].as_f64().unwrap() > 0.5, "{}", r["macro"]);
    assert!(
        (r["accuracy"].as_f64().unwrap() - correct as f64 / 120.0).abs() < 1e-9,
        "eval agrees with label"
    );
    assert_eq!(r["languages"].as_array().unwrap().len(), 8);
    let m = r["confusion"].as_array().unwrap();
    assert_eq!(
        m.iter()
            .map(|row| row
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .sum::<u64>())
            .sum::<u64>(),
        120
    );
    for pic in ["pr_curves.svg", "f1_heatmap.svg"] {
        let svg = std::fs::read_to_string(report.join(pic)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{pic}");
    }
    let written = std::fs::read_to_string(&cfg).unwrap();
    assert!(written.starts_with("# my taxonomy"), "comments kept");
    assert!(written.contains("language_thresholds"), "{written}");
    let parsed = triage_batch::WorkspaceConfig::load(&cfg).unwrap();
    let with: usize = parsed
        .labels
        .labels
        .iter()
        .map(|(_, s)| s.language_thresholds.len())
        .sum();
    assert!(with >= 8, "{written}");
    // and the configuration with per-language thresholds still labels
    let o = triage()
        .args(["label", "-", "-c", cfg.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"{\"text\": \"Bedava iPhone kazanmak icin tiklayin\"}\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(o.status.success());
}

#[test]
fn bad_training_lines_are_reported_and_unknown_gold_labels_refused() {
    let Some(_) = model_installed() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let examples = dir.path().join("ex.jsonl");
    let mut text = std::fs::read_to_string(root().join("tests/data/topics_train.jsonl")).unwrap();
    text.push_str("not json\n{\"text\": \"no label\"}\n");
    std::fs::write(&examples, text).unwrap();
    let head = dir.path().join("head");
    let cache = root().join(".cache/embeddings");
    let o = triage()
        .args([
            "train",
            examples.to_str().unwrap(),
            "--out",
            head.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(":61: invalid JSON") && err.contains(":62: no \"label\""),
        "{err}"
    );
    assert!(
        head.join("head.json").exists(),
        "the good lines still train a head"
    );

    let gold = dir.path().join("gold.jsonl");
    std::fs::write(&gold, "{\"text\": \"hello\", \"label\": \"weather\"}\n").unwrap();
    let o = triage()
        .args([
            "eval",
            gold.to_str().unwrap(),
            "--head",
            head.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("weather") && err.contains("does not have"),
        "{err}"
    );
}

#[test]
fn texts_of_no_label_and_counter_examples_train_sigmoids_and_eval_reports_hard_negatives() {
    let Some(_) = model_installed() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let examples = dir.path().join("ex.jsonl");
    let mut text = std::fs::read_to_string(root().join("tests/data/topics_train.jsonl")).unwrap();
    // ordinary texts of none of the labels, both ways of saying so
    text.push_str("{\"text\": \"Save changes before closing?\", \"labels\": []}\n");
    text.push_str("{\"text\": \"Fichier introuvable.\", \"label\": \"none\"}\n");
    std::fs::write(&examples, text).unwrap();
    let head = dir.path().join("head");
    let cache = root().join(".cache/embeddings");
    let train = |extra: &[&str]| {
        triage()
            .args([
                "train",
                examples.to_str().unwrap(),
                "--out",
                head.to_str().unwrap(),
            ])
            .args(["--cache-dir", cache.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = train(&[]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    // workspace.toml's counter-examples of labels the examples have join as texts of no label
    let config = std::fs::read_to_string(root().join("workspace.toml")).unwrap();
    let doc: toml::Value = toml::from_str(&config).unwrap();
    let counters: usize = ["violent_extremism", "hate", "spam"]
        .iter()
        .map(|l| {
            doc["labels"][l]["counter_examples"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    assert!(
        err.contains("multi-label") && err.contains(&format!("{counters} counter-examples")),
        "{err}"
    );
    let meta: Value =
        serde_json::from_slice(&std::fs::read(head.join("head.json")).unwrap()).unwrap();
    assert_eq!(meta["activation"], "sigmoid");
    assert_eq!(meta["training"]["examples"], 62 + counters);
    let o = train(&["--single-label"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success() && err.contains("0 labels"), "{err}");

    // gold hard negatives: eval counts how many the label flags, by kind and language
    let gold = dir.path().join("gold.jsonl");
    std::fs::write(
        &gold,
        "{\"text\": \"Police arrested two men after the bombing at the station, which killed 12 people.\", \"labels\": [], \"counter_to\": \"violent_extremism\", \"kind\": \"news\", \"lang\": \"en\"}\n\
         {\"text\": \"Join the caravan of the mujahideen and kill the enemies of God.\", \"label\": \"violent_extremism\", \"lang\": \"en\"}\n\
         {\"text\": \"Ouvrir le fichier\", \"label\": \"none\", \"lang\": \"fr\"}\n",
    )
    .unwrap();
    let report = dir.path().join("report");
    let o = triage()
        .args([
            "eval",
            gold.to_str().unwrap(),
            "--head",
            head.to_str().unwrap(),
        ])
        .args([
            "--cache-dir",
            cache.to_str().unwrap(),
            "--out",
            report.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("hard negatives of violent_extremism"),
        "{stdout}"
    );
    let r: Value =
        serde_json::from_slice(&std::fs::read(report.join("eval.json")).unwrap()).unwrap();
    let h = &r["hard_negatives"][0];
    assert_eq!(
        (h["label"].as_str(), h["records"].as_u64()),
        (Some("violent_extremism"), Some(1))
    );
    assert_eq!(h["kinds"]["news"][0], 1);
    let fr = r["languages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lang"] == "fr")
        .unwrap();
    assert_eq!(fr["unlabelled"], 1);
}

/// `n` ordinary sentences of one language, made from a template.
fn ordinary(lang: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match lang {
            "en" => format!(
                "The library on {} Street opens at {} o'clock on weekdays.",
                ["Mill", "Park", "High", "Station", "Church"][i % 5],
                8 + i % 4 + i / 5
            ),
            "fr" => format!(
                "Le marché de la place {} ouvre à {} heures le samedi.",
                ["Verte", "Haute", "du Port", "Neuve", "Royale"][i % 5],
                6 + i % 4 + i / 5
            ),
            _ => format!("Der Bus Nummer {} fährt heute um {} Uhr ab.", i + 3, 7 + i),
        })
        .collect()
}

#[test]
fn calibrate_sets_per_language_thresholds_from_a_background() {
    let Some(_) = model_installed() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("workspace.toml");
    let config = std::fs::read_to_string(root().join("workspace.toml")).unwrap();
    std::fs::write(&cfg, &config).unwrap();
    let bg = dir.path().join("background.jsonl");
    let mut text = String::new();
    for (lang, n) in [("en", 20), ("fr", 20), ("de", 5)] {
        for t in ordinary(lang, n) {
            text.push_str(&format!(
                "{}\n",
                serde_json::json!({"text": t, "lang": lang})
            ));
        }
    }
    std::fs::write(&bg, text).unwrap();
    let cache = root().join(".cache/embeddings");
    // prototypes at a low threshold flag much of any background: calibration must raise it
    let common = |cmd: &str| {
        let mut c = triage();
        c.args([cmd, "-c", cfg.to_str().unwrap(), "--models-dir", "models"])
            .args(["--mode", "prototypes"]);
        c
    };
    std::fs::write(
        &cfg,
        config.replace("threshold = 0.5 ", "threshold = 0.05 "),
    )
    .unwrap();
    let out = dir.path().join("calib");
    let o = common("calibrate")
        .args([bg.to_str().unwrap(), "--rate", "0.05", "--write-thresholds"])
        .args([
            "--cache-dir",
            cache.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("keep the label's threshold: de (5)"),
        "{stdout}"
    );
    let written: toml::Value = toml::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let t = &written["labels"]["spam"]["language_thresholds"];
    let before: toml::Value = toml::from_str(&config).unwrap();
    let de_before = before["labels"]["spam"]
        .get("language_thresholds")
        .and_then(|t| t.get("de"));
    assert_eq!(
        t.get("de"),
        de_before,
        "too few German records: left as it was"
    );
    for lang in ["en", "fr"] {
        assert!(t[lang].as_float().unwrap() >= 0.05, "{t}");
    }
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("calibration.json")).unwrap()).unwrap();
    assert!(
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["threshold"].as_f64() > Some(0.05)),
        "{report}"
    );
    // labelling the background again with the written thresholds flags at most 5% per language
    let labelled = dir.path().join("labelled.jsonl");
    let o = common("label")
        .args([
            bg.to_str().unwrap(),
            "-o",
            labelled.to_str().unwrap(),
            "--progress",
            "never",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = lines(&labelled);
    for lang in ["en", "fr"] {
        let of: Vec<&Value> = got.iter().filter(|r| r["lang"] == lang).collect();
        for k in 0..3 {
            let flagged = of
                .iter()
                .filter(|r| r["labels"][k]["flagged"] == true)
                .count();
            assert!(
                flagged <= 1,
                "{lang} label {k}: {flagged} of {} flagged",
                of.len()
            );
        }
    }
}

#[test]
fn a_missing_or_altered_starter_package_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // the build names the package it cannot find
    let empty = dir.path().join("packages");
    std::fs::create_dir_all(&empty).unwrap();
    let o = std::process::Command::new("python3")
        .arg(root().join("scripts/starter/build.py"))
        .args([
            empty.to_str().unwrap(),
            dir.path().join("out").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("chatterbot_corpus-1.3.3") && err.contains("fetch.sh"),
        "{err}"
    );
    // a cached file that is not the pinned one is refused, by name, before anything reads it
    let cache = dir.path().join("cache");
    let packages = cache.join("starter/packages");
    std::fs::create_dir_all(&packages).unwrap();
    let fake = packages.join("chatterbot_corpus-1.3.3-py2.py3-none-any.whl");
    std::fs::write(&fake, b"not the wheel").unwrap();
    let o = std::process::Command::new(root().join("scripts/starter/fetch.sh"))
        .env("TRIAGE_CACHE", &cache)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains(fake.to_str().unwrap()) && err.contains("not the pinned"),
        "{err}"
    );
}

#[test]
fn calibrate_names_a_missing_background_file() {
    let Some(_) = model_installed() else {
        return;
    };
    let o = triage()
        .args(["calibrate", "no/such/background.jsonl"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success());
    assert!(err.contains("no/such/background.jsonl"), "{err}");
}
