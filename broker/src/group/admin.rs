//! ListGroups, DescribeGroups and DeleteGroups.

use protocol_shim::ErrorKind;

use super::api::{DescribedGroup, DescribedMember, ListedGroup};
use super::coordinator::GroupCoordinator;
use super::records::GroupRecord;
use super::state::GroupState;

/// The only group type Sluice has (ListGroups v5 `types_filter`).
pub const CLASSIC_GROUP_TYPE: &str = "classic";

impl GroupCoordinator {
    /// Groups this coordinator serves whose state and type match the (case-insensitive)
    /// filters; empty filters match everything.
    pub fn list_groups(&self, states: &[String], types: &[String]) -> Vec<ListedGroup> {
        if !types.is_empty()
            && !types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(CLASSIC_GROUP_TYPE))
        {
            return Vec::new();
        }
        let mut out: Vec<ListedGroup> = self
            .groups
            .values()
            .filter(|g| !g.is(GroupState::Dead))
            .filter(|g| self.owns_group(&g.group_id))
            .filter(|g| {
                states.is_empty()
                    || states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state.name()))
            })
            .map(|g| ListedGroup {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// A group as DescribeGroups shows it; an unknown group is "Dead" (v0-5) or
    /// GROUP_ID_NOT_FOUND (v6+, `not_found_error`).
    pub fn describe_group(&self, group_id: &str, not_found_error: bool) -> DescribedGroup {
        let Some(g) = self.groups.get(group_id) else {
            return DescribedGroup {
                group_id: group_id.to_string(),
                error: if not_found_error {
                    ErrorKind::GroupIdNotFound
                } else {
                    ErrorKind::None
                },
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                protocol_data: String::new(),
                members: Vec::new(),
            };
        };
        let stable = g.is(GroupState::Stable);
        let protocol = g.protocol_name.clone().unwrap_or_default();
        DescribedGroup {
            group_id: group_id.to_string(),
            error: ErrorKind::None,
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| DescribedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Default::default()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Default::default()
                    },
                })
                .collect(),
        }
    }

    /// DeleteGroups of one group: only empty groups; their offsets and metadata get
    /// tombstones. The group goes once they are written (`apply_persisted`): if they cannot
    /// be, it stays, and so does the answer to a retry.
    pub fn delete_group(&mut self, group_id: &str) -> ErrorKind {
        let Some(g) = self.groups.get(group_id) else {
            return ErrorKind::GroupIdNotFound;
        };
        match g.state {
            GroupState::Dead => return ErrorKind::GroupIdNotFound,
            GroupState::Stable
            | GroupState::PreparingRebalance
            | GroupState::CompletingRebalance => return ErrorKind::NonEmptyGroup,
            GroupState::Empty => {}
        }
        for (topic, partition) in self
            .offsets
            .get(group_id)
            .into_iter()
            .flat_map(|o| o.keys())
        {
            self.effects.records.push(GroupRecord::Offset {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
                value: None,
            });
        }
        self.effects.records.push(GroupRecord::Group {
            group: group_id.to_string(),
            value: None,
        });
        tracing::info!(group = group_id, "deleting group");
        ErrorKind::None
    }
}
