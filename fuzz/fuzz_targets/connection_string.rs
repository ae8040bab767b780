//! IoT hub connection strings as an operator or a tenant configures them
//! (`dps_hub::ConnectionString::parse`).
//!
//! Invariants: no panic; an accepted string prints (`Display`) to a string
//! that parses to an equal value; the key never appears in `Debug` output
//! or in an error message (keys never reach logs).
#![no_main]

use dps_hub::ConnectionString;
use libfuzzer_sys::fuzz_target;

/// The values of every `SharedAccessKey=` part long enough to be recognised
/// and that appear nowhere else in `text` (so finding one proves a leak).
fn distinctive_keys(text: &str) -> Vec<&str> {
    let parts: Vec<&str> = text.split(';').collect();
    parts
        .iter()
        .enumerate()
        .filter_map(|(i, part)| {
            let (name, value) = part.trim().split_once('=')?;
            let value = value.trim();
            if !name.eq_ignore_ascii_case("SharedAccessKey") || value.len() < 12 {
                return None;
            }
            let elsewhere = parts
                .iter()
                .enumerate()
                .any(|(j, other)| j != i && other.contains(value));
            let in_own_name = name.contains(value);
            (!elsewhere && !in_own_name).then_some(value)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let keys = distinctive_keys(text);
    match ConnectionString::parse(text) {
        Ok(parsed) => {
            let printed = parsed.to_string();
            let again =
                ConnectionString::parse(&printed).expect("a printed connection string parses");
            assert_eq!(again, parsed, "Display does not round-trip: {printed:?}");
            assert_eq!(again.to_string(), printed);
            let debug = format!("{parsed:?}");
            for key in &keys {
                assert!(!debug.contains(key), "Debug shows the key");
            }
            assert!(!parsed.host_name().is_empty() && !parsed.key_name().is_empty());
            let rebuilt = ConnectionString::new(
                parsed.host_name(),
                parsed.key_name(),
                &parsed.key().to_base64(),
            )
            .expect("parts of a parsed string build one");
            assert_eq!(rebuilt.key(), parsed.key());
        }
        Err(err) => {
            let shown = format!("{err} {err:?}");
            for key in &keys {
                assert!(!shown.contains(key), "an error shows the key: {shown}");
            }
        }
    }
});
