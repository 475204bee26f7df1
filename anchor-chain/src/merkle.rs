//! SHA3-256 Merkle trees shaped and prefixed as in RFC 9162 (Certificate Transparency v2):
//! a leaf is `H(0x00 || data)`, an inner node `H(0x01 || left || right)`, so no leaf can pose as
//! a node; a level with an odd count promotes its last node unchanged instead of duplicating it,
//! which gives the RFC's "largest power of two smaller than n" split.

use crate::bytes::Hash32;
use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// Hash of a leaf's data.
pub fn leaf_hash(data: &[u8]) -> Hash32 {
    let mut hasher = Sha3_256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(data);
    Hash32(hasher.finalize().into())
}

/// Hash of an inner node from its children.
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut hasher = Sha3_256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left.0);
    hasher.update(right.0);
    Hash32(hasher.finalize().into())
}

/// Root of the tree over leaf hashes; the empty tree's root is SHA3-256 of the empty string.
pub fn root(leaves: &[Hash32]) -> Hash32 {
    if leaves.is_empty() {
        return Hash32::digest(&[]);
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

fn next_level(level: &[Hash32]) -> Vec<Hash32> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => node_hash(left, right),
            [lone] => *lone,
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

/// Proof that a leaf sits at `index` in a tree of `tree_size` leaves: the sibling hashes from
/// the leaf up to the root (RFC 9162 section 2.1.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Position of the leaf, from 0.
    pub index: u64,
    /// Number of leaves in the tree.
    pub tree_size: u64,
    /// Sibling hashes, nearest the leaf first.
    pub path: Vec<Hash32>,
}

/// Builds the inclusion proof for `index`; `None` when the index is outside the tree.
pub fn prove(leaves: &[Hash32], index: usize) -> Option<InclusionProof> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let mut level = leaves.to_vec();
    let mut position = index;
    while level.len() > 1 {
        let sibling = position ^ 1;
        if sibling < level.len() {
            path.push(level[sibling]);
        }
        level = next_level(&level);
        position /= 2;
    }
    Some(InclusionProof {
        index: index as u64,
        tree_size: leaves.len() as u64,
        path,
    })
}

impl InclusionProof {
    /// Recomputes the root from `leaf` and the path (RFC 9162 section 2.1.3.2); `None` when the
    /// path has the wrong shape for the index and size.
    pub fn root_for(&self, leaf: &Hash32) -> Option<Hash32> {
        if self.index >= self.tree_size {
            return None;
        }
        let mut position = self.index;
        let mut last = self.tree_size - 1;
        let mut hash = *leaf;
        for sibling in &self.path {
            if last == 0 {
                return None;
            }
            if position & 1 == 1 || position == last {
                hash = node_hash(sibling, &hash);
                while position & 1 == 0 && position != 0 {
                    position >>= 1;
                    last >>= 1;
                }
            } else {
                hash = node_hash(&hash, sibling);
            }
            position >>= 1;
            last >>= 1;
        }
        (last == 0).then_some(hash)
    }

    /// Whether `leaf` is at this proof's index in the tree with `root`.
    pub fn verify(&self, leaf: &Hash32, root: &Hash32) -> bool {
        self.root_for(leaf).as_ref() == Some(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(count: usize) -> Vec<Hash32> {
        (0..count as u32)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect()
    }

    /// The RFC 9162 definition, written recursively, to check the iterative one against.
    fn reference_root(leaves: &[Hash32]) -> Hash32 {
        match leaves.len() {
            0 => Hash32::digest(&[]),
            1 => leaves[0],
            n => {
                let mut split = 1;
                while split * 2 < n {
                    split *= 2;
                }
                node_hash(
                    &reference_root(&leaves[..split]),
                    &reference_root(&leaves[split..]),
                )
            }
        }
    }

    #[test]
    fn root_matches_the_rfc_split_for_every_size_up_to_70() {
        for size in 0..70 {
            assert_eq!(
                root(&leaves(size)),
                reference_root(&leaves(size)),
                "size {size}"
            );
        }
    }

    #[test]
    fn every_leaf_of_every_size_up_to_40_proves_and_verifies() {
        for size in 1..40 {
            let tree = leaves(size);
            let tree_root = root(&tree);
            for (index, leaf) in tree.iter().enumerate() {
                let proof = prove(&tree, index).unwrap();
                assert!(proof.verify(leaf, &tree_root), "size {size} index {index}");
                let wrong_leaf = leaf_hash(b"not in the tree");
                assert!(!proof.verify(&wrong_leaf, &tree_root));
            }
        }
    }

    #[test]
    fn a_proof_moved_to_another_index_fails() {
        let tree = leaves(9);
        let tree_root = root(&tree);
        let mut proof = prove(&tree, 3).unwrap();
        proof.index = 2;
        assert!(!proof.verify(&tree[3], &tree_root));
        proof.index = 9;
        assert!(!proof.verify(&tree[3], &tree_root));
    }

    #[test]
    fn a_leaf_cannot_pose_as_an_inner_node() {
        let tree = leaves(2);
        let inner = node_hash(&tree[0], &tree[1]);
        let mut forged = vec![0x01];
        forged.extend_from_slice(&tree[0].0);
        forged.extend_from_slice(&tree[1].0);
        assert_ne!(leaf_hash(&forged), inner);
    }

    #[test]
    fn the_last_leaf_is_not_duplicated() {
        let tree = leaves(3);
        let mut duplicated = tree.clone();
        duplicated.push(tree[2]);
        assert_ne!(root(&tree), root(&duplicated));
    }
}
