//! Tests of the by-model table that LoRA traffic adds under the sweep.

use super::*;

#[test]
fn lora_traffic_gets_a_row_per_model_over_the_whole_run() {
    let mut report = report();
    // A base-model share beside the adapter, named like the pool's model.
    for (overall, &(_, scale)) in report.overall.iter_mut().zip(&STRATEGIES) {
        overall
            .by_adapter
            .insert("m".into(), summary(15.0, scale * 2.0));
    }
    let text = comparison_table(&report);
    let row = |name: &str| {
        text.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
            .to_string()
    };
    assert!(text.contains("model · all stages"), "{text}");
    // igw's summaries are at half random's scale, GIE's at 0.8.
    let adapter = row("sql/lora v2 (");
    assert!(adapter.contains("0.50× / 0.50×"), "{adapter}");
    assert!(adapter.contains("0.80× / 0.80×"), "{adapter}");
    let base = row("m (base, ");
    assert!(base.contains("0.50× / 0.50×"), "{base}");
    // The baseline's column shows its values, not ratios.
    assert!(!adapter.contains("1.00× / 1.00×"), "{adapter}");

    // Without adapters there is no such table.
    for overall in &mut report.overall {
        overall.by_adapter.clear();
    }
    assert!(!comparison_table(&report).contains("model · all stages"));
}
