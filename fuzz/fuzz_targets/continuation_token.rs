//! Continuation tokens a client hands back in `x-ms-continuation`
//! (`dps_storage::ContinuationToken::parse`, the only way a listing resumes).
//!
//! Invariants: no panic; an accepted token is handed back as sent (trimmed),
//! re-parses to the same token, and is short; a refusal quotes at most 512
//! characters of the token.
#![no_main]

use dps_storage::{ContinuationToken, PageRequest, StoreError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ContinuationToken::parse(text) {
        Ok(token) => {
            assert_eq!(token.as_str(), text.trim());
            assert_eq!(token.to_string(), token.as_str());
            assert!(token.as_str().len() <= 512);
            let again = ContinuationToken::parse(token.as_str()).expect("a token re-parses");
            assert_eq!(again, token);
            let page = PageRequest::after(token, usize::MAX);
            assert_eq!(page.effective_size(), dps_storage::MAX_PAGE_SIZE);
        }
        Err(StoreError::InvalidContinuationToken { token, .. }) => {
            assert!(token.chars().count() <= 512, "the refusal quotes too much");
        }
        Err(other) => panic!("unexpected error kind: {other:?}"),
    }
});
