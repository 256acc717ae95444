//! What the spec's integration tests share: the problems a document fails to load with, as
//! a person reads them.

use shipshape_spec::load_str;

/// The first lines of a valid App document, up to its one process's `script`: the tests
/// add the process's other fields and the rest of `spec` after it.
#[allow(dead_code)]
pub const HEAD: &str = r#"apiVersion: shipshape/v1alpha1
kind: App
metadata:
  name: demo
spec:
  source:
    repository: /srv/git/demo
    commit: 3f2a1c9e0b7d4c6a8e1f2a3b4c5d6e7f8a9b0c1d
  releases:
    root: /srv/demo
  processes:
    - name: demo-web
      script: server.js
"#;

/// Every problem loading `text` (as `apps/demo.yaml`) reports, as printed; panics if it loads.
pub fn errors(text: &str) -> Vec<String> {
    load_str(text, "apps/demo.yaml")
        .unwrap_err()
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect()
}
