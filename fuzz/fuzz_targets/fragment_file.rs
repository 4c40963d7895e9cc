//! `customer_fragments.json` on arbitrary text: the whole file read as the CLI reads it
//! (and written back as it writes it), and read entry by entry as the gateway loads it,
//! with every check that needs no HSM. Nothing panics; a file that reads writes out to
//! text that reads back the same; sorting the entries keeps each id once.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/fragments/record.rs"]
mod record;

use record::{FragmentFile, Checked};

fuzz_target!(|data: &[u8]| {
    // The gateway reads the file with `read_to_string`: it is UTF-8 or unreadable.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = serde_json::from_str::<FragmentFile>(text) {
        let written = serde_json::to_string_pretty(&file).expect("a read file writes");
        let again: FragmentFile = serde_json::from_str(&written).expect("a written file reads");
        assert_eq!(
            serde_json::to_string_pretty(&again).expect("writes"),
            written,
            "the file changed when written and read again"
        );
        let entries = record::parse_entries(text).expect("a file that reads whole reads by entry");
        assert_eq!(entries.len(), file.customer_fragments.len());
    }
    let Ok(entries) = record::parse_entries(text) else {
        return;
    };
    let count = entries.len();
    let sorted = record::sort_entries(entries);
    assert!(sorted.records.len() + sorted.failed.len() + sorted.anonymous_failures.len() <= count);
    let mut ids = std::collections::BTreeSet::new();
    for rec in &sorted.records {
        assert!(ids.insert(rec.id.clone()), "an id kept twice");
        assert!(!sorted.failed.contains_key(&rec.id), "an id both kept and failed");
        match record::check(rec) {
            Ok(Checked::Standard { seed }) | Ok(Checked::Hmac { seed, .. }) => {
                assert!(seed.len() >= 16);
            }
            Ok(Checked::WrapEncrypt { hmac_label, kek_label }) => {
                assert!(!hmac_label.trim().is_empty() && !kek_label.trim().is_empty());
                for label in [hmac_label, kek_label] {
                    assert!(sorted.labels.contains_key(label), "a label not reserved");
                }
            }
            Err(reason) => assert!(!reason.is_empty()),
        }
    }
});
