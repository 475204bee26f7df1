//! Each hospital's consent tree (MISSION.md decision 4): kept in PostgreSQL as its leaves, its
//! current root and every root it has had, and mirrored in memory for authentication paths.
//!
//! PostgreSQL is the truth. A change locks the hospital's `consent_trees` row, so changes to one
//! tree are serialized across every server sharing the database; the memory copy is used only
//! while its sequence and root are the stored ones, and is otherwise rebuilt from the stored
//! leaves, so a server never answers from a tree another server has moved on from. Every change
//! records the new root and queues a `ConsentRoot` entry in the transaction that makes it.

use crate::anchoring::outbox;
use crate::crypto::MasterKey;
use crate::error::{VaultError, VaultResult};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::entry::Entry;
use medvault_circuits::field::{field_from_bytes, field_to_bytes, field_to_hex};
use medvault_circuits::Scope;
use medvault_circuits::{consent_leaf, random_field_element, ConsentTree, Fr, MerklePath, OsRng};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;
use uuid::Uuid;

/// The `ConsentRoot` chain entry of `hospital`'s tree at `root`, its `sequence`th version: what
/// the vault queues when the tree changes, the API answers anchoring for and `audit access`
/// looks for.
pub fn consent_root_entry(hospital: Uuid, root: Fr, sequence: u64) -> Entry {
    Entry::ConsentRoot {
        hospital: hospital.to_string(),
        root: Hash32(field_to_bytes(root)),
        sequence,
    }
}

/// A leaf's fields as the grant gives them, the commitment and salt as stored.
struct LeafFields {
    grant: Uuid,
    patient: Uuid,
    scope: i32,
    expires_at: DateTime<Utc>,
    grantee_commitment: Vec<u8>,
    salt: Vec<u8>,
}

/// Whole seconds since the epoch: a grant's expiry as its leaf commits to it, and a proof's
/// `now`.
pub(crate) fn unix_seconds(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp()).unwrap_or(0)
}

/// The stored tree disagrees with the grants it was built from.
#[derive(Debug, thiserror::Error)]
#[error(
    "the consent tree of hospital {hospital} does not match the database: {difference}; refusing \
     to start, since proofs against it would open the wrong grants (restore the database from a \
     backup, or ask the operators)"
)]
pub struct TreeMismatch {
    /// Whose tree.
    pub hospital: Uuid,
    /// What differs.
    pub difference: String,
}

/// One change to a hospital's tree, with whom it touched (for the window in which a proof
/// against the root before it is still accepted).
pub(crate) struct TreeChange {
    /// Grants whose leaves are zeroed.
    pub revoked_grants: Vec<Uuid>,
    /// Leaves to append: a grant and the grantee commitment it goes to, each.
    pub added: Vec<(crate::grants::Grant, Fr)>,
    /// The doctor or recipient organization the change concerns.
    pub grantee: Uuid,
    /// The patient it concerns; `None` for all of the grantee's patients (a key rotation).
    pub patient: Option<Uuid>,
}

struct MemoryTree {
    tree: ConsentTree,
    sequence: i64,
}

/// One hospital's tree as this process last saw it (`None`: not loaded, or dropped after a
/// failed change), behind a lock of its own, so that hospitals never wait for one another.
type TreeSlot = Arc<Mutex<Option<MemoryTree>>>;

/// All hospitals' trees as this process last saw them.
pub(crate) struct ConsentTrees {
    depth: u32,
    trees: std::sync::Mutex<HashMap<Uuid, TreeSlot>>,
}

/// A leaf's authentication path with the tree state it belongs to.
pub(crate) struct PathAt {
    pub path: MerklePath,
    pub root: Fr,
    pub sequence: i64,
}

/// A field element the database holds; one that does not decode is the server's own fault.
pub(crate) fn stored_field(what: &'static str, bytes: &[u8]) -> VaultResult<Fr> {
    field_from_bytes(what, bytes).map_err(VaultError::internal)
}

impl ConsentTrees {
    /// Loads every hospital's tree, recomputing each leaf from its grant and each root from the
    /// leaves, and checks them against what is stored. CPU-heavy on a large database: hashing is
    /// spread over a blocking thread pool.
    pub(crate) async fn load_checked(
        client: &impl GenericClient,
        master: &MasterKey,
        depth: u32,
    ) -> Result<Self, super::ConsentStartError> {
        let trees = client
            .query(
                "SELECT hospital_id, depth, leaf_count, sequence, root FROM consent_trees",
                &[],
            )
            .await?;
        let mut loaded = HashMap::new();
        for row in trees {
            let hospital: Uuid = row.get(0);
            let stored_depth: i32 = row.get(1);
            if u32::try_from(stored_depth).ok() != Some(depth) {
                return Err(super::ConsentStartError::Depth {
                    keys: depth,
                    stored: stored_depth,
                });
            }
            let mismatch = |difference: String| TreeMismatch {
                hospital,
                difference,
            };
            let leaf_count: i64 = row.get(2);
            let sequence: i64 = row.get(3);
            let stored_root: Vec<u8> = row.get(4);
            let fields = leaf_fields(client, hospital).await?;
            if fields.len() as i64 != leaf_count {
                return Err(mismatch(format!(
                    "{} leaves are stored but the tree says it holds {leaf_count}",
                    fields.len()
                ))
                .into());
            }
            let expected: Vec<(Fr, Fr)> = fields
                .par_iter()
                .map(|(fields, stored, revoked)| {
                    let stored = stored_field("consent leaf", stored)?;
                    let computed = if *revoked {
                        Fr::from(0u8)
                    } else {
                        leaf_of(master, fields)?
                    };
                    Ok((stored, computed))
                })
                .collect::<VaultResult<_>>()?;
            if let Some((index, (stored, computed))) = expected
                .iter()
                .enumerate()
                .find(|(_, (stored, computed))| stored != computed)
            {
                return Err(mismatch(format!(
                    "leaf {index} (grant {}) is stored as {} but its grant gives {}",
                    fields[index].0.grant,
                    field_to_hex(*stored),
                    field_to_hex(*computed)
                ))
                .into());
            }
            let tree =
                ConsentTree::from_leaves(depth, expected.into_iter().map(|(s, _)| s).collect())
                    .map_err(VaultError::internal)?;
            let stored_root = stored_field("consent root", &stored_root)?;
            if tree.root() != stored_root {
                return Err(mismatch(format!(
                    "its {leaf_count} leaves lead to root {} but the stored root at sequence \
                     {sequence} is {}",
                    field_to_hex(tree.root()),
                    field_to_hex(stored_root)
                ))
                .into());
            }
            let recorded: Option<Vec<u8>> = client
                .query_opt(
                    "SELECT root FROM consent_roots WHERE hospital_id = $1 AND sequence = $2",
                    &[&hospital, &sequence],
                )
                .await?
                .map(|row| row.get(0));
            if sequence > 0 && recorded.as_deref() != Some(&field_to_bytes(stored_root)[..]) {
                return Err(mismatch(format!(
                    "the root history has no root {} for sequence {sequence}",
                    field_to_hex(stored_root)
                ))
                .into());
            }
            let slot = Arc::new(Mutex::new(Some(MemoryTree { tree, sequence })));
            loaded.insert(hospital, slot);
        }
        Ok(ConsentTrees {
            depth,
            trees: std::sync::Mutex::new(loaded),
        })
    }

    /// No tree loaded yet: each is rebuilt from the database on its first use.
    pub(crate) fn unloaded(depth: u32) -> Self {
        ConsentTrees {
            depth,
            trees: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The depth of every tree.
    pub(crate) fn depth(&self) -> u32 {
        self.depth
    }

    /// Applies `change` to `hospital`'s tree inside the caller's transaction: zeroes and appends
    /// leaves, records the new root and queues its anchor. If the transaction does not commit,
    /// the memory copy no longer matches the stored root and is rebuilt on its next use.
    pub(crate) async fn apply(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
        master: &MasterKey,
        hospital: Uuid,
        change: TreeChange,
    ) -> VaultResult<()> {
        let depth = i32::try_from(self.depth).unwrap_or(i32::MAX);
        let empty_root = field_to_bytes(
            ConsentTree::new(self.depth)
                .map_err(VaultError::internal)?
                .root(),
        );
        transaction
            .execute(
                "INSERT INTO consent_trees (hospital_id, depth, leaf_count, sequence, root)
                 VALUES ($1, $2, 0, 0, $3) ON CONFLICT (hospital_id) DO NOTHING",
                &[&hospital, &depth, &empty_root.as_slice()],
            )
            .await?;
        let row = transaction
            .query_one(
                "SELECT sequence, root FROM consent_trees WHERE hospital_id = $1 FOR UPDATE",
                &[&hospital],
            )
            .await?;
        let stored_sequence: i64 = row.get(0);
        let stored_root = stored_field("consent root", row.get(1))?;
        let slot = self.slot(hospital);
        let mut memory = slot.lock().await;
        let current = self
            .current(
                &mut memory,
                transaction,
                hospital,
                stored_sequence,
                stored_root,
            )
            .await?;
        let outcome = apply_to(transaction, master, hospital, current, change).await;
        if outcome.is_err() {
            *memory = None;
        }
        outcome
    }

    /// The authentication path of the leaf at `index` with the root it leads to, as stored now.
    pub(crate) async fn path(
        &self,
        client: &impl GenericClient,
        hospital: Uuid,
        index: u64,
    ) -> VaultResult<PathAt> {
        let row = client
            .query_opt(
                "SELECT sequence, root FROM consent_trees WHERE hospital_id = $1",
                &[&hospital],
            )
            .await?
            .ok_or(VaultError::NotFound("consent tree"))?;
        let sequence: i64 = row.get(0);
        let root = stored_field("consent root", row.get(1))?;
        let slot = self.slot(hospital);
        let mut memory = slot.lock().await;
        let current = self
            .current(&mut memory, client, hospital, sequence, root)
            .await?;
        let path = current
            .tree
            .path(index)
            .map_err(|_| VaultError::NotFound("consent leaf"))?;
        Ok(PathAt {
            path,
            root: current.tree.root(),
            sequence: current.sequence,
        })
    }

    /// The lock over `hospital`'s memory copy, made empty on first use.
    fn slot(&self, hospital: Uuid) -> TreeSlot {
        let mut trees = match self.trees.lock() {
            Ok(trees) => trees,
            Err(poisoned) => poisoned.into_inner(),
        };
        trees.entry(hospital).or_default().clone()
    }

    /// The memory copy of `hospital`'s tree, rebuilt from the stored leaves (read through
    /// `client`, in the snapshot `sequence` and `root` were read in) unless it is at the stored
    /// sequence and root.
    async fn current<'a>(
        &self,
        memory: &'a mut Option<MemoryTree>,
        client: &impl GenericClient,
        hospital: Uuid,
        sequence: i64,
        root: Fr,
    ) -> VaultResult<&'a mut MemoryTree> {
        let fresh = memory
            .as_ref()
            .is_some_and(|tree| tree.sequence == sequence && tree.tree.root() == root);
        if !fresh {
            let rows = client
                .query(
                    "SELECT leaf FROM consent_leaves WHERE hospital_id = $1 ORDER BY leaf_index",
                    &[&hospital],
                )
                .await?;
            let leaves = rows
                .iter()
                .map(|row| stored_field("consent leaf", row.get(0)))
                .collect::<VaultResult<Vec<_>>>()?;
            let tree =
                ConsentTree::from_leaves(self.depth, leaves).map_err(VaultError::internal)?;
            if tree.root() != root {
                return Err(VaultError::internal(TreeMismatch {
                    hospital,
                    difference: format!(
                        "the stored leaves lead to {} but the stored root is {}",
                        field_to_hex(tree.root()),
                        field_to_hex(root)
                    ),
                }));
            }
            *memory = Some(MemoryTree { tree, sequence });
        }
        memory.as_mut().ok_or_else(|| {
            VaultError::internal(TreeMismatch {
                hospital,
                difference: "the tree vanished while in use".into(),
            })
        })
    }
}

/// The leaf a grant's fields give.
fn leaf_of(master: &MasterKey, fields: &LeafFields) -> VaultResult<Fr> {
    Ok(consent_leaf(
        stored_field("grantee commitment", &fields.grantee_commitment)?,
        master.patient_consent_pseudonym(fields.patient),
        Scope::from_bits(u16::try_from(fields.scope).map_err(VaultError::internal)?),
        unix_seconds(fields.expires_at),
        stored_field("consent salt", &fields.salt)?,
    ))
}

/// Every stored leaf of `hospital` in tree order: its grant's fields, the stored value and
/// whether it was revoked.
async fn leaf_fields(
    client: &impl GenericClient,
    hospital: Uuid,
) -> VaultResult<Vec<(LeafFields, Vec<u8>, bool)>> {
    let rows = client
        .query(
            "SELECT l.grant_id, g.patient_id, g.scope, g.expires_at, l.grantee_commitment, l.salt,
                    l.leaf, l.revoked_sequence IS NOT NULL, l.leaf_index
             FROM consent_leaves l JOIN grants g ON g.id = l.grant_id
             WHERE l.hospital_id = $1 ORDER BY l.leaf_index",
            &[&hospital],
        )
        .await?;
    rows.iter()
        .enumerate()
        .map(|(position, row)| {
            let index: i64 = row.get(8);
            if index != position as i64 {
                return Err(VaultError::internal(TreeMismatch {
                    hospital,
                    difference: format!("leaf {position} is missing (the next stored is {index})"),
                }));
            }
            Ok((
                LeafFields {
                    grant: row.get(0),
                    patient: row.get(1),
                    scope: row.get(2),
                    expires_at: row.get(3),
                    grantee_commitment: row.get(4),
                    salt: row.get(5),
                },
                row.get(6),
                row.get(7),
            ))
        })
        .collect()
}

async fn apply_to(
    transaction: &deadpool_postgres::Transaction<'_>,
    master: &MasterKey,
    hospital: Uuid,
    current: &mut MemoryTree,
    change: TreeChange,
) -> VaultResult<()> {
    let sequence = current.sequence + 1;
    let zero = field_to_bytes(Fr::from(0u8));
    let revoked = transaction
        .query(
            "UPDATE consent_leaves SET leaf = $3, revoked_sequence = $4
             WHERE hospital_id = $1 AND grant_id = ANY($2) AND revoked_sequence IS NULL
             RETURNING leaf_index",
            &[
                &hospital,
                &change.revoked_grants,
                &zero.as_slice(),
                &sequence,
            ],
        )
        .await?;
    for row in &revoked {
        let index: i64 = row.get(0);
        current
            .tree
            .revoke(u64::try_from(index).map_err(VaultError::internal)?)
            .map_err(VaultError::internal)?;
    }
    for (grant, commitment) in &change.added {
        let salt = random_field_element(&mut OsRng);
        let fields = LeafFields {
            grant: grant.id,
            patient: grant.patient_id,
            scope: grant.scope_mask(),
            expires_at: grant.expires_at,
            grantee_commitment: field_to_bytes(*commitment).to_vec(),
            salt: field_to_bytes(salt).to_vec(),
        };
        let leaf = leaf_of(master, &fields)?;
        let index = current.tree.insert(leaf).map_err(|_| {
            VaultError::Conflict(format!(
                "the hospital's consent tree is full ({} grants)",
                current.tree.capacity()
            ))
        })?;
        transaction
            .execute(
                "INSERT INTO consent_leaves (hospital_id, leaf_index, grant_id, grantee_commitment,
                                             salt, leaf, added_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &hospital,
                    &i64::try_from(index).map_err(VaultError::internal)?,
                    &grant.id,
                    &fields.grantee_commitment,
                    &fields.salt,
                    &field_to_bytes(leaf).as_slice(),
                    &sequence,
                ],
            )
            .await?;
    }
    let root = current.tree.root();
    let root_bytes = field_to_bytes(root);
    transaction
        .execute(
            "UPDATE consent_trees SET leaf_count = $2, sequence = $3, root = $4
             WHERE hospital_id = $1",
            &[
                &hospital,
                &i64::try_from(current.tree.len()).map_err(VaultError::internal)?,
                &sequence,
                &root_bytes.as_slice(),
            ],
        )
        .await?;
    let outbox_id = outbox::queue(
        transaction,
        &consent_root_entry(
            hospital,
            root,
            u64::try_from(sequence).map_err(VaultError::internal)?,
        ),
    )
    .await?;
    transaction
        .execute(
            "INSERT INTO consent_roots (hospital_id, sequence, root, grantee_id, patient_id,
                                        anchor_outbox_id)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &hospital,
                &sequence,
                &root_bytes.as_slice(),
                &change.grantee,
                &change.patient,
                &outbox_id,
            ],
        )
        .await?;
    current.sequence = sequence;
    Ok(())
}
