//! Pods shared among zones, as a topology spread over zones or an anti-affinity by zone
//! asks of the pods that follow it.

use std::collections::BTreeMap;

/// How `count` new pods of a set share `zones`, given how many pods of the set each zone
/// runs: each goes to the zone with the fewest so far (the first by name on a tie), so the
/// skew ends as small as it can. No zone passes `most_per_zone`; the pods that fit nowhere
/// are the second value.
pub fn share(
    count: u32,
    running: &BTreeMap<String, u32>,
    zones: &[String],
    most_per_zone: Option<u32>,
) -> (BTreeMap<String, u32>, u32) {
    let mut total: BTreeMap<&str, u32> = zones
        .iter()
        .map(|z| (z.as_str(), running.get(z).copied().unwrap_or(0)))
        .collect();
    let mut shares: BTreeMap<String, u32> = BTreeMap::new();
    for placed in 0..count {
        let emptiest = total
            .iter()
            .filter(|(_, n)| most_per_zone.is_none_or(|most| **n < most))
            .min_by_key(|(z, n)| (**n, **z))
            .map(|(z, _)| *z);
        let Some(zone) = emptiest else {
            return (shares, count - placed);
        };
        *total.get_mut(zone).expect("a zone") += 1;
        *shares.entry(zone.to_string()).or_default() += 1;
    }
    (shares, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones() -> Vec<String> {
        ["a", "b", "c"].map(String::from).to_vec()
    }

    #[test]
    fn new_pods_level_the_zones_from_what_runs() {
        let running = BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 1)]);
        let (shares, left) = share(5, &running, &zones(), None);
        // b and c rise to a's 3.
        assert_eq!(shares, BTreeMap::from([("b".into(), 2), ("c".into(), 3)]));
        let (shares, _) = share(2, &running, &zones(), None);
        assert_eq!(shares, BTreeMap::from([("b".into(), 1), ("c".into(), 1)]));
        assert_eq!(left, 0);
    }

    #[test]
    fn one_per_zone_leaves_the_rest_over() {
        let running = BTreeMap::from([("b".to_string(), 1)]);
        let (shares, left) = share(4, &running, &zones(), Some(1));
        assert_eq!(shares, BTreeMap::from([("a".into(), 1), ("c".into(), 1)]));
        assert_eq!(left, 2);
    }
}
