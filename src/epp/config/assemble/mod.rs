//! From a decoded `EndpointPickerConfig` to a [`LoadedConfig`]: header and feature
//! gates, plugin instantiation through the factory, GIE's defaulting rules (gie-facts
//! §3.2) and the structural checks, then the scheduler and the host's typed settings.
//!
//! Defaulting, in GIE's order: an unnamed plugin is named after its type; no profiles
//! → one profile `default` with every filter, scorer and picker in declaration order;
//! one profile and no handler → `single-profile-handler`; no picker plugin →
//! `max-score-picker`, given to every profile without one; a scorer without a weight
//! → 1.0; no parser → `openai-parser`; no saturation detector → `utilization-detector`;
//! no `dataLayer` (and no `enableLegacyMetrics`) → `metrics-data-source` feeding
//! `core-metrics-extractor`. Everything added is recorded in the effective spec.

mod sections;

use super::factory::{self, BuildError, Built, HostPlugin};
use super::host::ParserKind;
use super::{
    API_VERSION, ConfigError, EndpointPickerConfig, KIND, LLMD_API_VERSION, LoadedConfig,
    PluginRef, PluginSpec, ProfilePluginSpec, ProfileSpec,
};
use crate::epp::saturation::Detector;
use crate::epp::scheduler::plugins::{max_score, single_profile, utilization};
use crate::epp::scheduler::{Scheduler, SchedulingProfile};

/// The name GIE gives the profile it creates.
const DEFAULT_PROFILE: &str = "default";

struct Entry {
    name: String,
    type_name: String,
    plugin: Built,
}

impl Entry {
    /// Filters, scorers and pickers: what a profile may reference.
    fn in_profiles(&self) -> bool {
        matches!(
            self.plugin,
            Built::Filter(_) | Built::Detector(_) | Built::Scorer(_) | Built::Picker(_)
        )
    }

    fn describe(&self) -> String {
        format!("plugin `{}` (type `{}`)", self.name, self.type_name)
    }
}

/// Loading state: the spec being defaulted and the plugins built so far.
struct Loader<'a> {
    origin: &'a str,
    spec: EndpointPickerConfig,
    entries: Vec<Entry>,
    notes: Vec<String>,
}

pub(super) fn assemble(
    spec: EndpointPickerConfig,
    origin: &str,
) -> Result<LoadedConfig, ConfigError> {
    let mut l = Loader {
        origin,
        spec,
        entries: Vec::new(),
        notes: Vec::new(),
    };
    l.check_header()?;
    l.llm_d_sections()?;
    let feature_gates = l.feature_gates()?;
    l.build_plugins()?;
    l.default_profiles()?;
    let scheduler = l.scheduler()?;
    let parser = l.parser()?;
    let saturation = l.saturation()?;
    let data_layer = l.data_layer(feature_gates)?;
    let flow_control = l.flow_control(feature_gates)?;
    let discovery = l.discovery()?;
    Ok(LoadedConfig {
        origin: origin.to_string(),
        spec: l.spec,
        feature_gates,
        scheduler,
        saturation,
        data_layer,
        parser,
        flow_control,
        discovery,
        notes: l.notes,
    })
}

impl Loader<'_> {
    fn o(&self) -> String {
        self.origin.to_string()
    }

    fn invalid(&self, section: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.o(),
            section: section.into(),
            message: message.into(),
        }
    }

    fn check_header(&self) -> Result<(), ConfigError> {
        let version = &self.spec.api_version;
        if version != API_VERSION && version != LLMD_API_VERSION {
            return Err(ConfigError::Header {
                origin: self.o(),
                field: "apiVersion",
                expected: "inference.networking.x-k8s.io/v1alpha1` or `llm-d.ai/v1alpha1",
                found: version.clone(),
            });
        }
        if self.spec.kind != KIND {
            return Err(ConfigError::Header {
                origin: self.o(),
                field: "kind",
                expected: KIND,
                found: self.spec.kind.clone(),
            });
        }
        Ok(())
    }

    fn build_plugins(&mut self) -> Result<(), ConfigError> {
        let specs = std::mem::take(&mut self.spec.plugins);
        for (index, mut p) in specs.into_iter().enumerate() {
            if p.type_name.trim().is_empty() {
                return Err(ConfigError::MissingType {
                    origin: self.o(),
                    index,
                });
            }
            if p.name.as_deref().is_none_or(str::is_empty) {
                p.name = Some(p.type_name.clone());
            }
            self.add(p)?;
        }
        Ok(())
    }

    /// Builds `p` and records it; its name must be new.
    fn add(&mut self, p: PluginSpec) -> Result<usize, ConfigError> {
        let name = p.name().to_string();
        if self.find(&name).is_some() {
            return Err(ConfigError::DuplicatePlugin {
                origin: self.o(),
                name,
            });
        }
        let plugin = factory::build(&p.type_name, p.parameters.as_ref()).map_err(|e| {
            let (origin, type_name) = (self.o(), p.type_name.clone());
            match e {
                BuildError::UnknownType => ConfigError::UnknownPluginType {
                    hint: factory::suggest(&type_name)
                        .map(|s| format!(", did you mean `{s}`?"))
                        .unwrap_or_default(),
                    origin,
                    name: name.clone(),
                    type_name,
                },
                BuildError::Unsupported(reason) => ConfigError::Unsupported {
                    origin,
                    name: name.clone(),
                    type_name,
                    reason,
                },
                BuildError::Param(pe) => ConfigError::Parameter {
                    origin,
                    name: name.clone(),
                    type_name,
                    field: pe.field,
                    message: pe.message,
                },
            }
        })?;
        let entry = Entry {
            name,
            type_name: p.type_name.clone(),
            plugin,
        };
        if let Built::Host(HostPlugin::Ignored(why)) = &entry.plugin {
            self.notes.push(format!(
                "{} is accepted and ignored: {why}",
                entry.describe()
            ));
        }
        self.entries.push(entry);
        self.spec.plugins.push(p);
        Ok(self.entries.len() - 1)
    }

    /// Adds a plugin of `type_name` with default parameters, named after its type.
    fn add_default(&mut self, type_name: &str, why: &str) -> Result<usize, ConfigError> {
        self.notes.push(format!("added `{type_name}`: {why}"));
        self.add(PluginSpec {
            name: None,
            type_name: type_name.to_string(),
            parameters: None,
        })
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.name == name)
    }

    fn default_profiles(&mut self) -> Result<(), ConfigError> {
        if self.spec.scheduling_profiles.is_empty() {
            let plugins = self
                .entries
                .iter()
                .filter(|e| e.in_profiles())
                .map(|e| ProfilePluginSpec {
                    plugin_ref: e.name.clone(),
                    weight: None,
                })
                .collect();
            self.spec.scheduling_profiles.push(ProfileSpec {
                name: DEFAULT_PROFILE.into(),
                plugins,
            });
            self.notes.push(
                "added profile `default` with every filter, scorer and picker: no schedulingProfiles"
                    .into(),
            );
        }
        let names = &self.spec.scheduling_profiles;
        for (i, p) in names.iter().enumerate() {
            if p.name.is_empty() {
                return Err(
                    self.invalid(format!("schedulingProfiles[{i}]"), "field `name` is empty")
                );
            }
            if names[..i].iter().any(|q| q.name == p.name) {
                return Err(self.invalid(
                    "schedulingProfiles",
                    format!("duplicate profile name `{}`", p.name),
                ));
            }
        }
        let handlers: Vec<&str> = self
            .entries
            .iter()
            .filter(|e| matches!(e.plugin, Built::Handler(_)))
            .map(|e| e.name.as_str())
            .collect();
        let profiles = self.spec.scheduling_profiles.len();
        match handlers.as_slice() {
            [] if profiles == 1 => {
                self.add_default(single_profile::TYPE, "one profile and no profile handler")?;
            }
            [] => {
                return Err(self.invalid(
                    "schedulingProfiles",
                    format!("{profiles} profiles need a profile handler plugin"),
                ));
            }
            [_] => {}
            many => {
                return Err(self.invalid(
                    "plugins",
                    format!("more than one profile handler: `{}`", many.join("`, `")),
                ));
            }
        }
        let single = self
            .entries
            .iter()
            .any(|e| e.type_name == single_profile::TYPE);
        if single && profiles > 1 {
            return Err(self.invalid(
                "schedulingProfiles",
                format!(
                    "`{}` runs one profile, but there are {profiles}",
                    single_profile::TYPE
                ),
            ));
        }
        let picker = match self
            .entries
            .iter()
            .position(|e| matches!(e.plugin, Built::Picker(_)))
        {
            Some(i) => i,
            None => self.add_default(max_score::TYPE, "no picker plugin")?,
        };
        let picker_name = self.entries[picker].name.clone();
        let mut profiles = std::mem::take(&mut self.spec.scheduling_profiles);
        let result = profiles
            .iter_mut()
            .try_for_each(|p| self.default_profile(p, &picker_name));
        self.spec.scheduling_profiles = profiles;
        result?;
        Ok(())
    }

    /// Checks one profile's references and weights, fills in weights and the picker.
    fn default_profile(
        &mut self,
        profile: &mut ProfileSpec,
        picker: &str,
    ) -> Result<(), ConfigError> {
        let section = format!("schedulingProfiles `{}`", profile.name);
        let mut pickers = Vec::new();
        for r in &mut profile.plugins {
            let Some(i) = self.find(&r.plugin_ref) else {
                return Err(ConfigError::UnknownPluginRef {
                    origin: self.o(),
                    section,
                    plugin_ref: r.plugin_ref.clone(),
                });
            };
            if let Some(w) = r.weight
                && !(w.is_finite() && w >= 0.0)
            {
                return Err(ConfigError::BadWeight {
                    origin: self.o(),
                    section,
                    plugin_ref: r.plugin_ref.clone(),
                    weight: w,
                });
            }
            let e = &self.entries[i];
            match e.plugin {
                Built::Scorer(_) => {
                    r.weight.get_or_insert(1.0);
                }
                Built::Picker(_) => pickers.push(e.name.clone()),
                Built::Filter(_) | Built::Detector(_) => {}
                _ => {
                    return Err(self.invalid(
                        section,
                        format!("{} is not a filter, scorer or picker", e.describe()),
                    ));
                }
            }
            if r.weight.is_some() && !matches!(e.plugin, Built::Scorer(_)) {
                let note = format!(
                    "{section}: the weight of `{}` is ignored: not a scorer",
                    e.name
                );
                self.notes.push(note);
            }
        }
        match pickers.len() {
            0 => profile.plugins.push(ProfilePluginSpec {
                plugin_ref: picker.to_string(),
                weight: None,
            }),
            1 => {}
            _ => {
                return Err(self.invalid(
                    section,
                    format!("more than one picker: `{}`", pickers.join("`, `")),
                ));
            }
        }
        Ok(())
    }

    fn scheduler(&self) -> Result<Scheduler, ConfigError> {
        let mut profiles = Vec::new();
        for spec in &self.spec.scheduling_profiles {
            let entry = |r: &ProfilePluginSpec| self.find(&r.plugin_ref).map(|i| &self.entries[i]);
            let picker = spec
                .plugins
                .iter()
                .filter_map(entry)
                .find_map(|e| match &e.plugin {
                    Built::Picker(p) => Some((e.name.clone(), p.clone())),
                    _ => None,
                });
            let Some((picker_name, picker)) = picker else {
                return Err(
                    self.invalid(format!("schedulingProfiles `{}`", spec.name), "no picker")
                );
            };
            let mut profile =
                SchedulingProfile::new(spec.name.as_str(), picker).with_picker_name(picker_name);
            for r in &spec.plugins {
                let Some(e) = entry(r) else { continue };
                let name = e.name.as_str();
                match &e.plugin {
                    Built::Filter(f) => profile = profile.with_named_filter(name, f.clone()),
                    Built::Detector(d) => profile = profile.with_named_filter(name, d.filter()),
                    Built::Scorer(s) => {
                        let weight = r.weight.unwrap_or(1.0);
                        profile = profile.with_named_scorer(name, s.clone(), weight);
                    }
                    _ => {}
                }
            }
            profiles.push(profile);
        }
        let handler = self.entries.iter().find_map(|e| match &e.plugin {
            Built::Handler(h) => Some(h.clone()),
            _ => None,
        });
        let Some(handler) = handler else {
            return Err(self.invalid("plugins", "no profile handler"));
        };
        Ok(Scheduler::new(handler, profiles))
    }

    fn parser(&mut self) -> Result<ParserKind, ConfigError> {
        let name = match &self.spec.parser {
            Some(r) => r.plugin_ref.clone(),
            None => {
                let name = factory::OPENAI_PARSER.to_string();
                if self.find(&name).is_none() {
                    self.add_default(factory::OPENAI_PARSER, "no parser")?;
                }
                self.spec.parser = Some(PluginRef {
                    plugin_ref: name.clone(),
                });
                name
            }
        };
        let e = self.lookup("parser", &name)?;
        match e.plugin {
            Built::Host(HostPlugin::Parser(kind)) => Ok(kind),
            _ => Err(self.invalid("parser", format!("{} is not a parser", e.describe()))),
        }
    }

    fn lookup(&self, section: &str, name: &str) -> Result<&Entry, ConfigError> {
        self.find(name)
            .map(|i| &self.entries[i])
            .ok_or_else(|| ConfigError::UnknownPluginRef {
                origin: self.o(),
                section: section.to_string(),
                plugin_ref: name.to_string(),
            })
    }

    fn saturation(&mut self) -> Result<Detector, ConfigError> {
        if self.spec.saturation_detector.is_none() {
            let name = utilization::TYPE.to_string();
            if self.find(&name).is_none() {
                self.add_default(utilization::TYPE, "no saturation detector")?;
            }
            self.spec.saturation_detector = Some(PluginRef { plugin_ref: name });
        }
        let name = self
            .spec
            .saturation_detector
            .as_ref()
            .map(|r| r.plugin_ref.clone())
            .unwrap_or_default();
        let e = self.lookup("saturationDetector", &name)?;
        match &e.plugin {
            Built::Detector(d) => Ok(d.clone()),
            _ => Err(self.invalid(
                "saturationDetector",
                format!("{} is not a saturation detector", e.describe()),
            )),
        }
    }
}
