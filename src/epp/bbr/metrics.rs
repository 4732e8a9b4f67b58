//! BBR's Prometheus metrics, with GIE's names (gie-facts §7) so its dashboards read
//! igw unchanged: `bbr_info`, `bbr_success_total`, `bbr_body_field_not_found_total`,
//! `bbr_body_field_empty_total`.
//!
//! Counters are unlabelled (the reference gives no labels) and lock-free to bump.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    commit: String,
    build_ref: String,
}

/// Every metric BBR exports.
pub struct BbrMetrics {
    registry: Registry,
    success: Counter,
    not_found: Counter,
    empty: Counter,
}

impl Default for BbrMetrics {
    fn default() -> BbrMetrics {
        BbrMetrics::new()
    }
}

impl BbrMetrics {
    pub fn new() -> BbrMetrics {
        let mut registry = Registry::default();
        let (success, not_found, empty) =
            (Counter::default(), Counter::default(), Counter::default());
        // The encoder appends `_total` to counters.
        registry.register(
            "bbr_success",
            "Count of requests whose model was copied into the routing header",
            success.clone(),
        );
        registry.register(
            "bbr_body_field_not_found",
            "Count of requests whose body had no model field",
            not_found.clone(),
        );
        registry.register(
            "bbr_body_field_empty",
            "Count of requests whose body had an empty model field",
            empty.clone(),
        );
        let info: Family<InfoLabels, Gauge> = Family::default();
        info.get_or_create(&InfoLabels {
            commit: env!("CARGO_PKG_VERSION").to_string(),
            build_ref: format!("igw-{}", env!("CARGO_PKG_VERSION")),
        })
        .set(1);
        registry.register(
            "bbr_info",
            "General information of the current build of the body-based router",
            info,
        );
        BbrMetrics {
            registry,
            success,
            not_found,
            empty,
        }
    }

    /// The model header was set.
    pub fn success(&self) {
        self.success.inc();
    }

    /// The body had no `model` key.
    pub fn field_not_found(&self) {
        self.not_found.inc();
    }

    /// The body's `model` was `""` or `null`.
    pub fn field_empty(&self) {
        self.empty.inc();
    }

    /// The text exposition (OpenMetrics text, which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_gies_names() {
        let m = BbrMetrics::new();
        m.success();
        m.success();
        m.field_not_found();
        m.field_empty();
        let text = m.render();
        for needle in [
            "bbr_success_total 2",
            "bbr_body_field_not_found_total 1",
            "bbr_body_field_empty_total 1",
            "bbr_info{commit=",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
