//! LoRA adapter slots: which adapters the running batch uses, and which sit in the
//! `max_loras` GPU slots.
//!
//! vLLM admits a waiting request only if its adapter is already in the running batch or
//! the batch uses fewer than `max_loras` adapters. An adapter that is not resident is
//! loaded into a slot (evicting the least recently used adapter that no running
//! request needs); the step that first uses it pays the load time.

use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct LoraSlots {
    max_loras: usize,
    /// Running requests per adapter.
    running: HashMap<Arc<str>, usize>,
    /// Resident adapters with the step count at which each was last used.
    resident: Vec<(Arc<str>, u64)>,
    /// Adapter loads performed so far.
    pub loads: u64,
}

impl LoraSlots {
    pub fn new(max_loras: usize) -> LoraSlots {
        LoraSlots {
            max_loras,
            running: HashMap::new(),
            resident: Vec::new(),
            loads: 0,
        }
    }

    /// Whether a request for `lora` may join the running batch now.
    pub fn can_admit(&self, lora: &str) -> bool {
        self.running.contains_key(lora) || self.running.len() < self.max_loras
    }

    pub fn start_running(&mut self, lora: &Arc<str>) {
        *self.running.entry(lora.clone()).or_insert(0) += 1;
    }

    pub fn stop_running(&mut self, lora: &str) {
        if let Some(n) = self.running.get_mut(lora) {
            *n -= 1;
            if *n == 0 {
                self.running.remove(lora);
            }
        }
    }

    /// Marks `lora` used in step `step`; returns true if it had to be loaded.
    pub fn use_in_step(&mut self, lora: &Arc<str>, step: u64) -> bool {
        if let Some(slot) = self.resident.iter_mut().find(|(l, _)| l == lora) {
            slot.1 = step;
            return false;
        }
        if self.resident.len() >= self.max_loras.max(1) {
            // Evict the least recently used adapter that no running request needs. One
            // always exists: the running batch uses at most `max_loras` adapters and
            // `lora` is one of them but is not resident.
            let victim = self
                .resident
                .iter()
                .enumerate()
                .filter(|(_, (l, _))| !self.running.contains_key(l))
                .min_by_key(|(_, (_, used))| *used)
                .map(|(i, _)| i);
            if let Some(i) = victim {
                self.resident.swap_remove(i);
            }
        }
        self.resident.push((lora.clone(), step));
        self.loads += 1;
        true
    }

    /// Adapters in use by running requests, sorted.
    pub fn running_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.running.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_holds_at_most_max_loras_adapters() {
        let mut s = LoraSlots::new(1);
        let a: Arc<str> = "a".into();
        assert!(s.can_admit("a"));
        s.start_running(&a);
        assert!(s.can_admit("a"), "same adapter joins freely");
        assert!(!s.can_admit("b"));
        s.stop_running("a");
        assert!(s.can_admit("b"));
    }

    #[test]
    fn loads_once_and_evicts_the_idle_adapter() {
        let mut s = LoraSlots::new(1);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        assert!(s.use_in_step(&a, 1));
        assert!(!s.use_in_step(&a, 2), "resident adapters load once");
        s.start_running(&b);
        assert!(s.use_in_step(&b, 3));
        assert_eq!(s.loads, 2);
        assert_eq!(s.resident.len(), 1, "`a` was idle, so `b` took its slot");
        assert!(s.use_in_step(&a, 4) && s.loads == 3, "`a` must load again");
    }
}
