//! The config sections around the plugins: llm-d Router's `requestHandler` and
//! `dataLayer` fields, feature gates, the data layer's sources and extractors, and
//! flow control.

use super::Loader;
use crate::epp::config::factory::{self, Built, HostPlugin};
use crate::epp::config::host::{DataSource, FileDiscoveryParams, FlowControlSpec};
use crate::epp::config::{
    ConfigError, DataLayerSpec, DataSourceSpec, FEATURE_GATES, FeatureGates, PluginRef,
};

impl Loader<'_> {
    /// llm-d Router's sections: the parsers' new home, and the data-layer fields igw
    /// reads but does not act on (each said once, in the notes).
    pub(super) fn llm_d_sections(&mut self) -> Result<(), ConfigError> {
        if let Some(handler) = self.spec.request_handler.take() {
            if self.spec.parser.is_some() && !handler.parsers.is_empty() {
                return Err(self.invalid(
                    "requestHandler.parsers",
                    "give the parser here or in the deprecated top-level `parser`, not both",
                ));
            }
            if let Some(first) = handler.parsers.first() {
                if handler.parsers.len() > 1 {
                    self.notes.push(format!(
                        "requestHandler.parsers: igw runs one parser per pool, `{}`, for every path; the others are ignored",
                        first.plugin_ref
                    ));
                }
                self.spec.parser = Some(first.clone());
            }
            self.spec.request_handler = Some(handler);
        }
        let Some(layer) = &self.spec.data_layer else {
            return Ok(());
        };
        let mut ignored = Vec::new();
        if layer.inject_defaults.is_some() {
            ignored.push("injectDefaults (igw always fills GIE's defaults)");
        }
        if layer.peer_discovery.is_some() {
            ignored.push("peerDiscovery");
        }
        if layer.cross_replica_syncer_plugin_ref.is_some()
            || layer.cross_replica_sync_interval.is_some()
        {
            ignored.push(
                "crossReplicaSyncerPluginRef / crossReplicaSyncInterval (one replica's state only)",
            );
        }
        for field in ignored {
            self.notes
                .push(format!("dataLayer.{field}: accepted, not acted on"));
        }
        Ok(())
    }

    /// The endpoints file `dataLayer.discovery` names, if any: its plugin must be a
    /// `file-discovery`.
    pub(super) fn discovery(&self) -> Result<Option<FileDiscoveryParams>, ConfigError> {
        let Some(d) = self
            .spec
            .data_layer
            .as_ref()
            .and_then(|l| l.discovery.as_ref())
        else {
            return Ok(None);
        };
        let (section, name) = match (&d.endpoints, &d.plugin_ref) {
            (Some(r), None) => ("dataLayer.discovery.endpoints", &r.plugin_ref),
            (None, Some(name)) => ("dataLayer.discovery", name),
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    "dataLayer.discovery",
                    "give the plugin in `endpoints.pluginRef` or in `pluginRef`, not both",
                ));
            }
            (None, None) => {
                return Err(self.invalid(
                    "dataLayer.discovery",
                    "name the discovery plugin in `endpoints.pluginRef`",
                ));
            }
        };
        let e = self.lookup(section, name)?;
        let Built::Host(HostPlugin::FileDiscovery(params)) = &e.plugin else {
            let msg = format!(
                "{} is not a discovery plugin (igw's is `{}`)",
                e.describe(),
                factory::FILE_DISCOVERY
            );
            return Err(self.invalid(section, msg));
        };
        Ok(Some(params.clone()))
    }

    pub(super) fn feature_gates(&self) -> Result<FeatureGates, ConfigError> {
        let mut gates = FeatureGates::default();
        for gate in &self.spec.feature_gates {
            // llm-d's `name=false` turns a gate off; `name` and `name=true` turn it on.
            let (name, on) = match gate.split_once('=') {
                Some((name, "true")) => (name, true),
                Some((name, "false")) => (name, false),
                Some(_) => ("", false),
                None => (gate.as_str(), true),
            };
            match name {
                "flowControl" => gates.flow_control = on,
                "dataLayer" => gates.data_layer = on,
                "enableLegacyMetrics" => gates.enable_legacy_metrics = on,
                "haPopulateNonLeaderDatastore" => {}
                _ => {
                    return Err(ConfigError::UnknownFeatureGate {
                        origin: self.o(),
                        gate: gate.clone(),
                        known: FEATURE_GATES.join(", "),
                    });
                }
            }
        }
        Ok(gates)
    }

    pub(super) fn data_layer(
        &mut self,
        gates: FeatureGates,
    ) -> Result<Vec<DataSource>, ConfigError> {
        if self.spec.data_layer.is_none() {
            if gates.enable_legacy_metrics {
                return Ok(Vec::new());
            }
            let first = |l: &mut Self, type_name: &str| -> Result<String, ConfigError> {
                match l.entries.iter().find(|e| e.type_name == type_name) {
                    Some(e) => Ok(e.name.clone()),
                    None => {
                        let i = l.add_default(type_name, "no dataLayer section")?;
                        Ok(l.entries[i].name.clone())
                    }
                }
            };
            let source = first(self, factory::METRICS_DATA_SOURCE)?;
            let extractor = first(self, factory::CORE_METRICS_EXTRACTOR)?;
            self.spec.data_layer = Some(DataLayerSpec {
                sources: vec![DataSourceSpec {
                    plugin_ref: source,
                    extractors: vec![PluginRef {
                        plugin_ref: extractor,
                    }],
                }],
                ..DataLayerSpec::default()
            });
        }
        let sources = self
            .spec
            .data_layer
            .as_ref()
            .map(|d| d.sources.clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        for (i, s) in sources.iter().enumerate() {
            let section = format!("dataLayer.sources[{i}]");
            let e = self.lookup(&section, &s.plugin_ref)?;
            let Built::Host(HostPlugin::MetricsSource(params)) = &e.plugin else {
                let msg = format!("{} is not a data source", e.describe());
                return Err(self.invalid(section, msg));
            };
            let mut source = DataSource {
                name: e.name.clone(),
                params: params.clone(),
                extractors: Vec::new(),
            };
            for x in &s.extractors {
                let e = self.lookup(&section, &x.plugin_ref)?;
                let Built::Host(HostPlugin::MetricsExtractor(params)) = &e.plugin else {
                    let msg = format!("{} is not a metrics extractor", e.describe());
                    return Err(self.invalid(section, msg));
                };
                source.extractors.push((e.name.clone(), params.clone()));
            }
            out.push(source);
        }
        Ok(out)
    }

    pub(super) fn flow_control(
        &mut self,
        gates: FeatureGates,
    ) -> Result<Option<FlowControlSpec>, ConfigError> {
        let Some(value) = &self.spec.flow_control else {
            return Ok(None);
        };
        let spec: FlowControlSpec = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." {
                String::new()
            } else {
                format!("field `{path}`: ")
            };
            self.invalid("flowControl", format!("{at}{}", e.into_inner()))
        })?;
        spec.validate()
            .map_err(|e| self.invalid("flowControl", e.to_string()))?;
        if !gates.flow_control {
            self.notes.push(
                "the flowControl section has no effect: the `flowControl` feature gate is off"
                    .into(),
            );
        }
        Ok(Some(spec))
    }
}
