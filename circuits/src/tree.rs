//! The consent tree: a 4-ary incremental Merkle tree of consent leaves with Poseidon nodes.
//!
//! Why 4-ary: a width-5 Poseidon over four children costs 297 constraints against 240 for a
//! width-3 one over two, so a tree of `4^d = 2^(2d)` leaves costs `d` node hashes where a binary
//! one costs `2d` (MISSION.md's bar of 4,000 constraints for 2^20 leaves; ARCHITECTURE.md has
//! the breakdown). A tree's `depth` counts 4-ary levels: depth 10 holds 2^20 leaves.
//!
//! Leaves are appended left to right; an empty or revoked leaf is zero, and the root of an empty
//! subtree of height `h` is precomputed (`zeros[h]`), so only the filled part of each level is
//! stored. A real leaf is a Poseidon output, which is zero with negligible probability, so no one
//! can prove membership of an empty or revoked slot.

use crate::error::Error;
use crate::field::{field_from_bytes, field_to_bytes, FIELD_BYTES};
use crate::poseidon::hash4;
use ark_bn254::Fr;
use ark_ff::Zero;
use rayon::prelude::*;

/// Children per inner node.
pub const ARITY: usize = 4;
/// Siblings per level of an authentication path: the node's three brothers.
pub const SIBLINGS_PER_LEVEL: usize = ARITY - 1;
/// The depth the server uses unless told otherwise: 4^10 = 2^20, about a million grants per
/// patient tree.
pub const DEFAULT_DEPTH: u32 = 10;
/// The deepest tree supported: 4^16 = 2^32 leaves (keys grow linearly with depth).
pub const MAX_DEPTH: u32 = 16;

const MAGIC: &[u8; 4] = b"MVCT";
/// Version 1 was the binary tree; its roots are not roots of this tree.
const FORMAT_VERSION: u8 = 2;
const HEADER_LEN: usize = MAGIC.len() + 1 + 1 + 8;

/// Checks that `depth` is in `1..=MAX_DEPTH`.
pub(crate) fn check_depth(depth: u32) -> Result<(), Error> {
    if (1..=MAX_DEPTH).contains(&depth) {
        Ok(())
    } else {
        Err(Error::UnsupportedDepth(depth))
    }
}

/// The roots of empty subtrees: `zeros[0] = 0`, `zeros[h + 1] = H(zeros[h]; 4)`.
fn zero_subtrees(depth: u32) -> Vec<Fr> {
    let mut zeros = Vec::with_capacity(depth as usize + 1);
    zeros.push(Fr::zero());
    for height in 0..depth as usize {
        zeros.push(hash4(&[zeros[height]; ARITY]));
    }
    zeros
}

/// Where a node at `height` on the path of leaf `leaf_index` sits among its parent's children
/// (`0..4`, leftmost first): base-4 digit `height` of the index.
pub(crate) fn child_position(leaf_index: u64, height: usize) -> usize {
    let shift = u32::try_from(2 * height).unwrap_or(u32::MAX);
    leaf_index.checked_shr(shift).unwrap_or(0) as usize % ARITY
}

/// The four children of a node, given one child, its position and its three brothers in order.
fn children_with(node: Fr, position: usize, siblings: &[Fr; SIBLINGS_PER_LEVEL]) -> [Fr; ARITY] {
    let mut brothers = siblings.iter();
    std::array::from_fn(|slot| {
        if slot == position {
            node
        } else {
            brothers.next().copied().unwrap_or_default()
        }
    })
}

/// A leaf's authentication path: its index and the three siblings at every level, leaf level
/// first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerklePath {
    /// The leaf's index; its base-4 digit `h` is the position of the path's node at height `h`
    /// among its parent's children.
    pub leaf_index: u64,
    /// Per level, from the leaf's level up to the root's children, the other three children of
    /// the parent, leftmost first.
    pub siblings: Vec<[Fr; SIBLINGS_PER_LEVEL]>,
}

impl MerklePath {
    /// The root reached from `leaf` along this path.
    pub fn root(&self, leaf: Fr) -> Fr {
        self.siblings
            .iter()
            .enumerate()
            .fold(leaf, |node, (height, siblings)| {
                hash4(&children_with(
                    node,
                    child_position(self.leaf_index, height),
                    siblings,
                ))
            })
    }
}

/// A patient's consent tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentTree {
    depth: u32,
    zeros: Vec<Fr>,
    /// `levels[0]` are the leaves inserted so far; `levels[h]` the nodes at height `h` that have
    /// a filled leaf below them; `levels[depth]` holds the root once a leaf is inserted.
    levels: Vec<Vec<Fr>>,
}

impl ConsentTree {
    /// An empty tree of the given depth (`1..=MAX_DEPTH`).
    pub fn new(depth: u32) -> Result<Self, Error> {
        check_depth(depth)?;
        Ok(ConsentTree {
            depth,
            zeros: zero_subtrees(depth),
            levels: vec![Vec::new(); depth as usize + 1],
        })
    }

    /// The tree's depth.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// How many leaves have been inserted (revoked ones included).
    pub fn len(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// Whether no leaf was ever inserted.
    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// How many leaves the tree can hold: `4^depth`.
    pub fn capacity(&self) -> u64 {
        1u64 << (2 * self.depth)
    }

    /// The current root.
    pub fn root(&self) -> Fr {
        self.node(self.depth as usize, 0)
    }

    /// The leaf at `index`, zero if revoked.
    pub fn leaf(&self, index: u64) -> Option<Fr> {
        self.levels[0].get(usize::try_from(index).ok()?).copied()
    }

    fn node(&self, height: usize, index: usize) -> Fr {
        self.levels[height]
            .get(index)
            .copied()
            .unwrap_or(self.zeros[height])
    }

    /// Appends a leaf and returns its index.
    pub fn insert(&mut self, leaf: Fr) -> Result<u64, Error> {
        let index = self.len();
        if index >= self.capacity() {
            return Err(Error::TreeFull {
                capacity: self.capacity(),
            });
        }
        self.levels[0].push(leaf);
        self.update_path(index as usize);
        Ok(index)
    }

    /// Revokes a grant by zeroing its leaf.
    pub fn revoke(&mut self, index: u64) -> Result<(), Error> {
        let slot = self.slot(index)?;
        self.levels[0][slot] = Fr::zero();
        self.update_path(slot);
        Ok(())
    }

    /// The authentication path of the leaf at `index`.
    pub fn path(&self, index: u64) -> Result<MerklePath, Error> {
        let slot = self.slot(index)?;
        let siblings = (0..self.depth as usize)
            .map(|height| {
                let node = slot >> (2 * height);
                let first_child = node - node % ARITY;
                let mut brothers = (first_child..first_child + ARITY)
                    .filter(|child| *child != node)
                    .map(|child| self.node(height, child));
                std::array::from_fn(|_| brothers.next().unwrap_or_default())
            })
            .collect();
        Ok(MerklePath {
            leaf_index: index,
            siblings,
        })
    }

    fn slot(&self, index: u64) -> Result<usize, Error> {
        usize::try_from(index)
            .ok()
            .filter(|slot| *slot < self.levels[0].len())
            .ok_or(Error::NoSuchLeaf {
                index,
                len: self.len(),
            })
    }

    /// Recomputes the nodes above the leaf at `slot`.
    fn update_path(&mut self, slot: usize) {
        for height in 0..self.depth as usize {
            let parent = slot >> (2 * (height + 1));
            let value = hash4(&std::array::from_fn(|child| {
                self.node(height, ARITY * parent + child)
            }));
            let level = &mut self.levels[height + 1];
            if parent < level.len() {
                level[parent] = value;
            } else {
                level.push(value);
            }
        }
    }

    /// The compact form the server persists: magic `MVCT`, format version 2, depth (1 byte),
    /// leaf count (8 bytes, little-endian), the leaves and then the root (32-byte canonical field
    /// elements). Inner nodes are not stored; [`ConsentTree::from_bytes`] recomputes them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + (self.levels[0].len() + 1) * FIELD_BYTES);
        bytes.extend_from_slice(MAGIC);
        bytes.push(FORMAT_VERSION);
        bytes.push(self.depth as u8);
        bytes.extend_from_slice(&self.len().to_le_bytes());
        for leaf in self.levels[0].iter().chain([&self.root()]) {
            bytes.extend_from_slice(&field_to_bytes(*leaf));
        }
        bytes
    }

    /// Reloads [`ConsentTree::to_bytes`], rebuilding the inner nodes (in parallel) and checking
    /// that they lead to the stored root.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let malformed = |reason: &str| Error::MalformedTree(reason.to_owned());
        let header = bytes
            .get(..HEADER_LEN)
            .ok_or_else(|| malformed("truncated header"))?;
        if &header[..4] != MAGIC {
            return Err(malformed("not a consent tree (bad magic)"));
        }
        if header[4] != FORMAT_VERSION {
            return Err(malformed("unknown format version"));
        }
        let depth = u32::from(header[5]);
        let capacity = ConsentTree::new(depth)?.capacity();
        let count_bytes: [u8; 8] = header[6..14].try_into().map_err(|_| malformed("header"))?;
        let count = u64::from_le_bytes(count_bytes);
        if count > capacity {
            return Err(malformed("more leaves than the depth allows"));
        }
        let body = &bytes[HEADER_LEN..];
        let expected_len = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_add(1))
            .and_then(|elements| elements.checked_mul(FIELD_BYTES))
            .ok_or_else(|| malformed("leaf count too large"))?;
        if body.len() != expected_len {
            return Err(Error::WrongLength {
                what: "consent tree body",
                expected: expected_len,
                actual: body.len(),
            });
        }
        let elements = body
            .par_chunks_exact(FIELD_BYTES)
            .map(|chunk| field_from_bytes("consent tree element", chunk))
            .collect::<Result<Vec<_>, _>>()?;
        let (stored_root, leaves) = elements.split_last().ok_or_else(|| malformed("no root"))?;
        let tree = ConsentTree::from_leaves(depth, leaves.to_vec())?;
        if tree.root() != *stored_root {
            return Err(malformed("the leaves do not lead to the stored root"));
        }
        Ok(tree)
    }

    /// The tree holding `leaves` in order (zero for a revoked one), built level by level in
    /// parallel: what a server restarting over its stored leaves needs, at a fraction of the
    /// cost of inserting them one by one.
    pub fn from_leaves(depth: u32, leaves: Vec<Fr>) -> Result<Self, Error> {
        let mut tree = ConsentTree::new(depth)?;
        if leaves.len() as u64 > tree.capacity() {
            return Err(Error::TreeFull {
                capacity: tree.capacity(),
            });
        }
        tree.levels[0] = leaves;
        for height in 0..depth as usize {
            let zero = tree.zeros[height];
            let parents = tree.levels[height]
                .par_chunks(ARITY)
                .map(|children| {
                    hash4(&std::array::from_fn(|child| {
                        children.get(child).copied().unwrap_or(zero)
                    }))
                })
                .collect();
            tree.levels[height + 1] = parents;
        }
        Ok(tree)
    }
}
