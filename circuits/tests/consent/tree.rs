//! The consent tree: insert, revoke, paths, and the persisted form.

use medvault_circuits::{ConsentTree, Error, Fr};

fn tree_with(leaves: u64) -> ConsentTree {
    let mut tree = ConsentTree::new(2).unwrap();
    for leaf in 0..leaves {
        assert_eq!(tree.insert(Fr::from(1000 + leaf)).unwrap(), leaf);
    }
    tree
}

#[test]
fn paths_lead_to_the_root() {
    let tree = tree_with(5);
    for index in 0..5 {
        let path = tree.path(index).unwrap();
        assert_eq!(path.root(tree.leaf(index).unwrap()), tree.root());
    }
    assert!(matches!(
        tree.path(5),
        Err(Error::NoSuchLeaf { index: 5, len: 5 })
    ));
}

#[test]
fn revoking_zeroes_the_leaf_and_changes_the_root() {
    let mut tree = tree_with(3);
    let before = tree.root();
    tree.revoke(1).unwrap();
    assert_eq!(tree.leaf(1), Some(Fr::from(0u8)));
    assert_ne!(tree.root(), before);
    let path = tree.path(2).unwrap();
    assert_eq!(path.root(tree.leaf(2).unwrap()), tree.root());
    assert!(matches!(tree.revoke(9), Err(Error::NoSuchLeaf { .. })));
}

#[test]
fn empty_and_full_trees() {
    let empty = ConsentTree::new(2).unwrap();
    let mut full = tree_with(16);
    assert_ne!(empty.root(), full.root());
    assert!(matches!(
        full.insert(Fr::from(1u8)),
        Err(Error::TreeFull { capacity: 16 })
    ));
    for depth in [0, 17] {
        assert!(matches!(
            ConsentTree::new(depth),
            Err(Error::UnsupportedDepth(_))
        ));
    }
    // Filling every slot with zero is the empty tree again.
    let mut zeroed = ConsentTree::new(2).unwrap();
    zeroed.insert(Fr::from(0u8)).unwrap();
    assert_eq!(zeroed.root(), empty.root());
}

#[test]
fn persisted_form_round_trips_and_checks_the_root() {
    for leaves in [0, 1, 7, 16] {
        let tree = tree_with(leaves);
        assert_eq!(ConsentTree::from_bytes(&tree.to_bytes()).unwrap(), tree);
    }
    let bytes = tree_with(7).to_bytes();
    let mut wrong_leaf = bytes.clone();
    wrong_leaf[14] ^= 1;
    assert!(matches!(
        ConsentTree::from_bytes(&wrong_leaf),
        Err(Error::MalformedTree(_))
    ));
    let mut wrong_root = bytes.clone();
    let last = wrong_root.len() - 32;
    wrong_root[last] ^= 1;
    assert!(matches!(
        ConsentTree::from_bytes(&wrong_root),
        Err(Error::MalformedTree(_))
    ));
    for length in [0, 5, 14, bytes.len() - 1] {
        assert!(ConsentTree::from_bytes(&bytes[..length]).is_err());
    }
    let mut huge_count = bytes.clone();
    huge_count[6..14].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        ConsentTree::from_bytes(&huge_count),
        Err(Error::MalformedTree(_))
    ));
}

#[test]
fn a_tree_built_from_its_leaves_equals_the_one_grown_by_inserts_and_revocations() {
    let mut grown = tree_with(13);
    grown.revoke(4).unwrap();
    grown.revoke(11).unwrap();
    let leaves: Vec<Fr> = (0..grown.len()).map(|i| grown.leaf(i).unwrap()).collect();
    let built = ConsentTree::from_leaves(grown.depth(), leaves).unwrap();
    assert_eq!(built, grown);
    assert_eq!(built.path(9).unwrap(), grown.path(9).unwrap());
    assert_eq!(
        ConsentTree::from_leaves(3, Vec::new()).unwrap(),
        ConsentTree::new(3).unwrap()
    );
    assert!(matches!(
        ConsentTree::from_leaves(1, vec![Fr::from(1u64); 5]),
        Err(Error::TreeFull { capacity: 4 })
    ));
}
