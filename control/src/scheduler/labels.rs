//! Node labels as the scheduler reads them: one column per label key, giving
//! each node the rank of its value among all values of that key, so label
//! constraints and spread preferences compare integers, not strings, in the
//! scan over every node. Built once per key and scheduler, on first use.

use std::collections::HashMap;

use crate::objects::Node;

/// One label key across all nodes.
pub(super) struct LabelColumn {
    /// The distinct values nodes have for the key, sorted.
    values: Vec<String>,
    /// Per node (by index): 0 when the node lacks the label, else 1 + the
    /// index of its value in `values`. Ranks follow value order.
    ranks: Vec<u32>,
}

impl LabelColumn {
    fn build(nodes: &[Node], key: &str) -> LabelColumn {
        let mut values: Vec<&str> = nodes
            .iter()
            .filter_map(|n| n.labels.get(key).map(String::as_str))
            .collect();
        values.sort_unstable();
        values.dedup();
        let ranks = nodes
            .iter()
            .map(|n| match n.labels.get(key) {
                Some(value) => values
                    .binary_search(&value.as_str())
                    .map_or(0, |at| at as u32 + 1),
                None => 0,
            })
            .collect();
        LabelColumn {
            values: values.into_iter().map(str::to_string).collect(),
            ranks,
        }
    }

    /// The rank of node `index`'s value (0: no such label).
    pub(super) fn rank(&self, index: u32) -> u32 {
        self.ranks[index as usize]
    }

    /// How many ranks there are: the values, plus one for "no label".
    pub(super) fn groups(&self) -> usize {
        self.values.len() + 1
    }

    /// Per rank, whether that value equals `value` as Swarm compares label
    /// values (ignoring ASCII case); rank 0, no label, equals nothing.
    pub(super) fn ranks_equal_to(&self, value: &str) -> Vec<bool> {
        std::iter::once(false)
            .chain(self.values.iter().map(|v| v.eq_ignore_ascii_case(value)))
            .collect()
    }
}

/// The columns built so far, by label key.
#[derive(Default)]
pub(super) struct LabelIndex {
    columns: HashMap<String, LabelColumn>,
}

impl LabelIndex {
    /// Builds the column of `key` over `nodes` unless it is there already.
    pub(super) fn prepare(&mut self, nodes: &[Node], key: &str) {
        if !self.columns.contains_key(key) {
            self.columns
                .insert(key.to_string(), LabelColumn::build(nodes, key));
        }
    }

    /// The column of `key`, if [`LabelIndex::prepare`] built it.
    pub(super) fn column(&self, key: &str) -> Option<&LabelColumn> {
        self.columns.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{labelled, node};
    use super::*;

    #[test]
    fn ranks_follow_value_order_and_zero_means_unlabelled() {
        let nodes = [
            labelled("a", "zone", "west"),
            node("b"),
            labelled("c", "zone", "east"),
            labelled("d", "zone", "west"),
        ];
        let mut index = LabelIndex::default();
        index.prepare(&nodes, "zone");
        let column = index.column("zone").expect("prepared");
        let ranks: Vec<u32> = (0..4).map(|i| column.rank(i)).collect();
        assert_eq!(ranks, [2, 0, 1, 2]);
        assert_eq!(column.groups(), 3);
        assert_eq!(column.ranks_equal_to("WEST"), [false, false, true]);
        assert!(index.column("rack").is_none());
    }
}
