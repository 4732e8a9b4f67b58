//! Bounded label values for what clients name: a request's `model` and model-name
//! rewrite header label the picker's metrics, and every distinct value is a new series
//! held forever, so a client sending random names could grow `/metrics` (and memory)
//! without bound. Only names the pool serves become label values; every other name is
//! counted under [`OTHER`], as llm-d Router caps its model labels (llm-d-facts §1.12).
//!
//! A name is known once the pool is seen serving it: it is an endpoint's served model
//! or one of its loaded adapters in the scraped metrics, or a request for it got a
//! response below 400 (a model server answers unknown models with 404). At most
//! [`MAX_KNOWN`] names of at most [`MAX_NAME_BYTES`] bytes are ever kept.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

/// The label value of every name the pool does not serve (llm-d's overflow value).
pub const OTHER: &str = "other";
/// The most distinct names kept as label values (llm-d caps at 1,000).
pub const MAX_KNOWN: usize = 1000;
/// Longer names are never label values.
pub const MAX_NAME_BYTES: usize = 256;

/// The model names that may be label values.
#[derive(Debug, Default)]
pub struct ModelLabels {
    known: RwLock<HashSet<Arc<str>>>,
}

impl ModelLabels {
    /// The label value for `name`: itself if known (or the empty name), else
    /// [`OTHER`]. `served` is asked only for names not known yet: whether the pool
    /// serves it now; if it does, the name becomes known.
    pub fn label(&self, name: &str, served: impl FnOnce(&str) -> bool) -> Arc<str> {
        if name.is_empty() {
            return Arc::from("");
        }
        if let Some(known) = self.get(name) {
            return known;
        }
        if name.len() <= MAX_NAME_BYTES && served(name) {
            return self.learn(name).unwrap_or_else(|| Arc::from(OTHER));
        }
        Arc::from(OTHER)
    }

    /// Makes `name` a label value (a response below 400 proved the pool serves it).
    /// Returns it, or `None` when it is too long or the cap is reached.
    pub fn learn(&self, name: &str) -> Option<Arc<str>> {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return None;
        }
        if let Some(known) = self.get(name) {
            return Some(known);
        }
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = known.get(name) {
            return Some(k.clone());
        }
        if known.len() >= MAX_KNOWN {
            return None;
        }
        let name: Arc<str> = Arc::from(name);
        known.insert(name.clone());
        Some(name)
    }

    fn get(&self, name: &str) -> Option<Arc<str>> {
        let known = self.known.read().unwrap_or_else(|p| p.into_inner());
        known.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_oversized_names_share_one_label() {
        let labels = ModelLabels::default();
        assert_eq!(&*labels.label("llama", |_| false), OTHER);
        assert_eq!(&*labels.label("llama", |n| n == "llama"), "llama");
        assert_eq!(&*labels.label("llama", |_| false), "llama", "known now");
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(&*labels.label(&long, |_| true), OTHER);
        assert_eq!(labels.learn(&long), None);
        assert_eq!(&*labels.label("", |_| false), "");
    }

    #[test]
    fn at_most_max_known_names_are_kept() {
        let labels = ModelLabels::default();
        for i in 0..MAX_KNOWN + 50 {
            labels.learn(&format!("adapter-{i}"));
        }
        assert_eq!(labels.known.read().unwrap().len(), MAX_KNOWN);
        assert_eq!(
            &*labels.label(&format!("adapter-{}", MAX_KNOWN + 10), |_| true),
            OTHER
        );
        assert_eq!(&*labels.label("adapter-3", |_| false), "adapter-3");
    }
}
