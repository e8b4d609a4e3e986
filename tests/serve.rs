//! `triage serve` over real HTTP on loopback: results equal to `triage label`'s records (bit
//! for bit, also when requests are batched together), TEI's `/predict`, detection, every error
//! as JSON with the path of the bad field, the limits (413, 429 with Retry-After, 503 at the
//! deadline), API keys, metrics, and a graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{lines, model_installed, ort_installed, root, triage};

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `triage serve` on a free port and waits for it to listen.
// the child is waited for by `Server`'s drop
#[allow(clippy::zombie_processes)]
fn start(args: &[&str]) -> Server {
    let mut child = triage()
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            let status = child.wait().unwrap();
            panic!("triage serve exited before listening ({status})");
        }
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            // keep reading its log, so that it never blocks on a full pipe
            std::thread::spawn(move || {
                let mut l = String::new();
                while err.read_line(&mut l).unwrap_or(0) > 0 {
                    eprint!("serve: {l}");
                    l.clear();
                }
            });
            return Server {
                child,
                url: format!("http://{addr}"),
            };
        }
    }
}

/// `(status, headers we look at, body as JSON)`.
fn call(
    method: &str,
    url: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut r = ureq::request(method, url).timeout(Duration::from_secs(120));
    if let Some(k) = key {
        r = r.set("Authorization", &format!("Bearer {k}"));
    }
    let res = match body {
        Some(b) => r.set("Content-Type", "application/json").send_string(b),
        None => r.call(),
    };
    let res = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = res.status();
    let retry = res.header("Retry-After").map(str::to_owned);
    let text = res.into_string().unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, retry, v)
}

fn post(s: &Server, path: &str, body: &str) -> (u16, Value) {
    let (st, _, v) = call("POST", &format!("{}{path}", s.url), Some(body), None);
    (st, v)
}

fn tiny_config(dir: &Path) -> PathBuf {
    crate::util::checkpoint_config(dir, &root().join("tests/data/models/tiny-bert-cls"))
}

/// `[{"label", "score"}, ...]` as pairs, in order.
fn scores(labels: &Value) -> Vec<(String, f64)> {
    labels
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["label"].as_str().unwrap().to_owned(),
                l["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn assert_error(v: &Value, code: &str, field: Option<&str>) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(v["error"]["field"].as_str(), field, "{v}");
}

#[test]
fn served_records_equal_labelled_ones_bit_for_bit_and_errors_are_json() {
    let Some(_) = model_installed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // the sample's good records, in order
    let records = sample_records(0, 48);
    let dump = d.join("dump.jsonl");
    std::fs::write(
        &dump,
        records
            .iter()
            .map(|r| r.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let (s, labelled) = served_equal_labelled(d, &dump, &records, &[]);
    // {"texts": [...]}: ids are places; a bad text fails only its slot
    let (st, v) = post(
        &s,
        "/v1/classify",
        &json!({"texts": [records[0]["text"], "   ", 7]}).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    let r = v["results"].as_array().unwrap();
    assert_eq!(r[0]["labels"], labelled[0]["labels"]);
    assert_eq!(r[0]["id"], "1");
    assert_error(&r[1], "empty_text", Some("texts[1]"));
    assert_error(&r[2], "invalid_text", Some("texts[2]"));
    // TEI's /predict: the labels and scores, highest first
    let (st, v) = post(
        &s,
        "/predict",
        &json!({"inputs": records[1]["text"]}).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    let mut want: Vec<(String, f64)> = scores(&labelled[1]["labels"]);
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    let got: Vec<(String, f64)> = scores(&v);
    assert_eq!(got, want);
    let (st, v) = post(
        &s,
        "/predict",
        &json!({"inputs": [records[1]["text"], records[2]["text"]]}).to_string(),
    );
    assert_eq!((st, v.as_array().unwrap().len()), (200, 2));
    // languages only
    let (st, v) = post(
        &s,
        "/v1/detect",
        &json!({"texts": [records[3]["text"]]}).to_string(),
    );
    assert_eq!(st, 200);
    assert_eq!(v["results"][0]["lang"], labelled[3]["lang"]);
    assert_eq!(
        v["results"][0]["lang_confidence"],
        labelled[3]["lang_confidence"]
    );

    // errors: JSON, with the path of what was wrong
    let (st, v) = post(&s, "/v1/classify", "{\"texts\": [\"a\",");
    assert_eq!(st, 400);
    assert_eq!(v["error"]["code"], "invalid_json");
    let (st, v) = post(&s, "/v1/classify", "{\"texts\": \"a\"}");
    assert_eq!(st, 422);
    assert_error(&v, "invalid_request", Some("texts"));
    let (st, v) = post(
        &s,
        "/v1/classify",
        "{\"records\": [{\"text\": \"a\"}, {\"id\": {}, \"text\": \"b\"}]}",
    );
    assert_eq!(st, 422);
    assert_eq!(v["error"]["field"], "records[1].id");
    let (st, v) = post(&s, "/v1/classify", "{\"txts\": []}");
    assert_eq!(st, 422);
    assert_eq!(v["error"]["code"], "invalid_request");
    let many: Vec<&str> = vec!["x"; 21];
    let (st, v) = post(&s, "/v1/classify", &json!({"texts": many}).to_string());
    assert_eq!(st, 413);
    assert_error(&v, "too_many_texts", Some("texts"));
    let long = "é".repeat(5001);
    let (st, v) = post(
        &s,
        "/v1/classify",
        &json!({"texts": ["ok", long]}).to_string(),
    );
    assert_eq!(st, 413);
    assert_error(&v, "text_too_long", Some("texts[1]"));
    let (st, _, v) = call("GET", &format!("{}/v2/nothing", s.url), None, None);
    assert_eq!(st, 404);
    assert_eq!(v["error"]["code"], "not_found");
    let (st, _, v) = call("GET", &format!("{}/v1/classify", s.url), None, None);
    assert_eq!(st, 405);
    assert_eq!(v["error"]["code"], "method_not_allowed");
    // after all that, it still serves
    let (st, _) = post(&s, "/v1/classify", "{\"texts\": [\"still here\"]}");
    assert_eq!(st, 200);

    // what it says of itself
    let (st, _, info) = call("GET", &format!("{}/info", s.url), None, None);
    assert_eq!(st, 200);
    assert_eq!(info["model"]["id"], labelled[0]["model"]);
    assert_eq!(info["config_id"], labelled[0]["config"]);
    assert_eq!(info["limits"]["max_texts"], 20);
    assert!(info["labels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["name"] == "violent_extremism"));
    let (st, _, doc) = call("GET", &format!("{}/openapi.json", s.url), None, None);
    assert_eq!(st, 200);
    assert!(doc["paths"]["/v1/classify"]["post"].is_object());
    let m = ureq::get(&format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        m.contains("triage_http_requests_total{route=\"/v1/classify\",status=\"200\"}"),
        "{m}"
    );
    assert!(
        m.contains("triage_http_requests_total{route=\"/v1/classify\",status=\"413\"} 2"),
        "{m}"
    );
    let texts: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("triage_texts_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(texts >= 48.0 + 3.0, "{texts}");
    // the four concurrent requests shared batches: fewer batches than requests
    let batches: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("triage_batch_texts_count "))
        .unwrap()
        .parse()
        .unwrap();
    let requests_labelled = 4.0 + 1.0 + 2.0 + 1.0; // classify x4, texts, predict x2, "still here"
    assert!(batches < requests_labelled, "{batches} batches");
}

/// `take` of the sample dump's good records after `skip` of them, as `{"id", "text"}` (the
/// sample holds a line of bad UTF-8 on purpose: read lossily, it is not JSON).
fn sample_records(skip: usize, take: usize) -> Vec<Value> {
    let sample =
        String::from_utf8_lossy(&std::fs::read(root().join("tests/data/sample.jsonl")).unwrap())
            .into_owned();
    sample
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["id"].is_string() && r["text"].as_str().is_some_and(|t| !t.trim().is_empty()))
        .skip(skip)
        .take(take)
        .map(|r| json!({"id": r["id"], "text": r["text"]}))
        .collect()
}

/// Labels `dump` with `triage label` and serves its records (in four concurrent requests, so
/// that they share batches) with the same engine flags; the records must be equal.
fn served_equal_labelled(
    d: &Path,
    dump: &Path,
    records: &[Value],
    engine: &[&str],
) -> (Server, Vec<Value>) {
    let out = d.join(format!("out{}.jsonl", engine.len()));
    let o = triage()
        .args(["label", dump.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .args(["--progress", "never"])
        .args(engine)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let labelled = lines(&out);
    assert_eq!(labelled.len(), records.len());
    // a wait window long enough that concurrent requests share batches
    let mut args = vec![
        "--batch-wait-ms",
        "50",
        "--max-texts",
        "20",
        "--max-chars",
        "5000",
    ];
    args.extend_from_slice(engine);
    let s = start(&args);
    let threads: Vec<_> = records
        .chunks(12)
        .map(|c| {
            let body = json!({"records": c}).to_string();
            let url = format!("{}/v1/classify", s.url);
            std::thread::spawn(move || call("POST", &url, Some(&body), None))
        })
        .collect();
    let mut served = Vec::new();
    for t in threads {
        let (st, _, v) = t.join().unwrap();
        assert_eq!(st, 200, "{v}");
        served.extend(v["results"].as_array().unwrap().clone());
    }
    assert_eq!(served.len(), labelled.len());
    for (i, (got, want)) in served.iter().zip(&labelled).enumerate() {
        // the same record, but its position is its place in its request
        let mut want = want.clone();
        want["position"] = json!(i % 12 + 1);
        assert_eq!(got, &want, "{engine:?}: record {i}");
    }
    (s, labelled)
}

#[test]
fn the_fast_engine_serves_what_it_labels() {
    let Some(_) = model_installed() else { return };
    if !ort_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // enough records that `triage label` scores a chunk's windows many at a time (a matrix
    // product of many rows once gave a row other bits than the same row alone)
    // (under the helper's --max-chars)
    let records: Vec<Value> = sample_records(100, 180)
        .into_iter()
        .filter(|r| r["text"].as_str().unwrap().chars().count() <= 5000)
        .collect();
    let dump = dir.path().join("dump.jsonl");
    std::fs::write(
        &dump,
        records
            .iter()
            .map(|r| r.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let (s, labelled) = served_equal_labelled(
        dir.path(),
        &dump,
        &records,
        &[
            "--backend",
            "ort",
            "--dtype",
            "int8",
            "--refine-margin",
            "0.005",
        ],
    );
    // one text per request, one request at a time: each lone window runs on the session of
    // several threads, with the same bits
    for (i, (r, want)) in records.iter().zip(&labelled).enumerate().step_by(6) {
        let body = json!({"records": [r]}).to_string();
        let (st, _, v) = call("POST", &format!("{}/v1/classify", s.url), Some(&body), None);
        assert_eq!(st, 200, "{v}");
        let mut want = want.clone();
        want["position"] = json!(1);
        assert_eq!(&v["results"][0], &want, "lone request, record {i}");
    }
}

#[test]
fn api_keys_limits_and_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "# the team's keys\nalpha-key-1\n\nbeta-key-2\n").unwrap();
    let s = start(&[
        "-c",
        cfg.to_str().unwrap(),
        "--api-keys",
        keys.to_str().unwrap(),
        "--max-concurrent",
        "1",
        "--max-body-bytes",
        "1000",
    ]);
    let url = |p: &str| format!("{}{p}", s.url);
    let body = "{\"texts\": [\"join the fight now\"]}";
    // health and readiness stay open; the rest needs a key
    assert_eq!(call("GET", &url("/health"), None, None).0, 200);
    assert_eq!(call("GET", &url("/ready"), None, None).0, 200);
    let (st, _, v) = call("POST", &url("/v1/classify"), Some(body), None);
    assert_eq!(st, 401);
    assert_error(&v, "unauthorized", Some("headers.authorization"));
    assert_eq!(
        call("POST", &url("/v1/classify"), Some(body), Some("alpha-key-")).0,
        401
    );
    assert_eq!(call("GET", &url("/metrics"), None, Some("nope")).0, 401);
    for k in ["alpha-key-1", "beta-key-2"] {
        let (st, _, v) = call("POST", &url("/v1/classify"), Some(body), Some(k));
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["results"][0]["windows"], 1);
    }
    // body size
    let big = json!({"texts": ["x".repeat(1200)]}).to_string();
    let (st, _, v) = call(
        "POST",
        &url("/v1/classify"),
        Some(&big),
        Some("alpha-key-1"),
    );
    assert_eq!(st, 413);
    assert_error(&v, "body_too_large", None);
    // one request at a time: while a slow client is still sending its body, another request
    // gets 429 and Retry-After
    let slow = SlowRequest::start(&s.url, "/v1/classify", body, Some("alpha-key-1"));
    std::thread::sleep(Duration::from_millis(200));
    let (st, retry, v) = call("POST", &url("/v1/classify"), Some(body), Some("beta-key-2"));
    assert_eq!((st, retry.as_deref()), (429, Some("1")), "{v}");
    assert_eq!(v["error"]["code"], "too_many_requests");
    let (st, v) = slow.finish();
    assert_eq!(st, 200, "{v}");
    drop(s);

    // a deadline shorter than labelling 200 long texts takes
    let s = start(&["-c", cfg.to_str().unwrap(), "--deadline-ms", "1"]);
    let many =
        json!({"texts": vec!["join the fight now, free money, click this link. ".repeat(20); 200]})
            .to_string();
    let (st, _, v) = call("POST", &format!("{}/v1/classify", s.url), Some(&many), None);
    assert_eq!(st, 503);
    assert_error(&v, "deadline_exceeded", None);
    // and /v1/detect needs no encoder, so no batch
    let (st, _, v) = call("POST", &format!("{}/v1/detect", s.url), Some(body), None);
    assert_eq!(st, 200, "{v}");
    // the server goes on after a request that gave up
    let s2 = call("POST", &format!("{}/v1/classify", s.url), Some(body), None);
    assert!(s2.0 == 200 || s2.0 == 503, "{s2:?}");
}

/// A request whose client sends half its body, then waits until `finish`.
struct SlowRequest {
    stream: std::net::TcpStream,
    rest: Vec<u8>,
}

impl SlowRequest {
    fn start(url: &str, path: &str, body: &str, key: Option<&str>) -> SlowRequest {
        use std::io::Write;
        let addr = url.strip_prefix("http://").unwrap();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{auth}\r\n",
            body.len()
        )
        .unwrap();
        let (first, rest) = body.as_bytes().split_at(body.len() / 2);
        stream.write_all(first).unwrap();
        stream.flush().unwrap();
        SlowRequest {
            stream,
            rest: rest.to_vec(),
        }
    }

    fn finish(mut self) -> (u16, Value) {
        use std::io::{Read, Write};
        self.stream.write_all(&self.rest).unwrap();
        let mut answer = String::new();
        self.stream.read_to_string(&mut answer).unwrap();
        let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
        let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }
}

#[test]
fn sigterm_turns_ready_off_finishes_requests_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let mut s = start(&[
        "-c",
        cfg.to_str().unwrap(),
        "--drain-delay-s",
        "1",
        "--drain-timeout-s",
        "20",
        "--log-format",
        "json",
    ]);
    // a request in flight: its client is still sending the body
    let slow = SlowRequest::start(
        &s.url,
        "/v1/classify",
        "{\"texts\": [\"free money click this link\"]}",
        None,
    );
    std::thread::sleep(Duration::from_millis(200));
    Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // draining: not ready, but still alive and answering
    let (st, _, v) = call("GET", &format!("{}/ready", s.url), None, None);
    assert_eq!(st, 503);
    assert_eq!(v["error"]["code"], "draining");
    assert_eq!(call("GET", &format!("{}/health", s.url), None, None).0, 200);
    // past the drain delay: no new connections, but the request in flight is answered
    std::thread::sleep(Duration::from_millis(1200));
    let (st, v) = slow.finish();
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["results"][0]["chars"], 26);
    let status = s.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_kubernetes_deployment_uses_flags_and_routes_that_exist() {
    let yaml = std::fs::read_to_string(root().join("scripts/k8s-deployment.yaml")).unwrap();
    let help = triage().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let flags: Vec<&str> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- --"))
        .map(|f| f.split('=').next().unwrap())
        .collect();
    assert!(flags.len() >= 5, "{flags:?}");
    for f in flags {
        assert!(
            help.contains(&format!("--{f}")),
            "--{f} is not a flag of triage serve"
        );
    }
    for probe in ["path: /ready", "path: /health", "path: /metrics"] {
        assert!(yaml.contains(probe), "{probe}");
    }
    assert!(yaml.contains("kind: HorizontalPodAutoscaler"));
}

/// Hostile bodies (issue 21's list: random bytes, huge arrays, deep nesting, invalid UTF-8, NUL,
/// a 10 MB string; and a few hundred random mutations of a good body, from a fixed generator):
/// each gets a JSON error or a result, and the server stays up and answers a good request.
#[test]
fn hostile_bodies_get_json_errors_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let s = start(&["-c", cfg.to_str().unwrap(), "--max-body-bytes", "11000000"]);
    let url = format!("{}/v1/classify", s.url);
    let send = |body: &[u8]| -> (u16, Value) {
        let res = ureq::post(&url)
            .timeout(Duration::from_secs(120))
            .set("Content-Type", "application/json")
            .send_bytes(body);
        let res = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("the server dropped a request: {e}"),
        };
        let status = res.status();
        let text = res.into_string().unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("status {status}: not JSON ({e}): {text:.200}"));
        (status, v)
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut bodies: Vec<Vec<u8>> = vec![
        (0..4096).map(|_| next() as u8).collect(),
        format!("[{}]", vec!["1"; 2_000_000].join(",")).into_bytes(),
        json!({"texts": vec!["a"; 100_000]})
            .to_string()
            .into_bytes(),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        format!(
            "{{\"texts\": {}\"x\"{}}}",
            "[".repeat(5_000),
            "]".repeat(5_000)
        )
        .into_bytes(),
        b"{\"texts\": [\"caf\xc3\x28 \xff\xfe\"]}".to_vec(),
        b"{\"texts\": [\"a\x00b\"]}".to_vec(),
        b"{\"texts\": [\"a\\u0000b\"]}".to_vec(),
        json!({"texts": ["x".repeat(10_000_000)]})
            .to_string()
            .into_bytes(),
        b"".to_vec(),
        b"null".to_vec(),
        b"{\"texts\": \"not a list\"}".to_vec(),
        b"{\"records\": [{\"id\": {\"deep\": [1, 2]}, \"text\": 5}]}".to_vec(),
    ];
    let good = json!({"texts": ["hello there", "free money click this link"]})
        .to_string()
        .into_bytes();
    for _ in 0..300 {
        let mut b = good.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % b.len();
            match next() % 3 {
                0 => b[at] = next() as u8,
                1 => {
                    b.remove(at);
                }
                _ => b.insert(at, next() as u8),
            }
        }
        bodies.push(b);
    }
    for (i, body) in bodies.iter().enumerate() {
        let (st, v) = send(body);
        match st {
            200 => assert!(v["results"].is_array(), "body {i}: {v}"),
            400 | 413 | 422 => assert!(v["error"]["code"].is_string(), "body {i}: {v}"),
            other => panic!("body {i}: status {other}: {v}"),
        }
    }
    let (st, _, _) = call("GET", &format!("{}/health", s.url), None, None);
    assert_eq!(st, 200);
    let (st, v) = send(&good);
    assert_eq!(st, 200);
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
}
