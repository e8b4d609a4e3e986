//! Chain of custody: every `label` run writes `<output>.manifest.json`, and `triage verify`
//! passes on an untouched run (also after a resumed run found it complete, and from another
//! folder) and fails, naming the file, when one byte of an input, output, model file or
//! `workspace.toml` changed.

use std::path::Path;
use std::process::Output;

use crate::util::{root, triage};

fn run(args: &[&str]) -> Output {
    let out = triage().args(args).output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn flip(p: &Path) -> Vec<u8> {
    let body = std::fs::read(p).unwrap();
    let mut changed = body.clone();
    let i = changed.len() / 2;
    changed[i] ^= 1;
    std::fs::write(p, changed).unwrap();
    body
}

#[test]
fn verify_passes_on_an_untouched_run_and_names_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // a private copy of the tiny model, so that the test can change its files
    let model = d.join("model");
    std::fs::create_dir(&model).unwrap();
    for f in std::fs::read_dir(root().join("tests/data/models/tiny-bert-cls")).unwrap() {
        let f = f.unwrap();
        if f.path().is_file() && !f.file_name().to_string_lossy().starts_with('.') {
            std::fs::copy(f.path(), model.join(f.file_name())).unwrap();
        }
    }
    let cfg = crate::util::checkpoint_config(d, &model);
    let input = d.join("dump.jsonl");
    std::fs::write(
        &input,
        "{\"id\": \"a\", \"text\": \"join the fight now\"}\n{\"id\": \"b\", \"text\": \"the weather is sunny today\"}\n",
    )
    .unwrap();
    let out = d.join("out/labelled.jsonl");
    std::fs::create_dir(d.join("out")).unwrap();
    let label = |extra: &[&str]| {
        let mut args = vec![
            "label",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-c",
            cfg.to_str().unwrap(),
            "--progress",
            "never",
        ];
        args.extend_from_slice(extra);
        assert!(run(&args).status.success());
    };
    label(&[]);
    let manifest = d.join("out/labelled.jsonl.manifest.json");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(
        (m["records"].as_u64(), m["errors"].as_u64()),
        (Some(2), Some(0))
    );
    let roles = crate::util::field_of_each(&m["files"], "role");
    for role in ["input", "model", "workspace", "output", "summary"] {
        assert!(roles.contains(&role), "{role} in {roles:?}");
    }
    assert!(m["command_line"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "label"));
    assert!(m["started"].as_str().unwrap().ends_with('Z'));
    // every record names the configuration, as the manifest does
    let config = m["config_id"].as_str().unwrap().to_owned();
    assert!(
        config.starts_with("sha256:") && config.len() == 71,
        "{config}"
    );
    for r in crate::util::lines(&out) {
        assert_eq!(r["config"], config.as_str());
    }
    let verify = |m: &Path| run(&["verify", m.to_str().unwrap()]);
    let ok = verify(&manifest);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    // a resumed run that finds the output complete leaves it verifiable
    label(&["--resume"]);
    assert_eq!(verify(&manifest).status.code(), Some(0));
    // one byte of each kind of file
    let model_file = model.join("model.safetensors");
    for (file, role) in [
        (input.clone(), "input"),
        (out.clone(), "output"),
        (model_file, "model"),
        (cfg.clone(), "workspace"),
    ] {
        let before = flip(&file);
        let v = verify(&manifest);
        assert_eq!(v.status.code(), Some(1), "{role}");
        let report = String::from_utf8_lossy(&v.stdout).into_owned();
        let line = report
            .lines()
            .find(|l| l.starts_with("CHANGED"))
            .unwrap_or_else(|| panic!("{role}: {report}"));
        assert!(
            line.contains(role) && line.contains(file.file_name().unwrap().to_str().unwrap()),
            "{line}"
        );
        std::fs::write(&file, before).unwrap();
    }
    assert_eq!(verify(&manifest).status.code(), Some(0));
    // the whole folder moved elsewhere (another machine): found by the relative paths
    let moved = tempfile::tempdir().unwrap();
    let target = moved.path().join("case");
    std::fs::rename(d, &target).unwrap_or_else(|_| {
        // a rename across file systems: copy instead
        panic!("the temporary folders are on one file system")
    });
    let v = verify(&target.join("out/labelled.jsonl.manifest.json"));
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
    std::fs::rename(&target, d).unwrap();
    let e = run(&["verify", d.join("nope.json").to_str().unwrap()]);
    assert_eq!(e.status.code(), Some(2));
}
