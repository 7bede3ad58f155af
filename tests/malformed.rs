//! The malformed-capture corpus (testdata/pcaps/malformed, written by
//! scripts/malformed-pcaps.py): each file is read with `-r --print`, and
//! what the exporter counts must equal the file's manifest (`FILE.json`:
//! frames read, TCP segments, decode errors by reason), or, for a broken
//! file header, the exporter must refuse it with a clear message. Where the
//! file's records all frame, tshark must read as many frames as we do.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{promtool_check, samples, sum_metric};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pcaps/malformed");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata/pcaps/malformed")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "the corpus is there: {files:?}");
    files
}

fn manifest(file: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(format!("{}.json", file.display()))
        .unwrap_or_else(|e| panic!("{}.json: {e}", file.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_malformed_capture_is_counted_by_reason_or_refused_with_a_clear_error() {
    for file in corpus() {
        let want = manifest(&file);
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
            .arg("-r")
            .arg(&file)
            .arg("--print")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if let Some(error) = want["error"].as_str() {
            assert!(!out.status.success(), "{name}: a broken header must fail");
            assert!(
                out.stdout.is_empty(),
                "{name}: no metrics for a broken file"
            );
            assert!(stderr.contains(error), "{name}: {stderr:?} lacks {error:?}");
            assert!(!stderr.contains("panicked"), "{name}: {stderr}");
            continue;
        }
        assert!(out.status.success(), "{name}: {stderr}");
        let text = String::from_utf8(out.stdout).unwrap();
        promtool_check(&text, &name);
        assert_eq!(
            sum_metric(&text, "tcp_exporter_capture_packets_total"),
            want["frames_read"].as_f64().unwrap(),
            "{name}: frames read"
        );
        assert_eq!(
            sum_metric(&text, "tcp_packets_total"),
            want["tcp_segments"].as_f64().unwrap(),
            "{name}: TCP segments"
        );
        let got: BTreeMap<String, f64> = samples(&text)
            .into_iter()
            .filter(|s| s.name == "tcp_exporter_decode_errors_total" && s.value > 0.0)
            .map(|s| (s.label("reason").unwrap().to_string(), s.value))
            .collect();
        let expected: BTreeMap<String, f64> = want["decode_errors"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
            .collect();
        assert_eq!(got, expected, "{name}: decode errors by reason");
        // A record-level stop says so on stderr, once.
        let stops = got.contains_key("truncated_record")
            || expected
                .get("bad_record_length")
                .is_some_and(|_| name.starts_with("huge"));
        assert_eq!(
            stderr.matches("the rest of the file is not read").count(),
            usize::from(stops),
            "{name}: {stderr}"
        );
        // tshark reads the records whose lengths disagree (we skip them);
        // where none do, it reads what we read.
        if !got.contains_key("bad_record_length") {
            // tshark exits non-zero on a file cut short, after its frames.
            let tshark = std::process::Command::new("tshark")
                .args([
                    "-r",
                    file.to_str().unwrap(),
                    "-T",
                    "fields",
                    "-e",
                    "frame.number",
                ])
                .output()
                .expect("run tshark (make test-deps installs it)");
            let frames = String::from_utf8_lossy(&tshark.stdout).lines().count();
            assert_eq!(
                frames as f64,
                want["frames_read"].as_f64().unwrap(),
                "{name}: tshark reads as many frames"
            );
        }
    }
}
