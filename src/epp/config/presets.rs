//! Ready-made configurations: GIE v1.5's default (what GIE runs with no config file,
//! gie-facts §3.3) and igw's recommended profile. Both are plain YAML loaded through
//! the same loader as any user file, so they are also examples.

use super::{LoadedConfig, from_yaml_str};

/// GIE v1.5's default: queue 2, KV 2, prefix 3; defaulting adds the single-profile
/// handler, the max-score picker, the utilization detector and the OpenAI parser.
pub const GIE_DEFAULT_YAML: &str = "\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
- type: metrics-data-source
- type: core-metrics-extractor
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
dataLayer:
  sources:
  - pluginRef: metrics-data-source
    extractors:
    - pluginRef: core-metrics-extractor
";

/// igw's recommended profile. The weights, by what each signal is worth:
///
/// - `load-aware-prefix-scorer` 3: a prefix hit skips prefill, the largest saving a
///   router can make, so it carries GIE's prefix weight; unlike GIE's prefix scorer it
///   lets go of an affine endpoint that is more than `loadSlack` requests busier than
///   the least loaded, so the weight cannot pile a hot prefix onto one server.
/// - `inflight-load-scorer` 1: a queue estimate that counts the requests sent since
///   the last scrape, so bursts spread instead of herding. Lighter than GIE's queue
///   weight (2) because the prefix scorer already lets go of a busy endpoint: at 2 the
///   two counted load twice and traded cache hits for balance where prompts share
///   prefixes. On `scenarios/trace-replay.yaml` weight 2 kept the pool within the SLOs
///   up to 30 req/s (p90 NTPOT 0.64–0.75× of random's at 40–60 req/s, 79–82% of
///   prompt tokens cached), weight 1 up to 40 (0.51–0.65×, 83–84% cached); on
///   `chat-sessions` at 250 req/s 0.28× became 0.25×. Where nothing is shared
///   (`gie-blog-10-replicas`, `mixed-fleet`, the LoRA scenarios) no ratio moved by
///   more than 0.01.
/// - `kv-cache-utilization-scorer` 1: KV use lags and mostly restates the queue;
///   enough to steer away from servers close to preempting.
/// - `lora-affinity-scorer` 3: towards endpoints that already run the adapter (or
///   have a free slot for it). An adapter swap stalls every request behind it, and
///   with more adapters than slots any weaker pull lets each adapter's requests spread
///   over every replica and evict each other: on `scenarios/multi-lora.yaml` weight 1
///   gave p90 NTPOT 0.44–0.61× of random's at 40–100 req/s and mean TTFT up to 1.9 s,
///   weight 3 gives 0.07–0.17× and 39 ms; weight 2 is between (0.07–0.18×, TTFT up
///   to 282 ms). No shipped scenario without adapters moves. `baseModelIsActive`
///   scores a base-model request 1.0 on every endpoint serving that model: GIE's
///   tiers treat it as an adapter nobody runs and, at this weight, steer it towards
///   endpoints with a free adapter slot.
pub const IGW_DEFAULT_YAML: &str = "\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: load-aware-prefix-scorer
- type: inflight-load-scorer
- type: kv-cache-utilization-scorer
- type: lora-affinity-scorer
  parameters:
    baseModelIsActive: true
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: load-aware-prefix-scorer
    weight: 3
  - pluginRef: inflight-load-scorer
    weight: 1
  - pluginRef: kv-cache-utilization-scorer
    weight: 1
  - pluginRef: lora-affinity-scorer
    weight: 3
  - pluginRef: max-score-picker
";

/// Loads [`GIE_DEFAULT_YAML`].
pub fn gie_default() -> LoadedConfig {
    from_yaml_str(GIE_DEFAULT_YAML, "built-in gie-default").expect("the built-in config loads")
}

/// Loads [`IGW_DEFAULT_YAML`].
pub fn igw_default() -> LoadedConfig {
    from_yaml_str(IGW_DEFAULT_YAML, "built-in igw-default").expect("the built-in config loads")
}
