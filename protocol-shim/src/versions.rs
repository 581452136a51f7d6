//! The one table of API versions Sluice advertises in ApiVersions and accepts.
//!
//! Invariant: every (api, version) listed here is handled by the broker at every version in
//! its range; a version outside the range is never decoded (the connection is closed, except
//! for ApiVersions which gets the v0 UNSUPPORTED_VERSION reply). Ranges follow Apache Kafka
//! 4.x; minimums are never raised above Kafka's. Produce starts at v3 and Fetch at v4, as in
//! Kafka 4 (record format v2 only); librdkafka 2.x, kafka-python and aiokafka all speak those.

use kafka_protocol::messages::ApiKey;

/// (api, min version, max version) that Sluice serves.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    // Kafka 4 removed v0-1 (KIP-896).
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 2),
    // Consumer groups (classic protocol), Kafka 4.x ranges.
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
];

/// The supported version range of an API, if Sluice serves it at all.
pub fn supported_range(api_key: i16) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k as i16 == api_key)
        .map(|&(_, min, max)| (min, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_is_within_what_the_codec_can_decode() {
        for &(key, min, max) in SUPPORTED_APIS {
            let codec = key.valid_versions();
            assert!(min <= max, "{key:?}");
            assert!(
                codec.min <= min && max <= codec.max,
                "{key:?} {min}..{max} outside codec range {codec}"
            );
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(supported_range(18), Some((0, 4)));
        assert_eq!(supported_range(0), Some((3, 13)));
        assert_eq!(supported_range(9999), None);
    }
}
