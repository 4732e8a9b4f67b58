//! LoRA in the pool simulation: inter-token gaps kept per adapter, base-model
//! traffic named like the pool's model, and the LoRA scorer's view of it.

use super::*;

#[test]
fn inter_token_gaps_are_kept_per_adapter_too() {
    // Every third request names no adapter, the rest alternate between two.
    let mut reqs = workload(5, 30, ms(20), 40, 5);
    for (i, r) in reqs.iter_mut().enumerate() {
        r.lora = match i % 3 {
            0 => None,
            1 => Some("a-lora".into()),
            _ => Some("b-lora".into()),
        };
    }
    let mut slots = engine();
    slots.max_loras = 2;
    let with_slots = PoolConfig::replicas(&slots, 2, MODEL, 7);
    let report = simulate(&with_slots, Router::RoundRobin, &reqs).unwrap();
    check_complete(&report, &[5; 30]);
    // Five tokens: four gaps per request.
    assert_eq!(report.inter_token.len(), 30 * 4);
    let names: Vec<&str> = report
        .inter_token_by_adapter
        .iter()
        .map(|(n, _)| &**n)
        .collect();
    assert_eq!(names, ["a-lora", "b-lora"]);
    for (_, gaps) in &report.inter_token_by_adapter {
        assert_eq!(gaps.len(), 10 * 4);
    }
    // Without adapters there is nothing per adapter.
    let plain = simulate(&pool(2), Router::RoundRobin, &workload(5, 6, ms(20), 40, 5)).unwrap();
    assert!(plain.inter_token_by_adapter.is_empty());
    assert_eq!(plain.inter_token.len(), 6 * 4);
}

/// A request naming the pool's own model runs on the base weights: with one adapter
/// slot per replica, traffic alternating between the base model and an adapter loads
/// the adapter once per replica, where treating the base name as a second adapter
/// would swap them back and forth. Both names still get their own gap histogram.
#[test]
fn a_request_naming_the_pools_model_needs_no_adapter() {
    let mut reqs = workload(6, 40, ms(10), 40, 5);
    for (i, r) in reqs.iter_mut().enumerate() {
        r.lora = Some(if i % 2 == 0 { MODEL } else { "a-lora" }.into());
    }
    let mut one_slot = engine();
    one_slot.max_loras = 1;
    let pool = PoolConfig::replicas(&one_slot, 2, MODEL, 7);
    let report = simulate(&pool, Router::RoundRobin, &reqs).unwrap();
    check_complete(&report, &[5; 40]);
    let loads: Vec<u64> = report.engines.iter().map(|e| e.lora_loads).collect();
    assert!(
        loads.iter().all(|&n| n <= 1),
        "adapter loads per replica: {loads:?}"
    );
    assert_eq!(
        loads.iter().sum::<u64>(),
        1,
        "round-robin sends a-lora to one replica"
    );
    let names: Vec<&str> = report
        .inter_token_by_adapter
        .iter()
        .map(|(n, _)| &**n)
        .collect();
    assert_eq!(names, ["a-lora", MODEL]);
}

/// GIE's LoRA scorer treats a base-model request like an adapter nobody runs, so it
/// keeps base traffic off a replica whose only adapter slot is taken; with
/// `baseModelIsActive` every replica reporting the pool's model scores alike and the
/// picker's tie-break spreads the base requests. The scrape's `model_name` is what
/// tells the scorer which model each replica serves.
#[test]
fn base_model_requests_ignore_adapter_slots_with_base_model_is_active() {
    let lora_only = |parameters: &str| {
        let yaml = format!(
            "\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: lora-affinity-scorer
{parameters}- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: lora-affinity-scorer
  - pluginRef: max-score-picker
"
        );
        Router::epp(from_yaml_str(&yaml, "lora-only").unwrap())
    };
    // One long adapter request holds its replica's only slot; 40 short base-model
    // requests follow, 100 ms apart, each done before the next.
    let mut reqs = workload(8, 41, ms(100), 40, 4);
    reqs[0].output = vec![11; 1_500];
    reqs[0].lora = Some("a-lora".into());
    let mut one_slot = engine();
    one_slot.max_loras = 1;
    let pool = PoolConfig::replicas(&one_slot, 2, MODEL, 7);
    let base_on_adapter_replica = |router: Router| {
        let report = simulate(&pool, router, &reqs).unwrap();
        let busy = report.records[0].endpoint.expect("routed");
        report.records[1..]
            .iter()
            .filter(|r| r.endpoint == Some(busy))
            .count()
    };
    assert_eq!(base_on_adapter_replica(lora_only("")), 0);
    let spread = base_on_adapter_replica(lora_only("  parameters:\n    baseModelIsActive: true\n"));
    assert!(
        (10..=30).contains(&spread),
        "{spread} of 40 on the adapter's replica"
    );
}
