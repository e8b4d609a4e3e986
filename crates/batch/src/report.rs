//! A report of a labelled output: one self-contained HTML file (no script, no network: a
//! Content-Security-Policy forbids every fetch) that shows a dump at a glance: records per
//! language and per label as bar charts, flagged records per language and label, the score
//! distribution of each label with its threshold, the top of the review queue with each
//! record's evidence span highlighted in its text (right-to-left scripts shown right to left),
//! and the error records with file and line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use triage_classify::LabelsConfig;

use crate::config::InputConfig;
use crate::error::{Error, Result};
use crate::input::Records;
use crate::queue::{rank, texts, QueueOptions, Row, Texts};

/// Bins of each label's score histogram, over [0, 1].
pub const BINS: usize = 20;
/// Characters of text shown before and after an evidence span.
pub const CONTEXT_CHARS: usize = 240;
/// Characters of an evidence span shown (the rest is cut, with an ellipsis).
pub const SPAN_CHARS: usize = 1200;
/// Error records listed (all are counted).
pub const ERRORS_LISTED: usize = 500;

/// What a report is made of, besides the labelled output.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// The title (e.g. the dump's name).
    pub title: String,
    /// Rows of the review queue shown (and its filters).
    pub queue: QueueOptions,
    /// The run's error records (`<output>.errors.jsonl`), when there are.
    pub errors: Option<std::path::PathBuf>,
    /// The run's manifest (`<output>.manifest.json`), for its provenance, when there is one.
    pub manifest: Option<serde_json::Value>,
    /// When the report was made (UTC, RFC 3339).
    pub generated: String,
}

/// What a report holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportSummary {
    /// Labelled records read.
    pub records: u64,
    /// Rows of the queue shown.
    pub queue_rows: u64,
    /// Error records read.
    pub errors: u64,
}

/// Languages written right to left (ISO 639-1/3 codes as `triage` writes them).
pub fn is_rtl(lang: &str) -> bool {
    matches!(
        lang,
        "ar" | "arb"
            | "arz"
            | "fa"
            | "pes"
            | "prs"
            | "ur"
            | "ps"
            | "pus"
            | "he"
            | "yi"
            | "sd"
            | "ug"
            | "dv"
            | "ckb"
            | "syr"
    )
}

/// The `dir` attribute for a text of language `lang`: `auto` (by its first strong character)
/// when the language is unknown.
fn dir(lang: &str) -> &'static str {
    if is_rtl(lang) {
        "rtl"
    } else if lang.is_empty() || lang == "und" {
        "auto"
    } else {
        "ltr"
    }
}

/// HTML-escaped text.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // controls (but tab and newline) would make the file invalid HTML
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Counts over every labelled record.
#[derive(Default)]
struct Stats {
    records: u64,
    by_lang: BTreeMap<String, u64>,
    unreliable: u64,
    not_listed: u64,
    flagged: BTreeMap<String, u64>,
    flagged_by_lang: BTreeMap<(String, String), u64>,
    any_flagged: u64,
    hist: BTreeMap<String, [u64; BINS]>,
    matched: BTreeMap<String, u64>,
}

impl Stats {
    fn visit(&mut self, r: &serde_json::Value) {
        self.records += 1;
        let lang = r["lang"].as_str().unwrap_or("und").to_owned();
        if r["lang_reliable"] == false {
            self.unreliable += 1;
        }
        if r["lang_listed"] == false {
            self.not_listed += 1;
        }
        let mut any = false;
        for l in r["labels"].as_array().into_iter().flatten() {
            let (Some(name), Some(score)) = (l["label"].as_str(), l["score"].as_f64()) else {
                continue;
            };
            let bin = ((score.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1);
            self.hist.entry(name.to_owned()).or_insert([0; BINS])[bin] += 1;
            if l["flagged"] == true {
                any = true;
                *self.flagged.entry(name.to_owned()).or_default() += 1;
                *self
                    .flagged_by_lang
                    .entry((lang.clone(), name.to_owned()))
                    .or_default() += 1;
            }
        }
        if any {
            self.any_flagged += 1;
        }
        for m in r["matches"].as_array().into_iter().flatten() {
            let key = format!(
                "{} ({})",
                m["bank"].as_str().unwrap_or("?"),
                m["method"].as_str().unwrap_or("?")
            );
            *self.matched.entry(key).or_default() += 1;
        }
        *self.by_lang.entry(lang).or_default() += 1;
    }
}

/// Colours of the labels' bars, in taxonomy order.
const PALETTE: [&str; 8] = [
    "#c0392b", "#8e44ad", "#d35400", "#2471a3", "#138d75", "#7d6608", "#6c3483", "#1e8449",
];

/// A horizontal bar chart: one bar per `(name, count)`, scaled to the largest.
fn bar_chart(id: &str, title: &str, bars: &[(String, u64, &str)]) -> String {
    let row = 22;
    let (left, width) = (150, 430);
    let height = bars.len() * row + 10;
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let mut s = format!(
        "<svg id=\"{id}\" class=\"chart\" role=\"img\" aria-label=\"{t}\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{t}</title>",
        t = esc(title),
        w = left + width + 70,
    );
    for (i, (name, count, colour)) in bars.iter().enumerate() {
        let y = i * row + 5;
        let w = ((*count as f64 / max as f64) * width as f64)
            .round()
            .max(1.0);
        let _ = write!(
            s,
            "<g class=\"bar\"><text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{n}</text><rect x=\"{left}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{colour}\"><title>{n}: {count}</title></rect><text x=\"{vx}\" y=\"{ty}\">{count}</text></g>",
            tx = left - 6,
            ty = y + 15,
            n = esc(name),
            h = row - 6,
            vx = left as f64 + w + 5.0,
        );
    }
    s.push_str("</svg>");
    s
}

/// A label's score histogram (log-scaled counts) with its threshold marked.
fn histogram(label: &str, bins: &[u64; BINS], threshold: f32, colour: &str) -> String {
    let (w, h, pad) = (300.0, 110.0, 24.0);
    let max = bins.iter().copied().max().unwrap_or(0).max(1) as f64;
    let scale = |c: u64| {
        if c == 0 {
            0.0
        } else {
            ((1.0 + c as f64).ln() / (1.0 + max).ln()).max(0.03) * h
        }
    };
    let bw = w / BINS as f64;
    let mut s = format!(
        "<svg class=\"hist\" data-label=\"{l}\" role=\"img\" aria-label=\"scores of {l}\" width=\"{sw}\" height=\"{sh}\" viewBox=\"0 0 {sw} {sh}\" xmlns=\"http://www.w3.org/2000/svg\"><title>scores of {l}</title>",
        l = esc(label),
        sw = w + 2.0 * pad,
        sh = h + 2.0 * pad,
    );
    for (i, &c) in bins.iter().enumerate() {
        let bh = scale(c);
        let lo = i as f64 / BINS as f64;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw1:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"><title>{lo:.2} to {hi:.2}: {c} records</title></rect>",
            x = pad + i as f64 * bw,
            y = pad + h - bh,
            bw1 = bw - 1.0,
            hi = lo + 1.0 / BINS as f64,
        );
    }
    let tx = pad + threshold.clamp(0.0, 1.0) as f64 * w;
    let _ = write!(
        s,
        "<line x1=\"{pad}\" y1=\"{b}\" x2=\"{e}\" y2=\"{b}\" stroke=\"#444\"/><line class=\"threshold\" x1=\"{tx:.1}\" y1=\"{t}\" x2=\"{tx:.1}\" y2=\"{b}\" stroke=\"#000\" stroke-dasharray=\"4 3\"><title>threshold {threshold}</title></line><text x=\"{pad}\" y=\"{l}\">0</text><text x=\"{m}\" y=\"{l}\" text-anchor=\"middle\">0.5</text><text x=\"{e}\" y=\"{l}\" text-anchor=\"end\">1</text><text x=\"{tx:.1}\" y=\"{tt}\" text-anchor=\"middle\">threshold {threshold}</text></svg>",
        b = pad + h,
        e = pad + w,
        t = pad - 4.0,
        l = pad + h + 16.0,
        m = pad + w / 2.0,
        tt = pad - 8.0,
    );
    s
}

/// The text of a queue row with its evidence span marked, cut to the span and some context.
fn highlighted(text: &str, (start, end): (usize, usize)) -> String {
    let chars: Vec<char> = text.chars().collect();
    let end = end.min(chars.len());
    let start = start.min(end);
    let from = start.saturating_sub(CONTEXT_CHARS);
    let to = (end + CONTEXT_CHARS).min(chars.len());
    let piece = |a: usize, b: usize| esc(&chars[a..b].iter().collect::<String>());
    let mut s = String::new();
    if from > 0 {
        s.push('…');
    }
    s.push_str(&piece(from, start));
    s.push_str("<mark>");
    if end - start > SPAN_CHARS {
        s.push_str(&piece(start, start + SPAN_CHARS));
        s.push_str("…</mark>");
    } else {
        s.push_str(&piece(start, end));
        s.push_str("</mark>");
    }
    s.push_str(&piece(end, to));
    if to < chars.len() {
        s.push('…');
    }
    s
}

const STYLE: &str = "body{font-family:'DejaVu Sans','Noto Sans',Arial,sans-serif;margin:24px;color:#222;max-width:1100px}\
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}\
.meta{color:#555;font-size:.9em}.tiles{display:flex;gap:12px;flex-wrap:wrap}\
.tile{border:1px solid #ccc;border-radius:6px;padding:8px 14px;min-width:110px}.tile b{display:block;font-size:1.4em}\
svg text{font-size:12px;fill:#222}.hists{display:flex;flex-wrap:wrap;gap:8px}.hists figure{margin:0}\
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}\
th{background:#f4f4f4}td.n{text-align:right}.item{border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:10px 0}\
.item .head{font-size:.9em;color:#333}.chip{display:inline-block;border-radius:10px;padding:0 8px;margin:0 4px 2px 0;color:#fff;font-size:.85em}\
.text{margin-top:6px;padding:6px 8px;background:#fafafa;border-left:3px solid #bbb;white-space:pre-wrap;line-height:1.5}\
.text[dir=rtl]{border-left:none;border-right:3px solid #bbb;font-size:1.08em}\
mark{background:#ffe066;padding:0 1px}.err td{font-family:monospace}.none{color:#777}\
@media print{.item{break-inside:avoid}}";

/// Builds the report of `labelled` (JSON Lines from `triage label`), reading the top of the
/// queue's texts from `input` (the dump it was labelled from), and writes it to `out`.
pub fn report(
    labelled: &Path,
    input: Records,
    input_name: &str,
    fields: &InputConfig,
    labels: &LabelsConfig,
    options: &ReportOptions,
    out: &mut dyn Write,
) -> Result<ReportSummary> {
    let mut stats = Stats::default();
    let ranked = rank(labelled, labels, &options.queue, &mut |r| stats.visit(r))?;
    let shown = texts(input, input_name, fields, &ranked, highlighted)?;
    // the error records
    let mut errors: Vec<serde_json::Value> = Vec::new();
    let mut error_count = 0u64;
    if let Some(p) = options.errors.as_deref().filter(|p| p.exists()) {
        let read_err = |source| Error::Read {
            input: p.display().to_string(),
            source,
        };
        let f = BufReader::new(std::fs::File::open(p).map_err(read_err)?);
        for line in f.lines() {
            let line = line.map_err(read_err)?;
            if line.trim().is_empty() {
                continue;
            }
            error_count += 1;
            if errors.len() < ERRORS_LISTED {
                errors.push(
                    serde_json::from_str(&line)
                        .unwrap_or_else(|_| serde_json::json!({"error": {"reason": line}})),
                );
            }
        }
    }
    // labels in taxonomy order, then any other the output names
    let mut names: Vec<String> = labels.labels.iter().map(|(n, _)| n.clone()).collect();
    for n in stats.hist.keys() {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let colour = |i: usize| PALETTE[i % PALETTE.len()];

    let mut h = String::new();
    let title = if options.title.is_empty() {
        "triage report".to_owned()
    } else {
        format!("triage report: {}", options.title)
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title><style>{STYLE}</style></head><body>\
<h1>{t}</h1><p class=\"meta\">{labelled} · made {g}</p>",
        t = esc(&title),
        labelled = esc(&labelled.display().to_string()),
        g = esc(&options.generated),
    );
    // at a glance
    let families_repeated = ranked.repeated_families();
    let matched: u64 = stats.matched.values().sum();
    let _ = write!(
        h,
        "<section id=\"overview\"><h2>At a glance</h2><div class=\"tiles\">\
<div class=\"tile\" id=\"n-records\"><b>{}</b>records</div>\
<div class=\"tile\" id=\"n-flagged\"><b>{}</b>with a flagged label</div>\
<div class=\"tile\" id=\"n-queue\"><b>{}</b>to review</div>\
<div class=\"tile\" id=\"n-languages\"><b>{}</b>languages</div>\
<div class=\"tile\" id=\"n-unreliable\"><b>{}</b>language unsure</div>\
<div class=\"tile\" id=\"n-matches\"><b>{matched}</b>bank matches</div>\
<div class=\"tile\" id=\"n-families\"><b>{families_repeated}</b>re-upload families</div>\
<div class=\"tile\" id=\"n-errors\"><b>{error_count}</b>error records</div></div></section>",
        stats.records,
        stats.any_flagged,
        ranked.eligible,
        stats.by_lang.len(),
        stats.unreliable,
    );
    // languages and labels
    let mut langs: Vec<(String, u64, &str)> = stats
        .by_lang
        .iter()
        .map(|(l, n)| (l.clone(), *n, "#5d6d7e"))
        .collect();
    langs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let label_bars: Vec<(String, u64, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.clone(),
                stats.flagged.get(n).copied().unwrap_or(0),
                colour(i),
            )
        })
        .collect();
    let _ = write!(
        h,
        "<section id=\"languages\"><h2>Records per language</h2>{}<p class=\"meta\">{} records' language is unsure (lang_reliable false); {} are outside the language list.</p></section>\
<section id=\"labels\"><h2>Flagged records per label</h2>{}</section>",
        bar_chart("chart-languages", "records per language", &langs),
        stats.unreliable,
        stats.not_listed,
        bar_chart("chart-labels", "flagged records per label", &label_bars),
    );
    // flagged per language and label
    h.push_str("<section id=\"by-language\"><h2>Flagged records per language and label</h2><table id=\"table-by-language\"><tr><th>language</th><th>records</th>");
    for n in &names {
        let _ = write!(h, "<th>{}</th>", esc(n));
    }
    h.push_str("</tr>");
    for (lang, count, _) in &langs {
        let _ = write!(h, "<tr><td>{}</td><td class=\"n\">{count}</td>", esc(lang));
        for n in &names {
            let f = stats
                .flagged_by_lang
                .get(&(lang.clone(), n.clone()))
                .copied()
                .unwrap_or(0);
            let share = f as f64 / (*count).max(1) as f64;
            let _ = write!(
                h,
                "<td class=\"n\" style=\"background:rgba(192,57,43,{:.2})\">{f}</td>",
                (share * 0.8).min(0.8)
            );
        }
        h.push_str("</tr>");
    }
    h.push_str("</table></section>");
    // score distributions
    h.push_str("<section id=\"scores\"><h2>Score distribution per label</h2><p class=\"meta\">Records per score bin (log scale), dashed: the label's threshold (per-language thresholds may differ).</p><div class=\"hists\">");
    for (i, n) in names.iter().enumerate() {
        let bins = stats.hist.get(n).copied().unwrap_or([0; BINS]);
        let _ = write!(
            h,
            "<figure>{}<figcaption>{}</figcaption></figure>",
            histogram(n, &bins, labels.threshold(n), colour(i)),
            esc(n)
        );
    }
    h.push_str("</div></section>");
    // the top of the queue
    let _ = write!(
        h,
        "<section id=\"queue\"><h2>Review first</h2><p class=\"meta\">The {} records of highest priority of {} to review (severity x score, bank matches, family size; `triage queue` writes them all as CSV). The evidence span is highlighted.</p>",
        ranked.len(),
        ranked.eligible,
    );
    if ranked.len() == 0 {
        h.push_str("<p class=\"none\">Nothing flagged and nothing matched.</p>");
    }
    for (i, r) in ranked.rows(labels, &options.queue).enumerate() {
        let r = r?;
        queue_item(&mut h, i + 1, &r, ranked.size(&r), &names, &shown);
    }
    h.push_str("</section>");
    // errors
    let _ = write!(
        h,
        "<section id=\"errors\"><h2>Error records ({error_count})</h2>"
    );
    if errors.is_empty() {
        h.push_str("<p class=\"none\">No error records.</p>");
    } else {
        h.push_str("<table id=\"table-errors\" class=\"err\"><tr><th>file</th><th>line</th><th>id</th><th>kind</th><th>field</th><th>reason</th></tr>");
        for e in &errors {
            let s = |v: &serde_json::Value| match v {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => esc(s),
                v => esc(&v.to_string()),
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                s(&e["file"]),
                s(&e["line"]),
                s(&e["id"]),
                s(&e["error"]["kind"]),
                s(&e["error"]["field"]),
                s(&e["error"]["reason"]),
            );
        }
        h.push_str("</table>");
        if error_count as usize > errors.len() {
            let _ = write!(
                h,
                "<p class=\"meta\">The first {} of {error_count}; all are in {}.</p>",
                errors.len(),
                esc(&options
                    .errors
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default())
            );
        }
    }
    h.push_str("</section>");
    provenance(&mut h, options.manifest.as_ref());
    h.push_str("</body></html>\n");
    out.write_all(h.as_bytes()).map_err(|source| Error::Write {
        output: "the report".into(),
        source,
    })?;
    Ok(ReportSummary {
        records: stats.records,
        queue_rows: ranked.len() as u64,
        errors: error_count,
    })
}

fn queue_item(
    h: &mut String,
    rank: usize,
    r: &Row,
    family_size: u64,
    names: &[String],
    shown: &Texts,
) {
    let _ = write!(
        h,
        "<div class=\"item\" data-rank=\"{rank}\" data-id=\"{id}\" data-lang=\"{lang}\"><div class=\"head\"><b>#{rank}</b> · priority {p:.3} · id <code>{id}</code> · record {pos} · <span class=\"lang\">{lang}</span> · ",
        id = esc(&r.id),
        p = r.priority,
        pos = r.position,
        lang = esc(&r.lang),
    );
    for (l, s) in &r.flagged {
        let c = names
            .iter()
            .position(|n| n == l)
            .map_or("#555", |i| PALETTE[i % PALETTE.len()]);
        let _ = write!(
            h,
            "<span class=\"chip\" style=\"background:{c}\">{} {s:.3}</span>",
            esc(l)
        );
    }
    if !r.matches.is_empty() {
        let _ = write!(h, " · matches <code>{}</code>", esc(&r.matches.join(", ")));
    }
    if let Some(f) = &r.family {
        let _ = write!(h, " · family <code>{}</code> ({family_size})", esc(f));
    }
    h.push_str("</div>");
    match shown.get(r.position) {
        Some(t) => {
            let _ = write!(
                h,
                "<div class=\"text\" lang=\"{l}\" dir=\"{d}\">{t}</div>",
                l = esc(&r.lang),
                d = dir(&r.lang)
            );
        }
        None => h.push_str("<div class=\"text none\">(text not found in the input)</div>"),
    }
    h.push_str("</div>");
}

/// The run's provenance, from its manifest.
fn provenance(h: &mut String, m: Option<&serde_json::Value>) {
    h.push_str("<section id=\"provenance\"><h2>Provenance</h2>");
    let Some(m) = m else {
        h.push_str("<p class=\"none\">No manifest next to the labelled output.</p></section>");
        return;
    };
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => esc(s),
        serde_json::Value::Null => String::new(),
        v => esc(&v.to_string()),
    };
    let _ = write!(
        h,
        "<table id=\"table-provenance\"><tr><th>triage</th><td>{} ({})</td></tr><tr><th>command</th><td><code>{}</code></td></tr>\
<tr><th>run</th><td>{} to {} on {}{}</td></tr><tr><th>model</th><td>{} · weights sha256 {}</td></tr><tr><th>configuration</th><td>{}</td></tr>",
        s(&m["triage_version"]),
        s(&m["triage_commit"]),
        esc(&m["command_line"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()),
        s(&m["started"]),
        s(&m["finished"]),
        s(&m["host"]),
        if m["resumed"] == true { " (resumed)" } else { "" },
        s(&m["model"]["id"]),
        s(&m["model"]["weights_sha256"]),
        s(&m["config_id"]),
    );
    for f in m["files"].as_array().into_iter().flatten() {
        if f["role"] == "input" {
            let _ = write!(
                h,
                "<tr><th>input</th><td>{} · {} bytes · sha256 {}</td></tr>",
                s(&f["path"]),
                s(&f["bytes"]),
                s(&f["sha256"])
            );
        }
    }
    h.push_str("</table><p class=\"meta\">`triage verify` on the manifest re-hashes every file it names.</p></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_the_span_marked_with_context_cut() {
        let t = "a<b>&\"c\" ".repeat(100) + "SPAN" + &"z".repeat(500);
        let start = t.chars().count() - 504;
        let h = highlighted(&t, (start, start + 4));
        assert!(h.starts_with('…') && h.ends_with('…'), "{h}");
        assert!(h.contains("<mark>SPAN</mark>"));
        assert!(!h.contains("<b>") && h.contains("&lt;b&gt;&amp;&quot;c&quot;"));
        // spans past the end of the text are cut to it
        assert_eq!(highlighted("abc", (1, 99)), "a<mark>bc</mark>");
        assert_eq!(esc("x\u{0}y"), "x\u{fffd}y");
    }

    #[test]
    fn right_to_left_languages() {
        assert_eq!(dir("ar"), "rtl");
        assert_eq!(dir("ps"), "rtl");
        assert_eq!(dir("en"), "ltr");
        assert_eq!(dir("und"), "auto");
    }
}
