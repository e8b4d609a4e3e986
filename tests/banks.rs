//! Banks of known content end to end, on the tiny test checkpoints: `triage bank build`, `add`,
//! `list`, `info`, `label --bank` (matches, spans, summary counts), `--families` and
//! `triage families`, and the bad banks that stop a run before it labels anything.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::{lines, root, triage};

// (the default model's tests below use the repository's workspace.toml)

const CLAIM: &str = "The soldiers of the caliphate attacked the apostate checkpoint near the river and killed twelve of them, praise be to God.";
const CALL: &str = "Brothers, the time has come: leave your homes, pick up your weapons and join the ranks of the mujahideen on the front.";
const STATEMENT: &str = "We announce to the world that the brigade will strike again wherever the enemies of the faith gather, and no wall will protect them.";

/// A workspace on a tiny checkpoint in prototypes mode (so that windows have embeddings).
fn config(dir: &Path, model: &str) -> PathBuf {
    let p = dir.join(format!("{model}.toml"));
    let m = root().join("tests/data/models").join(model);
    std::fs::write(
        &p,
        format!(
            // a random tiny model's embeddings are all alike: semantic family edges are tested
            // on the default model (families_join_translations_of_a_record_but_not_related_news)
            "[model]\nname = {:?}\n[labels]\nmode = \"prototypes\"\n[labels.spam]\nexamples = [\"free money click this link\"]\n[banks]\nfamilies_semantic = false\n",
            m.to_str().unwrap()
        ),
    )
    .unwrap();
    p
}

fn run(args: &[&str]) -> Output {
    let out = triage().args(args).output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn items(dir: &Path) -> PathBuf {
    let p = dir.join("items.jsonl");
    let mut body = String::new();
    for (id, text) in [("claim-1", CLAIM), ("call-2", CALL), ("stmt-3", STATEMENT)] {
        body += &serde_json::json!({"id": id, "text": text, "source": "seized channel", "date": "2026-11-30"})
            .to_string();
        body.push('\n');
    }
    body += "{\"id\": \"x\", \"text\": 5}\n"; // line 4: a bad field
    body += "{not json\n"; // line 5
    body += &serde_json::json!({"id": "claim-1", "text": "again"}).to_string(); // line 6: repeated
    body.push('\n');
    std::fs::write(&p, body).unwrap();
    p
}

fn dump(dir: &Path) -> PathBuf {
    let texts = [
        // d1, d2, d4: one family of edited copies of CLAIM
        CLAIM.to_owned(),
        CLAIM.to_uppercase().replace(' ', "  ").replace('a', "\u{0430}"),
        "The city council approved the library budget on Tuesday evening after a long debate.".into(),
        format!("{}\nhttps://t.me/channel #news", CLAIM.replace('o', "0")),
        // d5: CALL pasted inside a longer post
        format!("Look what they posted again on the channel yesterday, everyone is sharing it: {CALL} Report this account to the platform please, it keeps coming back."),
        "The weather will be sunny tomorrow with a light breeze from the west and no rain.".into(),
    ];
    let body: String = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({"id": format!("d{}", i + 1), "text": t}).to_string() + "\n"
        })
        .collect();
    let p = dir.join("dump.jsonl");
    std::fs::write(&p, body).unwrap();
    p
}

/// `triage bank build` of [`items`] into `banks/seized` on the tiny BERT workspace: the
/// configuration, the bank's folder and the command's output.
/// A labelled record's exact and near matches, `(item, method)`, best first.
fn near_or_exact(r: &serde_json::Value) -> Vec<(String, String)> {
    r["matches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["method"] != "semantic")
        .map(|m| {
            let f = |k: &str| m[k].as_str().unwrap().to_owned();
            (f("item"), f("method"))
        })
        .collect()
}

fn seized_bank(d: &Path) -> (PathBuf, PathBuf, Output) {
    let cfg = config(d, "tiny-bert-cls");
    let bank = d.join("banks/seized");
    let out = run(&["bank", "build", s(&items(d)), "-o", s(&bank), "-c", s(&cfg)]);
    (cfg, bank, out)
}

#[test]
fn banks_are_built_matched_in_a_run_and_families_found() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // build: three items, the bad and the repeated ones reported with their lines
    let (cfg, bank, out) = seized_bank(d);
    assert_eq!(
        out.status.code(),
        Some(1),
        "bad items make the exit status 1"
    );
    let errs = String::from_utf8_lossy(&out.stderr);
    let records: Vec<serde_json::Value> = errs
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at: Vec<(u64, &str)> = records
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["error"]["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        at,
        [
            (4, "invalid_field"),
            (5, "invalid_json"),
            (6, "repeated_id")
        ]
    );
    let info = run(&["bank", "info", s(&bank)]);
    assert!(info.status.success());
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(
        (info["items"].as_u64(), info["version"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(info["embeddings"]["dim"].as_u64(), Some(32), "{info}");
    // format 3: the embeddings are kept less the model's directions of language, which the
    // bank holds (the 15 languages of the built-in background span at most 14)
    assert_eq!(info["format"].as_u64(), Some(3), "{info}");
    let rank = info["language_space"].as_u64().expect("a language space");
    assert!((1..=14).contains(&rank), "{info}");
    assert_eq!(
        std::fs::metadata(bank.join("language_space.bin"))
            .unwrap()
            .len(),
        rank * 32 * 4
    );
    let items_file = std::fs::read_to_string(bank.join("items.jsonl")).unwrap();
    assert!(
        items_file.contains("seized channel"),
        "metadata kept: {items_file}"
    );
    // a partner's list of digests of normalised text: exact matches only
    let partner = d.join("partner.txt");
    let stmt_digest = {
        // the digest of STATEMENT's normalised text, as the bank stores it
        let first: serde_json::Value =
            serde_json::from_str(items_file.lines().nth(2).unwrap()).unwrap();
        first["digest"].as_str().unwrap().to_owned()
    };
    std::fs::write(&partner, format!("{stmt_digest} p-77\nnot-a-digest\n")).unwrap();
    let pbank = d.join("banks/partner");
    let out = run(&["bank", "build", "--digests", s(&partner), "-o", s(&pbank)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"line\":2"));
    let list = run(&["bank", "list", s(&d.join("banks"))]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("seized") && list.contains("partner"),
        "{list}"
    );
    let seized = list.lines().find(|l| l.starts_with("seized")).unwrap();
    let cells: Vec<&str> = seized.split_whitespace().collect();
    assert_eq!(
        &cells[1..4],
        ["3", "1", "3"],
        "items, version, format: {list}"
    );
    assert!(!seized.contains("no language space"), "{list}");

    // label with both banks and families
    let input = dump(d);
    let labelled = d.join("out.jsonl");
    let out = run(&[
        "label",
        s(&input),
        "-o",
        s(&labelled),
        "-c",
        s(&cfg),
        "--progress",
        "never",
        "--bank",
        s(&bank),
        "--bank",
        s(&pbank),
        "--families",
    ]);
    assert!(out.status.success());
    let recs = lines(&labelled);
    assert_eq!(recs.len(), 6);
    assert_eq!(
        near_or_exact(&recs[0]),
        [("claim-1".to_owned(), "exact".to_owned())]
    );
    assert_eq!(near_or_exact(&recs[1])[0].0, "claim-1", "{}", recs[1]);
    assert_eq!(near_or_exact(&recs[3])[0].0, "claim-1", "{}", recs[3]);
    assert!(near_or_exact(&recs[2]).is_empty() && near_or_exact(&recs[5]).is_empty());
    // the pasted statement, with its span
    let m = recs[4]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["item"] == "call-2")
        .expect("call-2 found inside d5")
        .clone();
    assert_eq!(m["method"], "near");
    let text = recs[4]["chars"].as_u64().unwrap();
    let (start, end) = (m["start"].as_u64().unwrap(), m["end"].as_u64().unwrap());
    let want = "Look what they posted again on the channel yesterday, everyone is sharing it: "
        .chars()
        .count() as u64;
    assert!(start.abs_diff(want) <= 6, "{m} vs {want}");
    let call_end = want + CALL.chars().count() as u64;
    assert!(
        end.abs_diff(call_end) <= 6 && end <= text,
        "{m} vs {call_end}"
    );
    // families: the copies of CLAIM are one family, named by its first record
    let fam: Vec<&str> = recs.iter().map(|r| r["family"].as_str().unwrap()).collect();
    assert_eq!(fam, ["d1", "d1", "d3", "d1", "d5", "d6"]);
    let families = lines(&d.join("out.jsonl.families.jsonl"));
    assert_eq!(families.len(), 1);
    assert_eq!(families[0]["size"], 3);
    assert_eq!(
        families[0]["members"],
        serde_json::json!(["d1", "d2", "d4"])
    );
    // the summary counts per bank
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out.jsonl.summary.json")).unwrap()).unwrap();
    assert!(
        summary["banks"]["seized"]["records"].as_u64().unwrap() >= 4,
        "{summary}"
    );
    assert!(summary["banks"]["partner"].is_object(), "{summary}");

    // `triage families` over the output gives the same file, and one thread the same output
    let before = std::fs::read(&labelled).unwrap();
    let out = run(&[
        "families",
        s(&labelled),
        "--input",
        s(&input),
        "-c",
        s(&cfg),
    ]);
    assert!(out.status.success());
    assert_eq!(std::fs::read(&labelled).unwrap(), before);
    // the output's manifest follows: the step is recorded, and it still verifies
    let manifest = d.join("out.jsonl.manifest.json");
    let steps = |m: &Path| -> Vec<String> {
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(m).unwrap()).unwrap();
        m["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["command"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(steps(&manifest), ["label", "families"]);
    let verified = run(&["verify", s(&manifest)]);
    assert_eq!(verified.status.code(), Some(0));
    let said = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(said.contains("bank.json (and its"), "{said}");
    // a bank file changed after the run is found through its bank.json
    let sigs = d.join("banks/seized/signatures.bin");
    let body = std::fs::read(&sigs).unwrap();
    let mut flipped = body.clone();
    flipped[0] ^= 1;
    std::fs::write(&sigs, &flipped).unwrap();
    let verified = run(&["verify", s(&manifest)]);
    assert_ne!(verified.status.code(), Some(0));
    let said = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(
        said.contains("CHANGED") && said.contains("signatures.bin"),
        "{said}"
    );
    std::fs::write(&sigs, &body).unwrap();
    // a resumed run that finds the output complete gives it its families too (the same ones)
    std::fs::remove_file(d.join("out.jsonl.families.jsonl")).unwrap();
    let out = run(&[
        "label",
        s(&input),
        "-o",
        s(&labelled),
        "-c",
        s(&cfg),
        "--progress",
        "never",
        "--bank",
        s(&bank),
        "--bank",
        s(&pbank),
        "--families",
        "--resume",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already complete"));
    assert_eq!(std::fs::read(&labelled).unwrap(), before);
    assert_eq!(lines(&d.join("out.jsonl.families.jsonl")).len(), 1);
    assert_eq!(steps(&manifest), ["label", "families", "families"]);
    assert_eq!(run(&["verify", s(&manifest)]).status.code(), Some(0));
    let one = d.join("one.jsonl");
    let out = run(&[
        "--threads",
        "1",
        "label",
        s(&input),
        "-o",
        s(&one),
        "-c",
        s(&cfg),
        "--progress",
        "never",
        "--bank",
        s(&bank),
        "--bank",
        s(&pbank),
        "--families",
        "--dedupe-capacity",
        "0",
    ]);
    assert!(out.status.success());
    assert_eq!(std::fs::read(&one).unwrap(), before);

    // bank add: new items in, a held id skipped, the version up
    let more = d.join("more.jsonl");
    std::fs::write(
        &more,
        "{\"id\": \"new-4\", \"text\": \"A fourth item about something else entirely, long enough.\"}\n{\"id\": \"call-2\", \"text\": \"x\"}\n",
    )
    .unwrap();
    let out = run(&["bank", "add", s(&bank), s(&more), "-c", s(&cfg)]);
    assert_eq!(out.status.code(), Some(1), "the repeated id is reported");
    let info = run(&["bank", "info", s(&bank)]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(
        (info["items"].as_u64(), info["version"].as_u64()),
        (Some(4), Some(2))
    );
    // the same items again: nothing added, so the bank keeps its version and its files
    let held = std::fs::read(bank.join("bank.json")).unwrap();
    let out = run(&["bank", "add", s(&bank), s(&more), "-c", s(&cfg)]);
    assert_eq!(out.status.code(), Some(1), "the repeated ids are reported");
    assert!(String::from_utf8_lossy(&out.stderr).contains("version 2 (unchanged, not saved)"));
    assert_eq!(std::fs::read(bank.join("bank.json")).unwrap(), held);
    // a CSV output carries the matches in its last column
    let csv = d.join("out.csv");
    let out = run(&[
        "label",
        s(&input),
        "-o",
        s(&csv),
        "-c",
        s(&cfg),
        "--progress",
        "never",
        "--bank",
        s(&bank),
    ]);
    assert!(out.status.success());
    let body = std::fs::read_to_string(&csv).unwrap();
    assert!(body.lines().next().unwrap().ends_with(",matches,config"));
    assert!(
        body.lines()
            .nth(1)
            .unwrap()
            .contains("seized/claim-1:exact:1"),
        "{body}"
    );
}

/// A copy of `bank` in `to` as an older version wrote it: without the files `drop`, with
/// bank.json edited by `edit` and its content hash made again. Returns the original bank.json.
fn older_copy(
    bank: &Path,
    to: &Path,
    drop: &[&str],
    edit: impl Fn(&mut serde_json::Map<String, serde_json::Value>),
) -> serde_json::Value {
    use sha2::{Digest, Sha256};
    std::fs::create_dir_all(to).unwrap();
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bank.join("bank.json")).unwrap()).unwrap();
    let mut info = original.clone();
    let info = info.as_object_mut().unwrap();
    edit(info);
    let files = info["files"].as_object_mut().unwrap();
    for f in drop {
        files.remove(*f);
    }
    for f in files.keys() {
        std::fs::copy(bank.join(f), to.join(f)).unwrap();
    }
    let mut h = Sha256::new();
    for (name, hash) in files.iter() {
        h.update(format!("{name} {}\n", hash.as_str().unwrap()));
    }
    let content: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    info.insert("content_sha256".into(), content.into());
    std::fs::write(
        to.join("bank.json"),
        serde_json::to_vec_pretty(&info).unwrap(),
    )
    .unwrap();
    original
}

/// A bank made before language spaces (no `language_space` in its bank.json, as formats 1 and
/// 2 wrote it) is projected when `triage label` loads it, with a warning that names it and
/// says how to save it so, and matches as the bank built now does; `triage bank add` with no
/// new items saves it as format 3. The same for a bank of format 3 made before items' levels.
#[test]
fn a_bank_from_before_language_spaces_is_projected_at_load_and_saved_so_by_bank_add() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // (exit status 1: the items file's bad lines)
    let (cfg, bank, out) = seized_bank(d);
    assert_eq!(out.status.code(), Some(1));
    let old = d.join("old/seized");
    let info = older_copy(
        &bank,
        &old,
        &["language_space.bin", "reference.bin", "levels.bin"],
        |info| {
            info.insert("format".into(), 2.into());
            info.remove("language_space");
        },
    );
    let rank = info["language_space"].as_u64().unwrap();
    let input = dump(d);
    let label = |b: &Path, out: &Path| {
        run(&[
            "label",
            s(&input),
            "-o",
            s(out),
            "-c",
            s(&cfg),
            "--progress",
            "never",
            "--bank",
            s(b),
        ])
    };
    // exact and near matches: a random tiny model's cosines sit on the semantic thresholds,
    // where projecting 8-bit vectors again moves them (a projected bank's semantic matches are
    // compared in triage-bank's tests and crates/batch/tests/pipeline.rs)
    let matches = |out: &Path| -> Vec<Vec<(String, String)>> {
        lines(out).iter().map(near_or_exact).collect()
    };
    let new_out = d.join("new.jsonl");
    assert!(label(&bank, &new_out).status.success());
    let old_out = d.join("old.jsonl");
    // an older bank: listed as such, upgraded at load with a warning that says how to save it
    // so, and matching as the bank built now does
    let flagged = |old: &Path, old_out: &Path, listed: &str, warned: &str| {
        let list = run(&["bank", "list", s(old.parent().unwrap())]);
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(list.contains(listed), "{list}");
        let out = label(old, old_out);
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(warned)
                && err.contains(&format!("triage bank add {} /dev/null", old.display())),
            "{err}"
        );
        assert_eq!(matches(old_out), matches(&new_out));
    };
    flagged(
        &old,
        &old_out,
        "(no language space)",
        "built before language spaces",
    );
    assert!(matches(&new_out).iter().any(|m| !m.is_empty()));
    // saved as format 3 by `bank add` with no new items
    let out = run(&["bank", "add", s(&old), "/dev/null", "-c", s(&cfg)]);
    assert!(out.status.success());
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(old.join("bank.json")).unwrap()).unwrap();
    assert_eq!(info["format"].as_u64(), Some(3));
    assert_eq!(info["language_space"].as_u64(), Some(rank));
    assert_eq!(
        std::fs::read(old.join("language_space.bin")).unwrap(),
        std::fs::read(bank.join("language_space.bin")).unwrap()
    );
    // and with the items' levels, measured against the same reference as a bank built now
    assert_eq!(
        std::fs::read(old.join("reference.bin")).unwrap(),
        std::fs::read(bank.join("reference.bin")).unwrap()
    );
    assert_eq!(
        std::fs::metadata(old.join("levels.bin")).unwrap().len(),
        4 * info["items"].as_u64().unwrap()
    );
    let out = label(&old, &old_out);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("built before language spaces"));
    assert_eq!(matches(&old_out), matches(&new_out));
    // a bank of format 3 made before items' levels: listed as such, measured at each load with
    // a warning, and saved with them by `bank add`: the levels of a bank built now
    let mid = d.join("mid/seized");
    older_copy(&bank, &mid, &["reference.bin", "levels.bin"], |_| {});
    let mid_out = d.join("mid.jsonl");
    flagged(&mid, &mid_out, "(no levels)", "before items' levels");
    let out = run(&["bank", "add", s(&mid), "/dev/null", "-c", s(&cfg)]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("levels measured"), "{err}");
    for f in ["reference.bin", "levels.bin"] {
        assert_eq!(
            std::fs::read(mid.join(f)).unwrap(),
            std::fs::read(bank.join(f)).unwrap(),
            "{f}"
        );
    }
    let out = label(&mid, &mid_out);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("levels"));
}

#[test]
fn a_missing_damaged_newer_or_foreign_bank_stops_the_run_before_labelling() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = config(d, "tiny-bert-cls");
    let input = dump(d);
    let label = |bank: &Path, cfg: &Path| {
        let out_path = d.join("never.jsonl");
        let out = run(&[
            "label",
            s(&input),
            "-o",
            s(&out_path),
            "-c",
            s(cfg),
            "--progress",
            "never",
            "--bank",
            s(bank),
        ]);
        assert!(!out_path.exists(), "nothing is labelled");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = label(&d.join("banks/none"), &cfg);
    assert_eq!(code, Some(2));
    // said once, as a bank's error (the bank came from --bank, not from the configuration)
    assert_eq!(err.matches("banks/none/bank.json").count(), 1, "{err}");
    assert!(err.contains("error: loading a bank: "), "{err}");
    let bank = d.join("banks/b");
    assert!(
        run(&["bank", "build", s(&items(d)), "-o", s(&bank), "-c", s(&cfg)])
            .status
            .code()
            == Some(1)
    );
    // a bank built with another model's embeddings
    let other = config(d, "tiny-xlmr-cls");
    let (code, err) = label(&bank, &other);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("bank.json") && err.contains("tiny-bert-cls"),
        "{err}"
    );
    // truncated items
    let items_file = bank.join("items.jsonl");
    let body = std::fs::read(&items_file).unwrap();
    std::fs::write(&items_file, &body[..body.len() / 2]).unwrap();
    let (code, err) = label(&bank, &cfg);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("items.jsonl") && err.contains("damaged"),
        "{err}"
    );
    std::fs::write(&items_file, &body).unwrap();
    // truncated embeddings: a whole file's error, with no line
    let embeddings = bank.join("embeddings.bin");
    let body = std::fs::read(&embeddings).unwrap();
    std::fs::write(&embeddings, &body[..10]).unwrap();
    let (code, err) = label(&bank, &cfg);
    assert_eq!(code, Some(2));
    assert!(err.contains("embeddings.bin: "), "{err}");
    assert!(!err.contains("embeddings.bin:0"), "{err}");
    std::fs::write(&embeddings, &body).unwrap();
    // a newer format
    let info = bank.join("bank.json");
    let text = std::fs::read_to_string(&info).unwrap();
    let mut newer: serde_json::Value = serde_json::from_str(&text).unwrap();
    newer["format"] = 7.into();
    std::fs::write(&info, newer.to_string()).unwrap();
    let (code, err) = label(&bank, &cfg);
    assert_eq!(code, Some(2));
    assert!(err.contains("format 7"), "{err}");
    // and in workspace.toml: paths relative to the file
    std::fs::write(&info, text).unwrap();
    let with = d.join("with.toml");
    let base = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &with,
        base.replace("[banks]\n", "[banks]\npaths = [\"banks/b\"]\nnear = 0.5\nsemantic = 0.0\nsemantic_margin = 0.0\nmax_matches = 1\n"),
    )
    .unwrap();
    let out_path = d.join("ok.jsonl");
    let out = run(&[
        "label",
        s(&input),
        "-o",
        s(&out_path),
        "-c",
        s(&with),
        "--progress",
        "never",
    ]);
    assert!(out.status.success());
    let recs = lines(&out_path);
    assert_eq!(recs[0]["matches"][0]["item"], "claim-1");
    // the same run uncapped has records of several matches
    let capped = std::fs::read_to_string(&with).unwrap();
    std::fs::write(&with, capped.replace("max_matches = 1\n", "")).unwrap();
    let all_path = d.join("all.jsonl");
    let out = run(&[
        "label",
        s(&input),
        "-o",
        s(&all_path),
        "-c",
        s(&with),
        "--progress",
        "never",
    ]);
    assert!(out.status.success());
    assert!(lines(&all_path)
        .iter()
        .any(|r| r["matches"].as_array().unwrap().len() > 1));
    assert!(recs
        .iter()
        .all(|r| r["matches"].as_array().unwrap().len() <= 1));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("ok.jsonl.summary.json")).unwrap()).unwrap();
    assert!(
        summary["banks"]["b"]["records"].as_u64().unwrap() >= 4,
        "{summary}"
    );
    std::fs::write(&with, base.replace("[banks]\n", "[banks]\nnear = 1.5\n")).unwrap();
    let out = run(&[
        "label",
        s(&input),
        "-o",
        s(&out_path),
        "-c",
        s(&with),
        "--progress",
        "never",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[banks] near"));
}

/// Families join translations by semantic edges (the default model), and the edges hold
/// whichever way the families are found: `label --families`, `triage families`, one thread.
#[test]
fn families_join_translations_of_a_record_but_not_related_news() {
    let Some(_) = crate::util::model_installed() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // written for this test: a claim, two translations and an edited copy; unrelated posts,
    // among them news of another attack and of its condemnation (related in topic, not
    // re-uploads; their cosines with the claim are 0.82 to 0.84, over the `semantic` floor:
    // the margin keeps them out). (A report of the very attack the claim boasts of is as
    // close to it as its translations are: the encoder cannot tell them apart.)
    let texts = [
        ("c-en", CLAIM),
        ("w1", "The weather will be sunny tomorrow with a light breeze from the west and no rain."),
        ("c-fr", "Les soldats du califat ont attaqué le poste de contrôle apostat près de la rivière et en ont tué douze, louange à Dieu."),
        ("news", "Police arrested two suspects after a bombing at a market in the capital killed nine people, officials said."),
        ("cook", "Mix the flour with two eggs and a glass of milk, then let the batter rest for an hour before frying the pancakes."),
        ("c-de", "Die Soldaten des Kalifats griffen den Kontrollpunkt der Abtrünnigen am Fluss an und töteten zwölf von ihnen, gelobt sei Gott."),
        ("c-copy", "THE SOLDIERS OF THE CALIPHATE ATTACKED THE APOSTATE CHECKPOINT NEAR THE RIVER AND KILLED TWELVE OF THEM, PRAISE BE TO GOD!!"),
        ("match", "The home team won the match three to one after a late goal in the second half, and the fans celebrated in the streets."),
        ("condemn", "The government condemned the attack on the border post and declared three days of national mourning."),
        ("flood", "Flood waters forced hundreds of families to leave their homes near the river on Monday, officials said."),
    ];
    let body: String = texts
        .iter()
        .map(|(id, t)| serde_json::json!({"id": id, "text": t}).to_string() + "\n")
        .collect();
    let input = d.join("dump.jsonl");
    std::fs::write(&input, body).unwrap();
    let labelled = d.join("out.jsonl");
    let label = |out: &Path, threads: &str| {
        run(&[
            "--threads",
            threads,
            "label",
            s(&input),
            "-o",
            s(out),
            "--progress",
            "never",
            "--families",
        ])
    };
    let out = label(&labelled, "2");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("semantic edges"),
        "the summary says what semantic edges did"
    );
    let fam: Vec<String> = lines(&labelled)
        .iter()
        .map(|r| r["family"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        fam,
        ["c-en", "w1", "c-en", "news", "cook", "c-en", "c-en", "match", "condemn", "flood"],
        "translations and the copy join the claim; the news report and the rest stay apart"
    );
    let families = lines(&d.join("out.jsonl.families.jsonl"));
    assert_eq!(families.len(), 1);
    assert_eq!(families[0]["size"], 4);
    let langs = families[0]["languages"].as_object().unwrap();
    assert!(
        ["en", "fr", "de"].iter().all(|l| langs.contains_key(*l)),
        "{langs:?}"
    );
    // `triage families` over the output finds the same; one thread labels the same
    let before = std::fs::read(&labelled).unwrap();
    let out = run(&["families", s(&labelled), "--input", s(&input)]);
    assert!(out.status.success());
    assert_eq!(std::fs::read(&labelled).unwrap(), before);
    let one = d.join("one.jsonl");
    assert!(label(&one, "1").status.success());
    assert_eq!(std::fs::read(&one).unwrap(), before);
    // with semantic edges off, only the copy joins
    let cfg = d.join("near-only.toml");
    let workspace = std::fs::read_to_string(root().join("workspace.toml")).unwrap();
    let workspace = workspace.replace("families_semantic = true", "families_semantic = false");
    std::fs::write(&cfg, workspace).unwrap();
    let out = run(&[
        "families",
        s(&labelled),
        "--input",
        s(&input),
        "-c",
        s(&cfg),
        "--models-dir",
        s(&root().join("models")),
    ]);
    assert!(out.status.success());
    let fam: Vec<String> = lines(&labelled)
        .iter()
        .map(|r| r["family"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        fam,
        ["c-en", "w1", "c-fr", "news", "cook", "c-de", "c-en", "match", "condemn", "flood"]
    );
}
