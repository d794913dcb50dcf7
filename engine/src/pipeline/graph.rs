//! Ordering steps by their data dependencies, and finding cycles.

use std::collections::BTreeMap;

/// Orders nodes so that each comes after its dependencies.
///
/// `deps[i]` lists the nodes node `i` depends on. Ties keep the original
/// order. On a cycle, returns the nodes of one cycle in dependency order
/// with the first repeated at the end.
pub(crate) fn topological_order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let mut remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); deps.len()];
    for (node, node_deps) in deps.iter().enumerate() {
        for &dep in node_deps {
            dependents[dep].push(node);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..deps.len()).filter(|&n| remaining[n] == 0).collect();
    let mut order = Vec::with_capacity(deps.len());
    while let Some(node) = ready.pop_first() {
        order.push(node);
        for &next in &dependents[node] {
            remaining[next] -= 1;
            if remaining[next] == 0 {
                ready.insert(next);
            }
        }
    }
    if order.len() == deps.len() { Ok(order) } else { Err(find_cycle(deps, &remaining)) }
}

/// Walks dependencies from an unfinished node until one repeats.
fn find_cycle(deps: &[Vec<usize>], remaining: &[usize]) -> Vec<usize> {
    let start = (0..deps.len()).find(|&n| remaining[n] > 0).unwrap_or(0);
    let mut seen_at = BTreeMap::new();
    let mut path = Vec::new();
    let mut node = start;
    while !seen_at.contains_key(&node) {
        seen_at.insert(node, path.len());
        path.push(node);
        // Every unfinished node has an unfinished dependency.
        node = deps[node].iter().copied().find(|&d| remaining[d] > 0).unwrap_or(node);
    }
    let mut cycle = path.split_off(seen_at[&node]);
    cycle.reverse();
    cycle.push(cycle[0]);
    cycle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_dependencies_first() {
        // 0 <- 2, 1 <- 2, 2 <- 3
        let deps = vec![vec![], vec![], vec![0, 1], vec![2]];
        assert_eq!(topological_order(&deps).unwrap(), vec![0, 1, 2, 3]);
        let deps = vec![vec![1], vec![]];
        assert_eq!(topological_order(&deps).unwrap(), vec![1, 0]);
    }

    #[test]
    fn reports_a_cycle_in_dependency_order() {
        // 0 depends on 2, 2 on 1, 1 on 0: 0 -> 1 -> 2 -> 0 in data-flow order.
        let deps = vec![vec![2], vec![0], vec![1], vec![]];
        let cycle = topological_order(&deps).unwrap_err();
        assert_eq!(cycle.len(), 4);
        assert_eq!(cycle.first(), cycle.last());
        for pair in cycle.windows(2) {
            assert!(deps[pair[1]].contains(&pair[0]), "{cycle:?}");
        }
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        assert_eq!(topological_order(&[vec![0]]).unwrap_err(), vec![0, 0]);
    }
}
