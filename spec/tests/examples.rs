//! Generated files and examples stay honest: the checked-in JSON Schema equals what the
//! types generate, and every YAML under `examples/` loads and points editors at the schema.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn the_checked_in_schema_matches_the_types() {
    let path = workspace().join("schemas/app.schema.json");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == shipshape_spec::app_schema_text(),
        "schemas/app.schema.json is out of date with the types in spec/: run hack/update-schemas.sh and commit the result"
    );
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "node_modules") {
                continue;
            }
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_example_document_loads_and_names_the_schema() {
    let root = workspace();
    let mut files = Vec::new();
    yaml_files(&root.join("examples"), &mut files);
    let apps: Vec<&PathBuf> = files
        .iter()
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("kind: App"))
        .collect();
    assert!(
        apps.len() >= 2,
        "expected the PromptHub and quickstart examples, found {files:?}"
    );
    for f in apps {
        let text = std::fs::read_to_string(f).unwrap();
        let first = text.lines().next().unwrap_or("");
        assert!(
            first.starts_with("# yaml-language-server: $schema="),
            "{} must start with a yaml-language-server $schema line",
            f.display()
        );
        let schema_ref = first.trim_start_matches("# yaml-language-server: $schema=");
        let schema = f.parent().unwrap().join(schema_ref);
        assert!(
            schema
                .canonicalize()
                .is_ok_and(|p| p == root.join("schemas/app.schema.json").canonicalize().unwrap()),
            "{}: $schema must point at schemas/app.schema.json, got {schema_ref}",
            f.display()
        );
        let shown = f.strip_prefix(&root).unwrap().display().to_string();
        if let Err(e) = shipshape_spec::load_str(&text, &shown) {
            panic!("{e}");
        }
    }
}

#[test]
fn the_schema_describes_the_document() {
    let schema = shipshape_spec::app_schema();
    let props = &schema["properties"];
    for key in ["apiVersion", "kind", "metadata", "spec"] {
        assert!(props.get(key).is_some(), "schema lacks {key}");
    }
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
    let text = serde_json::to_string(&schema).unwrap();
    assert!(
        text.contains("max_memory_restart"),
        "pm2 field names are kept in processes"
    );
    assert!(
        text.contains(
            shipshape_spec::duration::DURATION_PATTERN
                .replace('\\', "\\\\")
                .as_str()
        )
    );
}

#[test]
fn the_schema_says_a_check_has_exactly_one_kind() {
    let schema = shipshape_spec::app_schema();
    let check = &schema["$defs"]["Check"];
    let kinds: Vec<&serde_json::Value> = check["oneOf"]
        .as_array()
        .expect("a check is one of its kinds")
        .iter()
        .map(|kind| &kind["required"])
        .collect();
    assert_eq!(
        kinds,
        [
            &serde_json::json!(["http"]),
            &serde_json::json!(["prometheus"]),
            &serde_json::json!(["resources"])
        ]
    );
    assert_eq!(check["required"], serde_json::json!(["name"]));
    // No other key, the kinds' included (`additionalProperties` would refuse them).
    assert_eq!(check["unevaluatedProperties"], serde_json::json!(false));
    assert!(check.get("additionalProperties").is_none());
}
