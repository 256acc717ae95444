//! Bad input at scale: the loader and validator never panic, whatever they are given —
//! arbitrary text, and valid documents with random edits — and every refusal is located.
//! Property-based (proptest), bounded so it runs in CI on every change.

use proptest::prelude::*;

const VALID: &str = include_str!("../../examples/prompthub/prompthub.yaml");

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("SHIPSHAPE_FUZZ_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(2000),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = shipshape_spec::load_str(&text, "fuzz.yaml");
        let _ = shipshape_spec::load::peek_name(&text);
    }

    #[test]
    fn arbitrary_yaml_shapes_never_panic(text in "([a-zA-Z]{1,8}: ?(\\[|\\{|-|[0-9]{1,5}|\"[^\"]{0,8}\"|[a-z]{0,6})\n {0,6}){0,30}") {
        let _ = shipshape_spec::load_str(&text, "fuzz.yaml");
    }

    #[test]
    fn edited_valid_documents_never_panic_and_refusals_are_located(
        cut in 0usize..VALID.len(),
        len in 0usize..40,
        insert in "[ -~\n]{0,30}",
    ) {
        let mut start = cut;
        while !VALID.is_char_boundary(start) { start -= 1; }
        let mut end = (start + len).min(VALID.len());
        while !VALID.is_char_boundary(end) { end -= 1; }
        let text = format!("{}{}{}", &VALID[..start], insert, &VALID[end..]);
        if let Err(e) = shipshape_spec::load_str(&text, "apps/prompthub.yaml") {
            prop_assert!(!e.problems.is_empty());
            for p in &e.problems {
                prop_assert_eq!(&p.file, "apps/prompthub.yaml");
                prop_assert!(!p.message.is_empty());
            }
        }
    }
}
