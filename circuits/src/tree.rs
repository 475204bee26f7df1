//! The consent tree: a binary incremental Merkle tree of consent leaves with Poseidon nodes.
//!
//! Leaves are appended left to right; an empty or revoked leaf is zero, and the root of an empty
//! subtree of height `h` is precomputed (`zeros[h]`), so only the filled part of each level is
//! stored. A real leaf is a Poseidon output, which is zero with negligible probability, so no one
//! can prove membership of an empty or revoked slot.

use crate::encoding::{field_from_bytes, field_to_bytes, FIELD_BYTES};
use crate::error::Error;
use crate::poseidon::hash2;
use ark_bn254::Fr;
use ark_ff::Zero;
use rayon::prelude::*;

/// The depth the server uses unless told otherwise: about a million grants per patient tree.
pub const DEFAULT_DEPTH: u32 = 20;
/// The deepest tree supported (leaf indices are `u64`, keys grow linearly with depth).
pub const MAX_DEPTH: u32 = 32;

const MAGIC: &[u8; 4] = b"MVCT";
const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 1 + 1 + 8;

/// Checks that `depth` is in `1..=MAX_DEPTH`.
pub(crate) fn check_depth(depth: u32) -> Result<(), Error> {
    if (1..=MAX_DEPTH).contains(&depth) {
        Ok(())
    } else {
        Err(Error::UnsupportedDepth(depth))
    }
}

/// The roots of empty subtrees: `zeros[0] = 0`, `zeros[h + 1] = H(zeros[h], zeros[h])`.
fn zero_subtrees(depth: u32) -> Vec<Fr> {
    let mut zeros = Vec::with_capacity(depth as usize + 1);
    zeros.push(Fr::zero());
    for height in 0..depth as usize {
        zeros.push(hash2(zeros[height], zeros[height]));
    }
    zeros
}

/// A leaf's authentication path: its index and the sibling at every level, leaf level first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerklePath {
    /// The leaf's index; bit `h` says whether the node at height `h` is a right child.
    pub leaf_index: u64,
    /// One sibling per level, from the leaf's sibling up to the root's children.
    pub siblings: Vec<Fr>,
}

impl MerklePath {
    /// The root reached from `leaf` along this path.
    pub fn root(&self, leaf: Fr) -> Fr {
        self.siblings
            .iter()
            .enumerate()
            .fold(leaf, |node, (height, sibling)| {
                if self.leaf_index >> height & 1 == 1 {
                    hash2(*sibling, node)
                } else {
                    hash2(node, *sibling)
                }
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

    /// How many leaves the tree can hold.
    pub fn capacity(&self) -> u64 {
        1u64 << self.depth
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
            .map(|height| self.node(height, (slot >> height) ^ 1))
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
            let parent = slot >> (height + 1);
            let value = hash2(
                self.node(height, 2 * parent),
                self.node(height, 2 * parent + 1),
            );
            let level = &mut self.levels[height + 1];
            if parent < level.len() {
                level[parent] = value;
            } else {
                level.push(value);
            }
        }
    }

    /// The compact form the server persists: magic `MVCT`, format version 1, depth (1 byte),
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
        let mut tree = ConsentTree::new(depth)?;
        let count_bytes: [u8; 8] = header[6..14].try_into().map_err(|_| malformed("header"))?;
        let count = u64::from_le_bytes(count_bytes);
        if count > tree.capacity() {
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
        tree.levels[0] = leaves.to_vec();
        for height in 0..depth as usize {
            let zero = tree.zeros[height];
            let parents = tree.levels[height]
                .par_chunks(2)
                .map(|pair| hash2(pair[0], pair.get(1).copied().unwrap_or(zero)))
                .collect();
            tree.levels[height + 1] = parents;
        }
        if tree.root() != *stored_root {
            return Err(malformed("the leaves do not lead to the stored root"));
        }
        Ok(tree)
    }
}
