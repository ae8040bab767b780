//! The hashed policy: determinism, weighted shares, minimal movement.

use dps_allocation::{HashedPolicy, HubSet, HubTable};
use proptest::prelude::*;

use crate::support::{hubs, linked, weighted};

const DEVICES: usize = 100_000;

fn host(table: &HubTable, set: HubSet, id: &str) -> String {
    let index = HashedPolicy::choose(id, table, set).expect("non-empty set");
    table.get(index).host_name().to_owned()
}

/// Count how many of `DEVICES` ids (`{prefix}-{i}`) each hub wins.
fn shares(table: &HubTable, prefix: &str) -> Vec<usize> {
    let mut counts = vec![0usize; table.len()];
    let mut id = String::with_capacity(prefix.len() + 12);
    for i in 0..DEVICES {
        id.clear();
        id.push_str(prefix);
        id.push('-');
        id.push_str(&i.to_string());
        let index = HashedPolicy::choose(&id, table, table.all()).expect("hubs");
        counts[index.get()] += 1;
    }
    counts
}

#[test]
fn golden_choices_do_not_change_between_releases() {
    // A compatibility promise: these devices were on these hubs in the
    // first release and must stay there (see hash.rs golden_values).
    let table = HubTable::new(&hubs(5)).unwrap();
    let got: Vec<String> = ["dev-1", "dev-2", "Sensor-0042", "x"]
        .iter()
        .map(|id| host(&table, table.all(), id))
        .collect();
    assert_eq!(got, GOLDEN_HUBS);
}

const GOLDEN_HUBS: [&str; 4] = [
    "hub-4.example.net",
    "hub-3.example.net",
    "hub-1.example.net",
    "hub-1.example.net",
];

#[test]
fn empty_set_chooses_nothing() {
    let table = HubTable::new(&hubs(3)).unwrap();
    assert_eq!(HashedPolicy::choose("dev-1", &table, HubSet::EMPTY), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Same id, same hubs → same hub; regardless of the id's case, of the
    /// hubs' case, of their order in the table, and of the table being
    /// rebuilt (a new process).
    #[test]
    fn deterministic(
        id in "[a-zA-Z0-9][a-zA-Z0-9._:-]{0,40}[a-zA-Z0-9]",
        n in 1usize..20,
        rotate in 0usize..20,
    ) {
        let linked_hubs = hubs(n);
        let table = HubTable::new(&linked_hubs).unwrap();
        let first = host(&table, table.all(), &id);
        prop_assert_eq!(&first, &host(&table, table.all(), &id));
        prop_assert_eq!(&first, &host(&table, table.all(), &id.to_ascii_uppercase()));

        let mut reordered = linked_hubs.clone();
        reordered.rotate_left(rotate % n);
        let reordered = HubTable::new(&reordered).unwrap();
        prop_assert_eq!(&first, &host(&reordered, reordered.all(), &id));

        let shouting: Vec<_> = linked_hubs
            .iter()
            .map(|h| linked(&h.host_name.to_ascii_uppercase()))
            .collect();
        let shouting = HubTable::new(&shouting).unwrap();
        prop_assert_eq!(
            first.to_ascii_uppercase(),
            host(&shouting, shouting.all(), &id)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Over 100,000 ids each hub's share is within 0.02 of w_i / Σw.
    #[test]
    fn shares_follow_weights(
        weights in prop::collection::vec(1u32..=1000, 1..8),
        prefix in "[a-z]{1,8}",
    ) {
        let linked_hubs: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| weighted(&format!("hub-{i}.example.net"), w))
            .collect();
        let table = HubTable::new(&linked_hubs).unwrap();
        let counts = shares(&table, &prefix);
        let total: u32 = weights.iter().sum();
        for (i, &w) in weights.iter().enumerate() {
            let expected = f64::from(w) / f64::from(total);
            let actual = counts[i] as f64 / DEVICES as f64;
            prop_assert!(
                (actual - expected).abs() <= 0.02,
                "hub {} weight {} of {}: share {} expected {}", i, w, total, actual, expected
            );
        }
    }

    /// Adding one hub to N equally weighted hubs moves at most 1/(N+1) + 2%
    /// of the devices, and every device that moves goes to the new hub.
    #[test]
    fn adding_a_hub_moves_few_devices(n in 1usize..16, prefix in "[a-z]{1,8}") {
        let before = HubTable::new(&hubs(n)).unwrap();
        let after = HubTable::new(&hubs(n + 1)).unwrap();
        let new_hub = format!("hub-{n}.example.net");
        let mut moved = 0usize;
        for i in 0..DEVICES {
            let id = format!("{prefix}-{i}");
            let old = host(&before, before.all(), &id);
            let new = host(&after, after.all(), &id);
            if old != new {
                prop_assert_eq!(&new, &new_hub);
                moved += 1;
            }
        }
        let bound = 1.0 / (n as f64 + 1.0) + 0.02;
        prop_assert!(
            moved as f64 / DEVICES as f64 <= bound,
            "moved {} of {} (bound {})", moved, DEVICES, bound
        );
    }

    /// With weights, the moved share is at most w_new / Σw' + 2%.
    #[test]
    fn adding_a_weighted_hub_moves_its_share(
        weights in prop::collection::vec(1u32..=1000, 1..6),
        new_weight in 1u32..=1000,
    ) {
        let mut linked_hubs: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| weighted(&format!("hub-{i}.example.net"), w))
            .collect();
        let before = HubTable::new(&linked_hubs).unwrap();
        linked_hubs.push(weighted("new-hub.example.net", new_weight));
        let after = HubTable::new(&linked_hubs).unwrap();
        let mut moved = 0usize;
        for i in 0..DEVICES / 2 {
            let id = format!("dev-{i}");
            let old = host(&before, before.all(), &id);
            let new = host(&after, after.all(), &id);
            if old != new {
                prop_assert_eq!(new.as_str(), "new-hub.example.net");
                moved += 1;
            }
        }
        let total: u32 = weights.iter().sum::<u32>() + new_weight;
        let bound = f64::from(new_weight) / f64::from(total) + 0.02;
        prop_assert!((moved as f64 / (DEVICES / 2) as f64) <= bound);
    }
}
