//! What the spec's integration tests share: the problems a document fails to load with, as
//! a person reads them.

use shipshape_spec::load_str;

/// Every problem loading `text` (as `apps/demo.yaml`) reports, as printed; panics if it loads.
pub fn errors(text: &str) -> Vec<String> {
    load_str(text, "apps/demo.yaml")
        .unwrap_err()
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect()
}
