//! The adapter → base model map behind `X-Gateway-Base-Model-Name` (GIE's
//! `base-model-to-header`, gie-facts §7), read once from `--base-model-map`.
//!
//! The file is YAML, one or more documents (`---`), each either
//! - a plain map, `adapter: base`, or
//! - GIE's ConfigMap, `kind: ConfigMap` with `data.baseModel: <name>` and
//!   `data.adapters: <YAML list>` (a string holding the list, as ConfigMap data must be,
//!   or a list written in place).
//!
//! Every base model named maps to itself too, so a route can match requests for the base
//! model and for its adapters on one header. An adapter given two different bases is an
//! error. Every error names the file, the document and the field; loading is the only
//! time this module can fail.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

/// Why a base-model map could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BaseModelError {
    #[error("cannot read the base-model map {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not YAML: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: document {document}: {field}: {message}")]
    Invalid {
        file: String,
        /// 1-based.
        document: usize,
        field: String,
        message: String,
    },
}

/// Model name → base model name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BaseModels {
    bases: HashMap<String, String>,
}

impl BaseModels {
    /// Reads and validates the map at `path`.
    pub fn load(path: &Path) -> Result<BaseModels, BaseModelError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| BaseModelError::Read {
            file: file.clone(),
            source,
        })?;
        BaseModels::from_yaml(&text, &file)
    }

    /// Parses `text`; `file` names it in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<BaseModels, BaseModelError> {
        let documents: Vec<Value> =
            serde_saphyr::from_str_multiple(text).map_err(|e| BaseModelError::Syntax {
                file: file.to_string(),
                message: e.to_string(),
            })?;
        let mut models = BaseModels::default();
        for (i, doc) in documents.iter().enumerate() {
            let mut reader = Document {
                file,
                number: i + 1,
                models: &mut models,
            };
            reader.read(doc)?;
        }
        Ok(models)
    }

    /// The base model of `model` (itself when it is a base model).
    pub fn base_of(&self, model: &str) -> Option<&str> {
        self.bases.get(model).map(String::as_str)
    }

    /// How many model names the map knows.
    pub fn len(&self) -> usize {
        self.bases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }
}

/// One document being read into the map.
struct Document<'a> {
    file: &'a str,
    number: usize,
    models: &'a mut BaseModels,
}

impl Document<'_> {
    fn invalid(&self, field: &str, message: impl Into<String>) -> BaseModelError {
        BaseModelError::Invalid {
            file: self.file.to_string(),
            document: self.number,
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn read(&mut self, doc: &Value) -> Result<(), BaseModelError> {
        let map = match doc {
            Value::Null => return Ok(()),
            Value::Object(map) => map,
            _ => return Err(self.invalid(".", "must be a map (`adapter: base`) or a ConfigMap")),
        };
        match map.get("kind") {
            None => {}
            Some(Value::String(kind)) if kind == "ConfigMap" => return self.config_map(doc),
            Some(other) => {
                return Err(self.invalid(
                    "kind",
                    format!("only ConfigMap documents are understood, not {other}"),
                ));
            }
        }
        for (adapter, base) in map {
            let Value::String(base) = base else {
                return Err(self.invalid(adapter, "the base model must be a string"));
            };
            self.add(adapter, adapter, base)?;
        }
        Ok(())
    }

    fn config_map(&mut self, doc: &Value) -> Result<(), BaseModelError> {
        let Some(data) = doc.get("data").and_then(Value::as_object) else {
            return Err(self.invalid("data", "a ConfigMap needs a `data` map"));
        };
        let base = match data.get("baseModel") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            _ => return Err(self.invalid("data.baseModel", "must be a non-empty string")),
        };
        let adapters = match data.get("adapters") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(text)) => self.adapter_list(text)?,
            Some(Value::Array(items)) => items.clone(),
            Some(_) => return Err(self.invalid("data.adapters", "must be a YAML list")),
        };
        self.add("data.baseModel", &base, &base)?;
        for (i, adapter) in adapters.iter().enumerate() {
            let field = format!("data.adapters[{i}]");
            match adapter {
                Value::String(name) if !name.trim().is_empty() => {
                    self.add(&field, name.trim(), &base)?;
                }
                _ => return Err(self.invalid(&field, "must be a non-empty string")),
            }
        }
        Ok(())
    }

    /// `adapters` as ConfigMap data carries it: a string holding a YAML list.
    fn adapter_list(&self, text: &str) -> Result<Vec<Value>, BaseModelError> {
        match serde_saphyr::from_str::<Value>(text) {
            Ok(Value::Array(items)) => Ok(items),
            Ok(Value::Null) => Ok(Vec::new()),
            Ok(_) => Err(self.invalid("data.adapters", "must hold a YAML list (`- name`)")),
            Err(e) => Err(self.invalid("data.adapters", format!("not a YAML list: {e}"))),
        }
    }

    fn add(&mut self, field: &str, model: &str, base: &str) -> Result<(), BaseModelError> {
        if model.is_empty() || base.is_empty() {
            return Err(self.invalid(field, "model names must not be empty"));
        }
        // A base model may also be named as its own base (`llama: llama`).
        if let Some(known) = self.models.bases.get(model)
            && known != base
        {
            return Err(self.invalid(
                field,
                format!("`{model}` already has base model `{known}`, cannot also have `{base}`"),
            ));
        }
        self.models
            .bases
            .insert(model.to_string(), base.to_string());
        if model != base {
            self.add(field, base, base)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "base_model_tests.rs"]
mod tests;
