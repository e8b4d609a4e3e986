//! `triage queue` on a labelled output written here by hand (so that every score is known):
//! the order by severity x score, bank matches and family size, the filters, one row per
//! family, the evidence excerpt from the input, and cells a spreadsheet would run as formulas.

use std::path::Path;

use crate::util::triage;

pub(crate) fn record(
    id: &str,
    pos: u64,
    lang: &str,
    labels: &[(&str, f64, bool)],
    evidence: (usize, usize),
    matches: &[(&str, &str, f64)],
    family: &str,
) -> String {
    let mut r = serde_json::json!({
        "id": id, "position": pos, "lang": lang,
        "labels": labels.iter().map(|(l, s, f)| serde_json::json!({"label": l, "score": s, "flagged": f})).collect::<Vec<_>>(),
        "evidence": {"start": evidence.0, "end": evidence.1},
        "family": family,
    });
    if !matches.is_empty() {
        r["matches"] = matches
            .iter()
            .map(|(item, method, sim)| serde_json::json!({"bank": "b", "item": item, "method": method, "similarity": sim, "start": evidence.0, "end": evidence.1}))
            .collect();
    }
    r.to_string()
}

fn rows(csv: &str) -> Vec<Vec<String>> {
    let body = csv
        .strip_prefix('\u{feff}')
        .expect("a byte-order mark first");
    let mut r = csv::Reader::from_reader(body.as_bytes());
    r.records()
        .map(|x| x.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

fn queue(dir: &Path, extra: &[&str]) -> Vec<Vec<String>> {
    let out = triage()
        .args([
            "queue",
            dir.join("out.jsonl").to_str().unwrap(),
            "--input",
            dir.join("dump.jsonl").to_str().unwrap(),
            "-c",
            dir.join("w.toml").to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rows(&String::from_utf8(out.stdout).unwrap())
}

#[test]
fn the_queue_puts_the_gravest_first_with_its_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("w.toml"),
        "[model]\nname = \"unused\"\n[labels]\ndefault_severity = 3\n[labels.violent_extremism]\nseverity = 5\n[labels.spam]\nseverity = 1\n[labels.hate]\n",
    )
    .unwrap();
    let texts = [
        "Buy cheap pills now at this site.",
        "Join the fight, brothers. Take up arms against them all.",
        "=HYPERLINK(\"http://x\") the weather is fine",
        "They are vermin and must be thrown out.",
        "Join the fight, brothers. Take up arms!",
        "A plain message about dinner.",
    ];
    let dump = crate::util::dump_of(&texts);
    std::fs::write(d.join("dump.jsonl"), dump).unwrap();
    let ve = "violent_extremism";
    let out = [
        // spam 0.9 x 1 = 0.9
        record(
            "r1",
            1,
            "en",
            &[("spam", 0.9, true), (ve, 0.1, false)],
            (0, 33),
            &[],
            "r1",
        ),
        // ve 0.7 x 5 = 3.5, family of 2 (r2, r5): x (1 + log2 2) = 7
        record("r2", 2, "en", &[(ve, 0.7, true)], (0, 26), &[], "r2"),
        // nothing flagged, but a semantic match 0.8: 2.5 x 0.8 = 2
        record(
            "r3",
            3,
            "fr",
            &[(ve, 0.2, false)],
            (0, 43),
            &[("k9", "semantic", 0.8)],
            "r3",
        ),
        // hate (default severity 3) 0.95 = 2.85
        record("r4", 4, "de", &[("hate", 0.95, true)], (0, 39), &[], "r4"),
        // ve 0.6 x 5 = 3, and an exact match (5 x 1 = 5) wins: 5 x 2 = 10
        record(
            "r5",
            5,
            "en",
            &[(ve, 0.6, true)],
            (0, 39),
            &[("k1", "exact", 1.0)],
            "r2",
        ),
        // nothing at all: left out
        record("r6", 6, "en", &[(ve, 0.1, false)], (0, 29), &[], "r6"),
    ];
    std::fs::write(d.join("out.jsonl"), out.join("\n") + "\n").unwrap();
    let all = queue(d, &[]);
    let ids: Vec<&str> = all.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(ids, ["r5", "r2", "r4", "r3", "r1"]);
    let priorities: Vec<f64> = all.iter().map(|r| r[1].parse().unwrap()).collect();
    assert_eq!(priorities, [10.0, 7.0, 2.85, 2.0, 0.9]);
    // the evidence is the span's text from the input; a formula-like cell is made text
    assert_eq!(all[0][11], "Join the fight, brothers. Take up arms!");
    assert_eq!(all[1][11], "Join the fight, brothers.");
    assert_eq!(all[3][11], "'=HYPERLINK(\"http://x\") the weather is fine");
    assert_eq!((all[0][9].as_str(), all[0][10].as_str()), ("r2", "2"));
    assert_eq!(all[0][8], "b/k1:exact:1.000");
    // filters
    let ids = |rows: Vec<Vec<String>>| rows.into_iter().map(|r| r[2].clone()).collect::<Vec<_>>();
    assert_eq!(ids(queue(d, &["--label", ve])), ["r5", "r2"]);
    assert_eq!(ids(queue(d, &["--lang", "de"])), ["r4"]);
    assert_eq!(ids(queue(d, &["--min-score", "0.9"])), ["r5", "r4", "r1"]);
    assert_eq!(ids(queue(d, &["--limit", "2"])), ["r5", "r2"]);
    assert_eq!(ids(queue(d, &["--per-family"])), ["r5", "r4", "r3", "r1"]);
    // a record queued for a match shows the match's span: a known statement quoted in a report
    let quoted =
        "Police said on Monday that the post read: Join the fight, brothers. Take up arms!";
    std::fs::write(d.join("dump.jsonl"), crate::util::dump_of(&[quoted])).unwrap();
    let mut r: serde_json::Value = serde_json::from_str(&record(
        "q1",
        1,
        "en",
        &[(ve, 0.3, false)],
        (0, 20),
        &[("k1", "near", 0.9)],
        "q1",
    ))
    .unwrap();
    r["matches"][0]["start"] = 42.into();
    r["matches"][0]["end"] = 80.into();
    std::fs::write(d.join("out.jsonl"), format!("{r}\n")).unwrap();
    let q = queue(d, &[]);
    assert_eq!(q[0][11], "Join the fight, brothers. Take up arms", "{q:?}");
    // ... and a flagged label that outweighs the match, its own window
    r["labels"][0] = serde_json::json!({"label": ve, "score": 0.95, "flagged": true});
    std::fs::write(d.join("out.jsonl"), format!("{r}\n")).unwrap();
    let q = queue(d, &[]);
    assert_eq!(q[0][11], "Police said on Monda", "{q:?}");
    // an unknown label is a usage error
    let out = triage()
        .args(["queue", d.join("out.jsonl").to_str().unwrap(), "--input"])
        .arg(d.join("dump.jsonl"))
        .args(["-c", d.join("w.toml").to_str().unwrap(), "--label", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
