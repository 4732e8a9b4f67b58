//! Unit tests of the base-model map: both file shapes, several documents, and errors
//! that name the file, document and field.

use super::*;

fn load(text: &str) -> Result<BaseModels, BaseModelError> {
    BaseModels::from_yaml(text, "map.yaml")
}

fn check(models: &BaseModels, want: &[(&str, Option<&str>)]) {
    for (model, base) in want {
        assert_eq!(models.base_of(model), *base, "{model}");
    }
}

fn error(text: &str) -> String {
    load(text).expect_err("must be rejected").to_string()
}

#[test]
fn plain_map() {
    let m = load("sql-lora: llama-3\nchat-lora: llama-3\ncode: qwen\n").unwrap();
    check(
        &m,
        &[
            ("sql-lora", Some("llama-3")),
            ("chat-lora", Some("llama-3")),
            ("llama-3", Some("llama-3")),
            ("code", Some("qwen")),
            ("qwen", Some("qwen")),
            ("other", None),
        ],
    );
    assert_eq!(m.len(), 5);
}

#[test]
fn gie_config_maps_in_several_documents() {
    let text = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: llama-adapters
  labels:
    inference.networking.k8s.io/bbr-managed: "true"
data:
  baseModel: meta-llama/Llama-3.1-8B-Instruct
  adapters: |
    - food-review-1
    - food-review-2
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: qwen
data:
  baseModel: Qwen/Qwen2.5-7B
  adapters:
    - sql
---
kind: ConfigMap
data:
  baseModel: solo
---
extra-lora: solo
"#;
    let m = load(text).unwrap();
    let llama = Some("meta-llama/Llama-3.1-8B-Instruct");
    check(
        &m,
        &[
            ("food-review-1", llama),
            ("food-review-2", llama),
            ("meta-llama/Llama-3.1-8B-Instruct", llama),
            ("sql", Some("Qwen/Qwen2.5-7B")),
            ("solo", Some("solo")),
            ("extra-lora", Some("solo")),
        ],
    );
}

#[test]
fn empty_files_and_documents_are_empty_maps() {
    assert!(load("").unwrap().is_empty());
    assert!(load("---\n---\n").unwrap().is_empty());
    assert!(
        load("kind: ConfigMap\ndata:\n  baseModel: b\n  adapters: \"\"\n")
            .unwrap()
            .len()
            == 1
    );
}

#[test]
fn errors_name_the_file_document_and_field() {
    let cases = [
        (
            "a: [b]\n",
            "map.yaml: document 1: a: the base model must be a string",
        ),
        ("- a\n", "map.yaml: document 1: .: must be a map"),
        (
            "kind: Secret\n",
            "map.yaml: document 1: kind: only ConfigMap",
        ),
        (
            "a: b\n---\nkind: ConfigMap\n",
            "map.yaml: document 2: data: a ConfigMap needs",
        ),
        (
            "kind: ConfigMap\ndata:\n  adapters: \"- x\"\n",
            "map.yaml: document 1: data.baseModel: must be a non-empty string",
        ),
        (
            "kind: ConfigMap\ndata:\n  baseModel: b\n  adapters: just-a-name\n",
            "map.yaml: document 1: data.adapters: must hold a YAML list",
        ),
        (
            "kind: ConfigMap\ndata:\n  baseModel: b\n  adapters: \"- ok\\n- [x]\"\n",
            "map.yaml: document 1: data.adapters[1]: must be a non-empty string",
        ),
        (
            "a: b\n---\na: c\n",
            "map.yaml: document 2: a: `a` already has base model `b`, cannot also have `c`",
        ),
        (
            "a: b\nb: c\n",
            "map.yaml: document 1: b: `b` already has base model `b`",
        ),
        (
            "a: \"\"\n",
            "map.yaml: document 1: a: model names must not be empty",
        ),
        ("a: [unclosed\n", "map.yaml: not YAML"),
    ];
    for (text, want) in cases {
        let got = error(text);
        assert!(got.starts_with(want), "{text:?}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn load_names_a_missing_file() {
    let err = BaseModels::load(Path::new("/nonexistent/bbr-map.yaml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read the base-model map /nonexistent/bbr-map.yaml:"),
        "{err}"
    );
}
