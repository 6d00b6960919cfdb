#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_twiml::{Verb, parse_messaging};

fuzz_target!(|data: &[u8]| {
    // Must never panic; on success the documented limits must hold.
    if let Ok(response) = parse_messaging(data) {
        assert!(data.len() <= tern_twiml::MAX_INPUT_BYTES);
        assert!(response.verbs.len() <= tern_twiml::MAX_VERBS);
        for verb in &response.verbs {
            match verb {
                Verb::Message(m) => assert!(m.media.len() <= tern_twiml::MAX_MEDIA),
                Verb::Redirect { url, .. } => assert!(!url.is_empty()),
            }
        }
    }
});
