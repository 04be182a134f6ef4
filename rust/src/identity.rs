//! The identity graph: anonymous ids and user ids joined into one canonical id per person.
//!
//! Nodes are `u:<userId>` or `a:<anonymousId>`; `identify` (anonymousId + userId) and `alias`
//! (previousId + userId) events add edges. Each connected component has one canonical id, chosen
//! so that it does not depend on the order edges arrive in: the smallest user id of the
//! component, or the smallest anonymous id if it has no user id. Merges are transitive (union-find
//! with path compression).

use std::collections::HashMap;

#[derive(Default)]
pub struct IdentityGraph {
    index: HashMap<String, usize>,
    parent: Vec<usize>,
    /// For a root: the best node id of its component.
    best: Vec<String>,
    names: Vec<String>,
}

fn better<'a>(a: &'a str, b: &'a str) -> &'a str {
    // user ids before anonymous ids, then the smaller.
    match (a.starts_with("u:"), b.starts_with("u:")) {
        (true, false) => a,
        (false, true) => b,
        _ => a.min(b),
    }
}

impl IdentityGraph {
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn node(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len();
        self.index.insert(name.to_string(), i);
        self.parent.push(i);
        self.best.push(name.to_string());
        self.names.push(name.to_string());
        i
    }

    fn root(&mut self, mut i: usize) -> usize {
        let mut r = i;
        while self.parent[r] != r {
            r = self.parent[r];
        }
        while self.parent[i] != r {
            let next = self.parent[i];
            self.parent[i] = r;
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
        let winner = better(&self.best[ra], &self.best[rb]).to_string();
        // The component whose canonical id changes is re-labelled: report its members.
        for (r, was) in [(ra, self.best[ra].clone()), (rb, self.best[rb].clone())] {
            if was != winner {
                let members: Vec<usize> = (0..self.names.len()).filter(|&n| self.root_of_readonly(n) == r).collect();
                changed.extend(members.into_iter().map(|n| self.names[n].clone()));
            }
        }
        self.parent[rb] = ra;
        self.best[ra] = winner;
        changed
    }

    fn root_of_readonly(&self, mut i: usize) -> usize {
        while self.parent[i] != i {
            i = self.parent[i];
        }
        i
    }

    /// The canonical id of a node (itself when unknown).
    pub fn canonical(&mut self, name: &str) -> String {
        match self.index.get(name) {
            Some(&i) => {
                let r = self.root(i);
                self.best[r].clone()
            }
            None => name.to_string(),
        }
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
}
