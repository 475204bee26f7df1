//! Which hospitals may exist: those the chain's governance has admitted (MISSION.md: a new
//! hospital joins only when the existing members approve it, the paper's channel rule). The
//! vault asks the chain's current member set before it creates a hospital or its admin; the
//! chain, not the database, is where a hospital's admission is decided and recorded.

use super::AnchorChain;
use crate::error::VaultError;
use medvault_anchor_chain::entry::ApprovalPolicy;
use medvault_anchor_chain::governance::MemberSet;

/// Succeeds when `hospital` is a current member of `chain`; otherwise the refusal says how the
/// members admit it.
pub(crate) async fn check_admitted(chain: &AnchorChain, hospital: &str) -> Result<(), VaultError> {
    let members = chain
        .members()
        .await
        .map_err(VaultError::ChainUnavailable)?;
    if members
        .members
        .values()
        .any(|member| member.name == hospital)
    {
        Ok(())
    } else {
        Err(VaultError::NotAMember(refusal(hospital, &members)))
    }
}

/// What the operator is told: who the members are and the governance steps that admit a new
/// one, with the action those steps sign filled in as far as the vault can.
fn refusal(hospital: &str, members: &MemberSet) -> String {
    let names: Vec<&str> = members.members.values().map(|m| m.name.as_str()).collect();
    let action = serde_json::json!({
        "action": "admit",
        "epoch": members.epoch,
        "member": {
            "id": members.members.keys().max().map_or(1, |id| id + 1),
            "name": hospital,
            "public_key": "<its validator's public key, from medvault chain keygen>",
            "address": "<host:port of its validator>",
        },
    });
    let approvers = match members.policy {
        ApprovalPolicy::Majority => "a majority",
        ApprovalPolicy::All => "all",
    };
    format!(
        "{hospital:?} is not a member of the anchor chain (its members: {names}). A hospital \
         joins only when the members admit it: write the action {action}, have {approvers} of \
         the members sign it (medvault chain approve), submit it with their approvals \
         (medvault chain govern), and start the new member's validator (medvault chain node)",
        names = names.join(", "),
    )
}
