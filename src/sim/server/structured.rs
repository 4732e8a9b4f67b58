//! Structured output: JSON text for `response_format` (`json_object`, or shaped by a
//! `json_schema`) and for tool calls (shaped by the function's `parameters`).
//!
//! The generator covers the JSON Schema a client sends in practice: `type` (one or
//! a list), `properties` with `required`, `items`, `enum`, `const`, `anyOf`/`oneOf`
//! (the first branch), local `$ref`s into `$defs`/`definitions`, and `minItems`.
//! Values are seeded picks; words come from the output vocabulary. A text too long
//! for `max_tokens` is generated again at its smallest (required properties only,
//! shortest arrays and strings). Recursion stops at a fixed depth, so no schema
//! makes it unbounded. Nothing here does I/O or panics.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, Value};

/// Schemas nest at most this deep; deeper values are `null`.
const MAX_DEPTH: usize = 8;
/// Array items at most, when the schema sets no `minItems` above it.
const MAX_ITEMS: u64 = 3;

/// JSON text for `schema` (`None`: any object), seeded, with `words` for strings.
/// `small` keeps only what the schema requires.
pub fn generate(schema: Option<&Value>, seed: u64, words: &[String], small: bool) -> String {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        words,
        root: schema,
        small,
    };
    let value = match schema {
        Some(s) => g.value(s, 0),
        None => g.free_object(),
    };
    value.to_string()
}

struct Gen<'a> {
    rng: StdRng,
    words: &'a [String],
    root: Option<&'a Value>,
    small: bool,
}

impl<'a> Gen<'a> {
    fn word(&mut self) -> String {
        if self.words.is_empty() {
            return "word".into();
        }
        let w = &self.words[self.rng.random_range(0..self.words.len())];
        w.trim().to_string()
    }

    fn text(&mut self) -> String {
        let n = if self.small {
            1
        } else {
            self.rng.random_range(1..=4)
        };
        (0..n).map(|_| self.word()).collect::<Vec<_>>().join(" ")
    }

    /// `{"word": "words …", …}`: the shape of `json_object`.
    fn free_object(&mut self) -> Value {
        let n = if self.small {
            1
        } else {
            self.rng.random_range(1..=3)
        };
        let mut map = Map::new();
        for _ in 0..n {
            let key = self.word();
            let value = self.text();
            map.insert(key, Value::String(value));
        }
        Value::Object(map)
    }

    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let path = reference.strip_prefix("#/")?;
        let mut at = self.root?;
        for part in path.split('/') {
            at = at.get(part)?;
        }
        Some(at)
    }

    fn value(&mut self, schema: &'a Value, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        let Some(obj) = schema.as_object() else {
            // `true` or a non-schema: anything goes.
            return Value::String(self.word());
        };
        if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
            return match self.resolve(r) {
                Some(s) => self.value(s, depth + 1),
                None => Value::Null,
            };
        }
        if let Some(c) = obj.get("const") {
            return c.clone();
        }
        if let Some(options) = obj.get("enum").and_then(Value::as_array)
            && !options.is_empty()
        {
            return options[self.rng.random_range(0..options.len())].clone();
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(first) = obj
                .get(key)
                .and_then(Value::as_array)
                .and_then(|a| a.first())
            {
                return self.value(first, depth + 1);
            }
        }
        let kind = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            // A list of types: the first that is not null.
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null"),
            _ if obj.contains_key("properties") => "object",
            _ if obj.contains_key("items") => "array",
            _ => "string",
        };
        match kind {
            "object" => self.object(obj, depth),
            "array" => {
                let min = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0);
                let max = obj
                    .get("maxItems")
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::MAX);
                let n = if self.small {
                    min
                } else {
                    self.rng.random_range(min.max(1)..=MAX_ITEMS.max(min))
                }
                .min(max)
                .min(MAX_ITEMS.max(min).min(64));
                let items = obj.get("items").unwrap_or(&Value::Bool(true));
                Value::Array((0..n).map(|_| self.value(items, depth + 1)).collect())
            }
            "integer" => {
                let lo = obj.get("minimum").and_then(Value::as_i64).unwrap_or(0);
                let hi = obj
                    .get("maximum")
                    .and_then(Value::as_i64)
                    .unwrap_or(lo.saturating_add(100));
                Value::from(if lo < hi {
                    self.rng.random_range(lo..=hi)
                } else {
                    lo
                })
            }
            "number" => {
                let lo = obj.get("minimum").and_then(Value::as_f64).unwrap_or(0.0);
                let hi = obj
                    .get("maximum")
                    .and_then(Value::as_f64)
                    .unwrap_or(lo + 100.0);
                let x = if lo < hi {
                    self.rng.random_range(lo..hi)
                } else {
                    lo
                };
                // Two decimals: short in tokens, still a float.
                serde_json::Number::from_f64((x * 100.0).round() / 100.0)
                    .map_or(Value::Null, Value::Number)
            }
            "boolean" => Value::Bool(self.rng.random()),
            "null" => Value::Null,
            _ => Value::String(if self.small { self.word() } else { self.text() }),
        }
    }

    fn object(&mut self, obj: &'a Map<String, Value>, depth: usize) -> Value {
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut map = Map::new();
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (name, schema) in props {
                let keep =
                    required.contains(&name.as_str()) || (!self.small && self.rng.random_bool(0.5));
                if keep {
                    let v = self.value(schema, depth + 1);
                    map.insert(name.clone(), v);
                }
            }
        }
        // Required names without a property schema still get a value.
        for name in required {
            if !map.contains_key(name) {
                let v = Value::String(self.word());
                map.insert(name.to_string(), v);
            }
        }
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_shapes_hold() {
        let words: Vec<String> = ["alpha", "beta"].iter().map(|s| s.to_string()).collect();
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer", "minimum": 1, "maximum": 9},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "kind": {"enum": ["a", "b"]},
                "next": {"$ref": "#/$defs/node"}
            },
            "required": ["name", "age", "tags", "kind", "next"],
            "$defs": {"node": {"type": ["object", "null"], "properties": {"x": {"type": "boolean"}}, "required": ["x"]}}
        });
        for seed in 0..20 {
            for small in [false, true] {
                let v: Value =
                    serde_json::from_str(&generate(Some(&schema), seed, &words, small)).unwrap();
                assert!(v["name"].is_string());
                let age = v["age"].as_i64().unwrap();
                assert!((1..=9).contains(&age));
                assert!(!v["tags"].as_array().unwrap().is_empty());
                assert!(["a", "b"].contains(&v["kind"].as_str().unwrap()));
                assert!(v["next"]["x"].is_boolean());
            }
        }
        let free: Value = serde_json::from_str(&generate(None, 1, &words, false)).unwrap();
        assert!(free.is_object());
        // Self-reference stops at the depth limit.
        let looped = json!({"$ref": "#"});
        assert_eq!(generate(Some(&looped), 1, &words, false), "null");
    }
}
