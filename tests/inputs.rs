//! Input formats and the bad-input matrix: every bad record becomes an error record with file,
//! line and reason (or is handled as a person would expect), and nothing stops the run.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{root, triage};

fn config(dir: &Path) -> PathBuf {
    let p = dir.join("w.toml");
    let model = root().join("tests/data/models/tiny-bert-cls");
    std::fs::write(&p, format!("[model]\nname = {:?}\n[labels]\nmode = \"checkpoint\"\n[input]\ntext_field = \"body\"\n", model.to_str().unwrap())).unwrap();
    p
}

struct Run {
    code: Option<i32>,
    out: Vec<Value>,
    errors: Vec<Value>,
    stderr: String,
}

fn label(dir: &Path, input: &Path, extra: &[&str]) -> Run {
    let out = dir.join("out.jsonl");
    let _ = std::fs::remove_file(dir.join("out.jsonl.errors.jsonl"));
    let o = triage()
        .args([
            "label",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-c",
            config(dir).to_str().unwrap(),
            "--progress",
            "never",
        ])
        .args(extra)
        .output()
        .unwrap();
    let read = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .map(|s| {
                s.lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    };
    Run {
        code: o.status.code(),
        out: read(&out),
        errors: read(&dir.join("out.jsonl.errors.jsonl")),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn kinds(r: &Run) -> Vec<(u64, String)> {
    r.errors
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["error"]["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_bad_input_matrix_in_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.jsonl");
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(b"\xEF\xBB\xBF{\"id\": \"bom\", \"body\": \"free money click this link\"}\r\n")
        .unwrap(); // 1: BOM + CRLF: fine
    f.write_all(b"{\"id\": \"utf8\", \"body\": \"caf\xe9\"}\n")
        .unwrap(); // 2
    f.write_all(b"{\"id\": \"json\", \"body\": \n").unwrap(); // 3
    f.write_all(b"{\"id\": \"missing\"}\n").unwrap(); // 4
    f.write_all(b"{\"id\": \"null\", \"body\": null}\n")
        .unwrap(); // 5
    f.write_all(b"{\"id\": \"number\", \"body\": 7}\n").unwrap(); // 6
    f.write_all(b"{\"id\": \"empty\", \"body\": \"\"}\n")
        .unwrap(); // 7
    f.write_all(b"{\"id\": \"blank\", \"body\": \" \\t\\n \"}\n")
        .unwrap(); // 8
    f.write_all(b"{\"id\": \"nul\", \"body\": \"a\x00b\"}\n")
        .unwrap(); // 9: raw NUL: not JSON
    f.write_all(b"{\"id\": \"escaped-nul\", \"body\": \"the weather \\u0000 is sunny\"}\n")
        .unwrap(); // 10: fine
    let huge = "click ".repeat(2_000_000); // 12 MB
    f.write_all(format!("{{\"id\": \"huge\", \"body\": \"{huge}\"}}\n").as_bytes())
        .unwrap(); // 11
    f.write_all(b"{\"id\": \"last\", \"body\": \"the council approved the budget\"}")
        .unwrap(); // 12: no final newline
    drop(f);
    let r = label(dir.path(), &p, &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let ids: Vec<&str> = r.out.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["bom", "escaped-nul", "last"]);
    let want: Vec<(u64, &str)> = vec![
        (2, "invalid_utf8"),
        (3, "invalid_json"),
        (4, "missing_field"),
        (5, "invalid_field"),
        (6, "invalid_field"),
        (7, "empty_text"),
        (8, "empty_text"),
        (9, "invalid_json"),
        (11, "too_long"),
    ];
    assert_eq!(
        kinds(&r),
        want.iter()
            .map(|(l, k)| (*l, k.to_string()))
            .collect::<Vec<_>>()
    );
    for e in &r.errors {
        assert_eq!(e["file"], p.to_str().unwrap());
        assert!(!e["error"]["reason"].as_str().unwrap().is_empty());
    }
    // the limit is a flag: with a higher one the 12 MB record is labelled
    let r = label(
        dir.path(),
        &p,
        &["--max-chars", "20000000", "--max-errors", "100"],
    );
    assert!(
        r.out
            .iter()
            .any(|o| o["id"] == "huge" && o["windows"].as_u64().unwrap() > 1000),
        "{}",
        r.stderr
    );
}

#[test]
fn csv_tsv_text_and_folders() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = d.join("d.csv");
    std::fs::write(&csv, "id,body,other\n1,\"free money, click this link\",x\n2,\"the council\napproved the budget\",y\n3,too few\n4,\"join the fight\",z\n").unwrap();
    let r = label(d, &csv, &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(
        r.out
            .iter()
            .map(|o| o["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["1", "2", "4"]
    );
    assert_eq!(
        r.out[1]["chars"], 31,
        "the embedded newline is part of the text"
    );
    assert_eq!(kinds(&r), vec![(5, "wrong_field_count".to_string())]);

    let tsv = d.join("d.tsv");
    std::fs::write(&tsv, "text\tid\nfree money\ta\n").unwrap();
    let r = label(d, &tsv, &["--text-column", "text"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.out[0]["id"], "a");
    let r = label(d, &tsv, &["--text-column", "nope"]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("no column \"nope\""), "{}", r.stderr);

    let txt = d.join("d.txt");
    std::fs::write(&txt, "free money\r\n\njoin the fight\n").unwrap();
    let r = label(d, &txt, &[]);
    assert_eq!(
        r.out
            .iter()
            .map(|o| o["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["1", "3"]
    );

    let folder = d.join("docs");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    std::fs::write(folder.join("b.txt"), "join the fight now").unwrap();
    std::fs::write(folder.join("sub/a.txt"), "the weather is sunny").unwrap();
    std::fs::write(folder.join("bad.bin"), b"\xff\xfe\x00").unwrap();
    let r = label(d, &folder, &[]);
    assert_eq!(
        r.out
            .iter()
            .map(|o| o["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["b.txt", "sub/a.txt"]
    );
    assert_eq!(r.errors[0]["id"], "bad.bin");
    assert_eq!(r.errors[0]["error"]["kind"], "invalid_utf8");
    assert!(r.errors[0]["file"].as_str().unwrap().ends_with("bad.bin"));
}

#[test]
fn gzip_and_zstd_by_extension_and_a_truncated_stream() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut plain = String::new();
    for i in 0..3000 {
        plain.push_str(&format!(
            "{{\"id\": \"{i}\", \"body\": \"free money {i} click this link\"}}\n"
        ));
    }
    std::fs::write(d.join("p.jsonl"), &plain).unwrap();
    let want = label(d, &d.join("p.jsonl"), &[]).out;
    assert_eq!(want.len(), 3000);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(plain.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    std::fs::write(d.join("p.jsonl.gz"), &gz).unwrap();
    assert_eq!(label(d, &d.join("p.jsonl.gz"), &[]).out, want);
    std::fs::write(
        d.join("p.jsonl.zst"),
        zstd::encode_all(plain.as_bytes(), 3).unwrap(),
    )
    .unwrap();
    assert_eq!(label(d, &d.join("p.jsonl.zst"), &[]).out, want);

    std::fs::write(d.join("cut.jsonl.gz"), &gz[..gz.len() * 2 / 3]).unwrap();
    let r = label(d, &d.join("cut.jsonl.gz"), &[]);
    assert_eq!(r.code, Some(1));
    assert!(r.out.len() > 100 && r.out.len() < 3000, "{}", r.out.len());
    assert_eq!(
        r.out[..],
        want[..r.out.len()],
        "what was read is labelled as before"
    );
    let last = r.errors.last().unwrap();
    assert_eq!(last["error"]["kind"], "read_error");
    assert!(last["line"].as_u64().unwrap() > r.out.len() as u64);
}

#[test]
fn csv_output_and_an_unwritable_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in.jsonl");
    std::fs::write(&input, "{\"id\": \"x,1\", \"body\": \"free money\"}\n{\"id\": \"y\", \"body\": \"join the fight\"}\n").unwrap();
    let out = d.join("out.csv");
    let o = triage()
        .args([
            "label",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-c",
            config(d).to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut rdr = csv::Reader::from_path(&out).unwrap();
    let headers = rdr.headers().unwrap().clone();
    assert_eq!(&headers[0], "id");
    assert!(
        headers.iter().any(|h| h == "spam_score") && headers.iter().any(|h| h == "spam_flagged")
    );
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][0], "x,1");
    assert_eq!(rows[0].len(), headers.len());

    let o = triage()
        .args([
            "label",
            input.to_str().unwrap(),
            "-o",
            "/nonexistent/dir/out.jsonl",
            "-c",
            config(d).to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/dir/out.jsonl"));
}
