//! A bounded set of recently seen record ids.

use std::collections::{HashSet, VecDeque};

/// Remembers the last `capacity` ids; the oldest is forgotten first.
pub struct Dedup {
    capacity: usize,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Dedup {
    /// A set remembering `capacity` ids (0 disables de-duplication).
    pub fn new(capacity: usize) -> Self {
        Dedup {
            capacity,
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// True if `id` is remembered.
    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// True if `id` was seen before; remembers it either way.
    pub fn check_and_insert(&mut self, id: &str) -> bool {
        if self.capacity == 0 {
            return false;
        }
        if self.seen.contains(id) {
            return true;
        }
        self.seen.insert(id.to_string());
        self.order.push_back(id.to_string());
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_caught_until_evicted() {
        let mut d = Dedup::new(2);
        assert!(!d.check_and_insert("a"));
        assert!(d.check_and_insert("a"));
        assert!(!d.check_and_insert("b"));
        assert!(!d.check_and_insert("c"));
        assert!(!d.check_and_insert("a"), "a was evicted by c");
        assert!(!Dedup::new(0).check_and_insert("x"));
    }
}
