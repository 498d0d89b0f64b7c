//! The metric table of `docs/metrics.md` and a parsed `/metrics` scrape, for the scrape
//! tests (`services/cli/tests/metrics_scrape.rs`, `services/router/tests/metrics_scrape.rs`).
//! The table is read at test time, so the document and the tests cannot drift apart.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `docs/metrics.md`, from the repository root.
pub const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");

/// One row of the "Every metric" table.
#[derive(Debug, Clone)]
pub struct Documented {
    /// As a scrape shows it: `_total` for counters, the base name for histograms.
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// `all` or the binaries that export it.
    pub exported_by: String,
}

impl Documented {
    /// Whether the process `binary` (e.g. `ferry-router`) exports it.
    pub fn exported_by(&self, binary: &str) -> bool {
        self.exported_by == "all" || self.exported_by.contains(&format!("`{binary}`"))
    }
}

/// The heading of the section holding the table.
pub const SECTION: &str = "## Every metric";

/// Every row of the table in the "Every metric" section of `docs/metrics.md` (rows whose
/// first cell is a backticked `ferry_*` name). Panics when there are none, a row is
/// malformed or a name is listed twice.
pub fn documented() -> Vec<Documented> {
    let text = std::fs::read_to_string(DOC).unwrap_or_else(|e| panic!("cannot read {DOC}: {e}"));
    let rows: Vec<Documented> = text
        .lines()
        .skip_while(|l| l.trim_end() != SECTION)
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| `ferry_"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            assert!(cells.len() >= 6, "{DOC}: malformed row {line:?}");
            let kind = cells[2].to_owned();
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind.as_str()),
                "{DOC}: unknown type {kind:?} in {line:?}"
            );
            Documented {
                name: cells[1].trim_matches('`').to_owned(),
                kind,
                exported_by: cells[4].to_owned(),
            }
        })
        .collect();
    assert!(
        rows.len() >= 10,
        "{DOC}: found only {} metric rows",
        rows.len()
    );
    for (i, row) in rows.iter().enumerate() {
        assert!(
            !rows[..i].iter().any(|r| r.name == row.name),
            "{DOC}: {} is listed twice",
            row.name
        );
    }
    rows
}

/// A parsed scrape: family types (`# TYPE`) and samples.
#[derive(Debug, Default)]
pub struct Scrape {
    pub text: String,
    /// Family name → type.
    pub families: HashMap<String, String>,
    /// Sample name → (labels as written, value).
    pub samples: HashMap<String, Vec<(String, f64)>>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut s = Scrape {
            text: text.to_owned(),
            ..Scrape::default()
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    s.families.insert(name.to_owned(), kind.to_owned());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (name, labels, rest) = match line.find('{') {
                Some(open) => {
                    let close = line.rfind('}').expect("labels end with }");
                    (&line[..open], &line[open + 1..close], &line[close + 1..])
                }
                None => {
                    let sp = line.find(' ').expect("sample has a value");
                    (&line[..sp], "", &line[sp..])
                }
            };
            let value = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("sample without a value: {line:?}"));
            s.samples
                .entry(name.to_owned())
                .or_default()
                .push((labels.to_owned(), value));
        }
        s
    }

    /// Why `doc` is not in this scrape as documented, if it is not.
    pub fn check(&self, doc: &Documented) -> Option<String> {
        let (family, sample) = match doc.kind.as_str() {
            "counter" => match doc.name.strip_suffix("_total") {
                Some(base) => (base.to_owned(), doc.name.clone()),
                None => return Some(format!("{}: a counter's name must end in _total", doc.name)),
            },
            "histogram" => (doc.name.clone(), format!("{}_count", doc.name)),
            _ => (doc.name.clone(), doc.name.clone()),
        };
        match self.families.get(&family) {
            None => Some(format!("{} ({}): not in the scrape", doc.name, doc.kind)),
            Some(kind) if *kind != doc.kind => Some(format!(
                "{}: documented as {}, exported as {kind}",
                doc.name, doc.kind
            )),
            Some(_) if !self.samples.contains_key(&sample) => {
                Some(format!("{}: family without a {sample} sample", doc.name))
            }
            Some(_) => None,
        }
    }

    /// The value of the sample `name{labels}` (labels exactly as exported, in order).
    pub fn value(&self, name: &str, labels: &str) -> Option<f64> {
        self.samples
            .get(name)?
            .iter()
            .find(|(l, _)| l == labels)
            .map(|(_, v)| *v)
    }

    /// The sum over the samples of `name` whose labels contain every one of `having`
    /// (each written `key="value"`).
    pub fn sum(&self, name: &str, having: &[&str]) -> f64 {
        self.samples
            .get(name)
            .map(|all| {
                all.iter()
                    .filter(|(l, _)| having.iter().all(|h| l.split(',').any(|pair| pair == *h)))
                    .map(|(_, v)| v)
                    .sum()
            })
            .unwrap_or(0.0)
    }
}

/// `GET /metrics` over plain HTTP/1.1: the body, after checking status and content type.
pub async fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(
        body.trim_end().ends_with("# EOF"),
        "truncated scrape: {body}"
    );
    Ok(body.to_owned())
}
