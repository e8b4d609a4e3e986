//! The batch crate's pipeline, checkpoints and merging on the tiny test checkpoints: seconds,
//! not the default model's minutes, so that a change to `crates/batch` is checked at once.

use std::path::{Path, PathBuf};

use triage_batch::{input, merge, Columns, InputConfig, Labeller, RunOptions, Sink, Summary};
use triage_classify::{ClassifierBuilder, LabelsConfig, Mode};

fn tiny(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/models")
        .join(name)
}

/// The tiny BERT checkpoint in checkpoint mode, every label multi-label at 0.5 (its scores are
/// near 0.5, so both flagged and unflagged labels occur).
fn labeller() -> Labeller {
    let classifier = ClassifierBuilder::new(tiny("tiny-bert-cls"))
        .labels(LabelsConfig {
            mode: Mode::Checkpoint,
            ..Default::default()
        })
        .build()
        .unwrap();
    let detector = triage_langid::Detector::new(&Default::default()).unwrap();
    Labeller::new(classifier, detector, InputConfig::default())
}

/// Twelve records: ten texts (one repeated twice), invalid JSON, a record without text.
fn dump(dir: &Path) -> PathBuf {
    let texts = [
        "Gagnez 5000 euros par semaine, cliquez ici !",
        "The city council approved the library budget on Tuesday.",
        "Der Stadtrat hat gestern den Haushalt beschlossen.",
        "Погода завтра будет солнечной.",
        "Gagnez 5000 euros par semaine, cliquez ici !",
        "Hari ini cuaca cerah di Jakarta.",
        "Join the fight, brothers, the hour has come.",
        "El ayuntamiento aprobó el presupuesto de las bibliotecas.",
        "Gagnez 5000 euros par semaine, cliquez ici !",
        "Bugün hava çok güzel, parka gidelim.",
    ];
    let mut lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": format!("r{i}"), "text": t}).to_string())
        .collect();
    lines.insert(3, "{not json".into());
    lines.insert(7, r#"{"id": "no-text"}"#.into());
    let path = dir.join("dump.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// The records of a JSON Lines file.
fn open(path: &Path) -> input::Records {
    let columns = Columns {
        text: "text".into(),
        id: "id".into(),
    };
    input::open(path.to_str().unwrap(), None, &columns)
        .unwrap()
        .records
}

/// A dump in a temporary folder, the labeller, and the dump labelled in one default run.
fn fixture() -> (tempfile::TempDir, PathBuf, Labeller, Run) {
    let dir = tempfile::tempdir().unwrap();
    let input = dump(dir.path());
    let labeller = labeller();
    let whole = run_with(
        &labeller,
        &input,
        &dir.path().join("all.jsonl"),
        RunOptions::default(),
    );
    (dir, input, labeller, whole)
}

struct Run {
    output: String,
    errors: String,
    summary: Summary,
    checkpoints: Vec<u64>,
}

fn run_with(labeller: &Labeller, input_path: &Path, out: &Path, options: RunOptions) -> Run {
    let records = open(input_path);
    let errors_path = PathBuf::from(format!("{}.errors.jsonl", out.display()));
    let mut output = Sink::file(out, None).unwrap();
    let mut errors = Sink::file(&errors_path, None).unwrap();
    let mut checkpoints = Vec::new();
    let summary = triage_batch::run(
        labeller,
        records,
        &mut output,
        &mut errors,
        &options,
        None,
        &|_| {},
        &mut |c| {
            checkpoints.push(c.lines_done);
            Ok(())
        },
    )
    .unwrap();
    drop((output, errors));
    let json = serde_json::to_vec_pretty(&summary).unwrap();
    std::fs::write(format!("{}.summary.json", out.display()), json).unwrap();
    Run {
        output: std::fs::read_to_string(out).unwrap(),
        errors: std::fs::read_to_string(&errors_path).unwrap(),
        summary,
        checkpoints,
    }
}

fn records(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_run_labels_every_record_in_order_and_keeps_bad_ones_apart() {
    let (_dir, _input, labeller, r) = fixture();
    let out = records(&r.output);
    assert_eq!(out.len(), 10);
    let positions: Vec<u64> = out
        .iter()
        .map(|o| o["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2, 3, 5, 6, 7, 9, 10, 11, 12]);
    let errors = records(&r.errors);
    assert_eq!(errors.len(), 2);
    assert_eq!(
        (errors[0]["line"].as_u64(), errors[1]["line"].as_u64()),
        (Some(4), Some(8))
    );
    assert_eq!(errors[0]["error"]["kind"], "invalid_json");
    assert_eq!(errors[1]["error"]["field"], "text");
    assert_eq!(
        (r.summary.records, r.summary.labelled, r.summary.errors),
        (12, 10, 2)
    );
    // the repeated text reuses its scores: the same labels, bit for bit (at least its two
    // repeats: the tiny model's vocabulary gives some other texts the same tokens too)
    assert!(r.summary.reused >= 2, "{}", r.summary.reused);
    let same: Vec<&serde_json::Value> = out
        .iter()
        .filter(|o| o["id"] == "r0" || o["id"] == "r4" || o["id"] == "r8")
        .map(|o| &o["labels"])
        .collect();
    assert_eq!(same.len(), 3);
    assert!(same.iter().all(|l| *l == same[0]), "{same:?}");
    // the labels are the classifier's own scores of each text, flagged at their thresholds
    let c = labeller.classifier();
    let text = "The city council approved the library budget on Tuesday.";
    let alone = c.classify(text).unwrap();
    let got = out[1]["labels"].as_array().unwrap();
    assert_eq!(got.len(), alone.labels().len());
    for (got, want) in got.iter().zip(alone.labels()) {
        assert_eq!(got["label"], want.label());
        let (g, w) = (got["score"].as_f64().unwrap(), want.score() as f64);
        assert!((g - w).abs() <= 1e-4 * w.abs().max(1e-3), "{g} vs {w}");
        assert_eq!(got["flagged"], want.flagged());
    }
    assert_eq!(r.checkpoints.last(), Some(&12));
}

#[test]
fn outputs_do_not_depend_on_chunks_dedupe_or_threads() {
    let (dir, input, labeller, whole) = fixture();
    let one_by_one = run_with(
        &labeller,
        &input,
        &dir.path().join("b.jsonl"),
        RunOptions {
            chunk_records: 1,
            dedupe_capacity: 0,
            ..Default::default()
        },
    );
    assert_eq!(whole.output, one_by_one.output);
    assert_eq!(whole.errors, one_by_one.errors);
    assert_eq!(one_by_one.summary.reused, 0);
    // a checkpoint after every chunk
    assert_eq!(one_by_one.checkpoints, (1..=12).collect::<Vec<u64>>());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let single = pool.install(|| {
        run_with(
            &labeller,
            &input,
            &dir.path().join("c.jsonl"),
            RunOptions::default(),
        )
    });
    assert_eq!(whole.output, single.output);
}

#[test]
fn a_csv_output_starts_with_its_header() {
    let (dir, input, labeller, whole) = fixture();
    let r = run_with(
        &labeller,
        &input,
        &dir.path().join("a.csv"),
        RunOptions {
            csv_output: true,
            ..Default::default()
        },
    );
    let lines: Vec<&str> = r.output.lines().collect();
    let names = labeller.classifier().label_names();
    assert_eq!(lines[0], triage_batch::csv_header(&names, false, false));
    assert_eq!(lines.len(), whole.output.lines().count() + 1);
}

#[test]
fn a_resumed_run_writes_what_one_run_writes() {
    let (dir, input, labeller, whole) = fixture();
    // a run that got through the first six lines (as a killed one leaves its checkpoint)
    let head = dir.path().join("head.jsonl");
    let text = std::fs::read_to_string(&input).unwrap();
    std::fs::write(
        &head,
        text.lines()
            .take(6)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let out = dir.path().join("b.jsonl");
    let first = run_with(&labeller, &head, &out, RunOptions::default());
    assert_eq!(first.checkpoints.last(), Some(&6));
    // then the whole input, skipping what is done, appended to what was written
    let records = open(&input);
    let errors_path = dir.path().join("b.jsonl.errors.jsonl");
    let mut output = Sink::file(&out, Some(first.output.len() as u64)).unwrap();
    let mut errors = Sink::file(&errors_path, Some(first.errors.len() as u64)).unwrap();
    let summary = triage_batch::run(
        &labeller,
        records,
        &mut output,
        &mut errors,
        &RunOptions {
            skip_lines: 6,
            ..Default::default()
        },
        Some(first.summary.clone()),
        &|_| {},
        &mut |_| Ok(()),
    )
    .unwrap();
    drop((output, errors));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), whole.output);
    assert_eq!(std::fs::read_to_string(&errors_path).unwrap(), whole.errors);
    assert_eq!(
        (summary.records, summary.labelled, summary.errors),
        (
            whole.summary.records,
            whole.summary.labelled,
            whole.summary.errors
        )
    );
}

#[test]
fn the_shards_of_a_run_merge_into_the_whole_run() {
    let (dir, input, labeller, whole) = fixture();
    let mut parts = Vec::new();
    for i in 0..3 {
        let out = dir.path().join(format!("part-{i}.jsonl"));
        run_with(
            &labeller,
            &input,
            &out,
            RunOptions {
                shard: Some((i, 3)),
                ..Default::default()
            },
        );
        parts.push(out);
    }
    let merged = dir.path().join("merged.jsonl");
    let total = merge::merge(&parts, &merged).unwrap();
    assert_eq!(std::fs::read_to_string(&merged).unwrap(), whole.output);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("merged.jsonl.errors.jsonl")).unwrap(),
        whole.errors
    );
    assert_eq!(
        (total.records, total.labelled, total.errors),
        (
            whole.summary.records,
            whole.summary.labelled,
            whole.summary.errors
        )
    );
    assert_eq!(total.labels, whole.summary.labels);
    assert_eq!(total.languages, whole.summary.languages);
    // a part given twice is refused, not merged twice
    let twice = [parts[0].clone(), parts[0].clone()];
    let e = merge::merge(&twice, &dir.path().join("twice.jsonl")).unwrap_err();
    assert!(e.to_string().contains("out of order or repeated"), "{e}");
}

/// The tiny BERT checkpoint in prototypes mode (one label), so that windows have embeddings.
fn prototypes_labeller() -> Labeller {
    let classifier = ClassifierBuilder::new(tiny("tiny-bert-cls"))
        .labels(LabelsConfig {
            mode: Mode::Prototypes,
            labels: vec![(
                "spam".into(),
                triage_classify::LabelSpec {
                    examples: vec!["Gagnez de l'argent, cliquez ici".into()],
                    ..Default::default()
                },
            )],
            ..Default::default()
        })
        .build()
        .unwrap();
    let detector = triage_langid::Detector::new(&Default::default()).unwrap();
    Labeller::new(classifier, detector, InputConfig::default())
}

#[test]
fn bank_matches_are_added_without_changing_a_label() {
    let dir = tempfile::tempdir().unwrap();
    let input = dump(dir.path());
    let plain = prototypes_labeller();
    let c = plain.classifier();
    let known = "Join the fight, brothers, the hour has come.";
    let far = "Bugün hava çok güzel, parka gidelim.";
    // a bank with the model's own embeddings: "known" matches itself exactly; an item whose
    // embedding is the embedding of "far" but whose text is elsewhere matches "far" semantically
    let model = triage_bank::EmbeddingModel {
        model: c.model_id().into(),
        weights_sha256: c.weights_sha256().into(),
        dim: c.hidden_size(),
    };
    let mut bank = triage_bank::Bank::new("seized", Some(model.clone()));
    let e = c.embed(&[known, far]).unwrap();
    bank.add([
        triage_bank::Item::from_text("k1", &known.to_uppercase(), Default::default())
            .with_embedding(e[0].clone()),
        triage_bank::Item::from_text("t1", "a translation kept elsewhere", Default::default())
            .with_embedding(e[1].clone()),
    ])
    .unwrap();
    let bank_dir = dir.path().join("banks/seized");
    bank.save(&bank_dir).unwrap();
    let loaded = triage_bank::Bank::load(&bank_dir).unwrap();
    // made without a language space (as banks of format 1 and 2 were): the labeller gives it
    // the model's, estimated from the built-in background, and projects its embeddings
    assert!(loaded.language_space().is_none());
    let with = prototypes_labeller()
        .with_banks(
            vec![(bank_dir.clone(), loaded)],
            triage_bank::Thresholds::default(),
        )
        .unwrap();
    let space = triage_batch::language_space(c).unwrap();
    assert!((1..=14).contains(&space.rank()), "{}", space.rank());
    assert_eq!(with.banks()[0].language_space(), Some(&space));
    assert_eq!(
        with.banks()[0].embedding(1),
        triage_bank::Bank::load(&bank_dir)
            .map(|mut b| {
                b.set_language_space(space.clone()).unwrap();
                b.embedding(1)
            })
            .unwrap()
    );
    let a = run_with(
        &plain,
        &input,
        &dir.path().join("a.jsonl"),
        RunOptions::default(),
    );
    let b = run_with(
        &with,
        &input,
        &dir.path().join("b.jsonl"),
        RunOptions::default(),
    );
    let (ra, rb) = (records(&a.output), records(&b.output));
    assert!(ra.iter().all(|r| r.get("matches").is_none()));
    for (x, y) in ra.iter().zip(&rb) {
        let mut y = y.clone();
        let m = y
            .as_object_mut()
            .unwrap()
            .remove("matches")
            .expect("a matches field");
        assert_eq!(x, &y, "labels change with a bank");
        let text_id = x["id"].as_str().unwrap();
        let items: Vec<(&str, &str)> = m
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["item"].as_str().unwrap(), m["method"].as_str().unwrap()))
            .collect();
        match text_id {
            // r6 is "known": exact beats its own semantic match (one entry per item)
            "r6" => assert_eq!(items[0], ("k1", "exact"), "{m}"),
            "r9" => {
                assert!(items.contains(&("t1", "semantic")), "{m}");
                let sim = m[0]["similarity"].as_f64().unwrap();
                assert!(sim > 0.99, "{m}"); // the same embedding, stored in 8 bits
            }
            _ => assert!(!items.contains(&("k1", "exact")), "{text_id}: {m}"),
        }
    }
    let counts = &b.summary.banks["seized"];
    assert_eq!((counts.exact, counts.records >= 2), (1, true), "{counts:?}");
    assert!(a.summary.banks.is_empty());
    // a bank another model made is refused, naming its bank.json
    let mut foreign = triage_bank::Bank::new(
        "other",
        Some(triage_bank::EmbeddingModel {
            weights_sha256: "00".repeat(32),
            ..model
        }),
    );
    foreign.save(&dir.path().join("banks/other")).unwrap();
    let e = prototypes_labeller()
        .with_banks(
            vec![(
                dir.path().join("banks/other"),
                triage_bank::Bank::load(&dir.path().join("banks/other")).unwrap(),
            )],
            Default::default(),
        )
        .unwrap_err();
    assert!(
        e.is_config() && e.to_string().contains("banks/other/bank.json"),
        "{e}"
    );
}
