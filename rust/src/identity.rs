//! The identity graph: anonymous ids and user ids joined into one canonical id per person.
//!
//! Nodes are `u:<userId>` or `a:<anonymousId>`; `identify` (anonymousId + userId) and `alias`
//! (previousId + userId) events add edges. Each connected component has one canonical id, chosen
//! so that it does not depend on the order edges arrive in: the smallest user id of the
//! component, or the smallest anonymous id if it has no user id. Merges are transitive (union-find
//! with path compression).
//!
//! Memory: the graph holds the ids that were ever joined to another (≈150 bytes each with
//! 38-byte ids, measured), each name stored once. A component's members form a circular list
//! (`next`), so re-labelling a component walks only its members. Ids never joined to another
//! are not kept: [`IdentityGraph::observe`] remembers the last [`RECENT_IDS`]..2× that of them
//! by a 64-bit hash only, in two generations, so memory stays bounded however many anonymous
//! visitors come by.

use indexmap::IndexSet;
use rustc_hash::{FxBuildHasher, FxHashSet};
use xxhash_rust::xxh3::xxh3_64;

/// Ids never joined to another that `observe` remembers having reported, per generation.
pub const RECENT_IDS: usize = 500_000;

#[derive(Default)]
pub struct IdentityGraph {
    names: IndexSet<Box<str>, FxBuildHasher>,
    parent: Vec<u32>,
    /// For a root: the node whose name is its component's canonical id.
    best: Vec<u32>,
    /// The next member of the node's component (a cycle through all its members).
    next: Vec<u32>,
    /// The node's current canonical id was reported by [`IdentityGraph::observe`].
    reported: Vec<bool>,
    /// Hashes of lone ids (not in the graph) `observe` reported: the current generation, and
    /// the one before it (dropped when the current one is full).
    recent: [FxHashSet<u64>; 2],
}

/// Whether `a` rather than `b` is the canonical id of their joined component: user ids before
/// anonymous ids, then the smaller.
fn prefer(a: &str, b: &str) -> bool {
    match (a.starts_with("u:"), b.starts_with("u:")) {
        (true, false) => true,
        (false, true) => false,
        _ => a <= b,
    }
}

impl IdentityGraph {
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }

    fn node(&mut self, name: &str) -> u32 {
        if let Some(i) = self.names.get_index_of(name) {
            return i as u32;
        }
        let i = u32::try_from(self.names.len()).expect("fewer than 2^32 identity nodes");
        self.names.insert(name.into());
        self.parent.push(i);
        self.best.push(i);
        self.next.push(i);
        self.reported.push(false);
        i
    }

    fn root(&mut self, mut i: u32) -> u32 {
        let mut r = i;
        while self.parent[r as usize] != r {
            r = self.parent[r as usize];
        }
        while self.parent[i as usize] != r {
            let next = self.parent[i as usize];
            self.parent[i as usize] = r;
            i = next;
        }
        r
    }

    /// Join `a` and `b`; return the nodes whose canonical id changed (empty if none did).
    pub fn link(&mut self, a: &str, b: &str) -> Vec<String> {
        let (ia, ib) = (self.node(a), self.node(b));
        let (ra, rb) = (self.root(ia), self.root(ib));
        let mut changed = Vec::new();
        if ra == rb {
            return changed;
        }
        let (best_a, best_b) = (self.best[ra as usize], self.best[rb as usize]);
        let winner = if prefer(self.name(best_a), self.name(best_b)) { best_a } else { best_b };
        // The component whose canonical id changes is re-labelled: report its members.
        for (r, was) in [(ra, best_a), (rb, best_b)] {
            if was != winner {
                let mut n = r;
                loop {
                    changed.push(self.name(n).to_string());
                    self.reported[n as usize] = false;
                    n = self.next[n as usize];
                    if n == r {
                        break;
                    }
                }
            }
        }
        // Splice the two member cycles into one, and hang `rb` under `ra`.
        self.next.swap(ra as usize, rb as usize);
        self.parent[rb as usize] = ra;
        self.best[ra as usize] = winner;
        changed
    }

    /// The canonical id of a node (itself when unknown).
    pub fn canonical(&mut self, name: &str) -> String {
        match self.names.get_index_of(name) {
            Some(i) => {
                let r = self.root(i as u32);
                self.name(self.best[r as usize]).to_string()
            }
            None => name.to_string(),
        }
    }

    /// The canonical id of a node, and whether this mapping is news: not reported by an earlier
    /// call, or changed since (a merge re-labelled it). An id never joined to another maps to
    /// itself and is news again once [`RECENT_IDS`] to twice that many other lone ids were
    /// reported after it (its mapping is unchanged: reporting it again is harmless).
    pub fn observe(&mut self, name: &str) -> (String, bool) {
        if let Some(i) = self.names.get_index_of(name) {
            let r = self.root(i as u32);
            let news = !std::mem::replace(&mut self.reported[i], true);
            return (self.name(self.best[r as usize]).to_string(), news);
        }
        let h = xxh3_64(name.as_bytes());
        let news = !self.recent.iter().any(|g| g.contains(&h));
        if news {
            if self.recent[0].len() >= RECENT_IDS {
                self.recent.swap(0, 1);
                self.recent[0].clear();
            }
            self.recent[0].insert(h);
        }
        (name.to_string(), news)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_are_transitive_and_order_independent() {
        let edges = [("a:1", "u:bob"), ("a:2", "u:bob"), ("a:3", "a:2"), ("a:9", "u:alice")];
        let mut forward = IdentityGraph::default();
        for (x, y) in edges {
            forward.link(x, y);
        }
        let mut backward = IdentityGraph::default();
        for (x, y) in edges.iter().rev() {
            backward.link(y, x);
        }
        for n in ["a:1", "a:2", "a:3", "u:bob"] {
            assert_eq!(forward.canonical(n), "u:bob");
            assert_eq!(backward.canonical(n), "u:bob");
        }
        assert_eq!(forward.canonical("a:9"), "u:alice");
        assert_eq!(forward.canonical("a:unknown"), "a:unknown");
    }

    #[test]
    fn smallest_user_id_wins_when_two_people_merge() {
        let mut g = IdentityGraph::default();
        g.link("a:1", "u:zed");
        g.link("a:2", "u:amy");
        let changed = g.link("a:1", "a:2");
        assert_eq!(g.canonical("a:1"), "u:amy");
        let mut changed = changed;
        changed.sort();
        assert_eq!(changed, vec!["a:1", "u:zed"]);
        assert!(g.link("a:1", "u:zed").is_empty(), "already joined");
    }

    #[test]
    fn a_relabelled_component_reports_all_its_members_and_only_them() {
        let mut g = IdentityGraph::default();
        for (a, b) in [("a:1", "u:zed"), ("a:2", "u:zed"), ("a:3", "a:2"), ("a:7", "u:amy"), ("a:8", "a:9")] {
            g.link(a, b);
        }
        let mut changed = g.link("a:3", "a:7"); // zed's four join amy's two; amy wins
        changed.sort();
        assert_eq!(changed, vec!["a:1", "a:2", "a:3", "u:zed"]);
        for n in ["a:1", "a:2", "a:3", "u:zed", "a:7", "u:amy"] {
            assert_eq!(g.canonical(n), "u:amy");
        }
        assert_eq!(g.canonical("a:9"), "a:8");
        // The merged component is one cycle: a later re-label reports all six.
        let mut changed = g.link("u:abe", "a:1");
        changed.sort();
        assert_eq!(changed, vec!["a:1", "a:2", "a:3", "a:7", "u:amy", "u:zed"]);
    }

    #[test]
    fn observe_reports_a_mapping_once_until_it_changes() {
        let mut g = IdentityGraph::default();
        assert_eq!(g.observe("a:1"), ("a:1".to_string(), true));
        assert_eq!(g.observe("a:1"), ("a:1".to_string(), false));
        assert!(g.is_empty(), "a lone id is not kept in the graph");
        g.link("a:1", "u:bob");
        assert_eq!(g.observe("a:1"), ("u:bob".to_string(), true), "joined: news");
        assert_eq!(g.observe("u:bob"), ("u:bob".to_string(), true), "new to observe");
        assert_eq!(g.observe("a:1"), ("u:bob".to_string(), false));
        g.link("a:2", "u:bob"); // bob stays canonical: nothing changes for a:1
        assert_eq!(g.observe("a:1"), ("u:bob".to_string(), false));
        assert_eq!(g.observe("a:2"), ("u:bob".to_string(), true));
    }

    #[test]
    fn lone_ids_are_remembered_in_bounded_generations() {
        let mut g = IdentityGraph::default();
        assert!(g.observe("a:first").1);
        for i in 0..RECENT_IDS {
            assert!(g.observe(&format!("a:{i}")).1);
        }
        // `a:first` sits in the previous generation now: still remembered.
        assert!(!g.observe("a:first").1);
        for i in RECENT_IDS..2 * RECENT_IDS {
            g.observe(&format!("a:{i}"));
        }
        // Two generations later it is forgotten, and reported again.
        assert!(g.observe("a:first").1);
        assert!(g.recent.iter().all(|s| s.len() <= RECENT_IDS) && g.is_empty());
    }
}
