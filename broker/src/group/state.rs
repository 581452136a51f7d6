//! The states of a classic group, with Kafka's names and allowed transitions.
//!
//! Empty -> PreparingRebalance -> CompletingRebalance -> Stable -> PreparingRebalance ...;
//! PreparingRebalance -> Empty when every member left; any state -> Dead when deleted.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka uses in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Whether a rebalance may start from this state (Kafka's `canRebalance`).
    pub fn can_rebalance(self) -> bool {
        matches!(
            self,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        )
    }

    /// Kafka's `validPreviousStates` of `next`.
    pub fn can_transition_to(self, next: GroupState) -> bool {
        use GroupState::*;
        match next {
            PreparingRebalance => matches!(self, Stable | CompletingRebalance | Empty),
            CompletingRebalance => self == PreparingRebalance,
            Stable => self == CompletingRebalance,
            Empty => self == PreparingRebalance,
            Dead => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GroupState::*;

    #[test]
    fn names_and_transitions() {
        assert_eq!(CompletingRebalance.name(), "CompletingRebalance");
        assert!(Empty.can_transition_to(PreparingRebalance));
        assert!(!Empty.can_transition_to(Stable));
        assert!(PreparingRebalance.can_transition_to(Empty));
        assert!(!PreparingRebalance.can_rebalance());
        assert!(Stable.can_rebalance());
    }
}
