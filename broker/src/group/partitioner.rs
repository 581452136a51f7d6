//! Which `__consumer_offsets` partition holds a group: Kafka's
//! `Utils.abs(groupId.hashCode()) % offsets.topic.num.partitions`, where `hashCode` is Java's
//! `String.hashCode` over UTF-16 code units and `Utils.abs` is `h & 0x7fffffff`.

/// Java's `String.hashCode`.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `__consumer_offsets` partition of `group_id` (0 when `num_partitions` is not positive).
pub fn partition_for(group_id: &str, num_partitions: i32) -> i32 {
    if num_partitions <= 0 {
        return 0;
    }
    (java_string_hash(group_id) & 0x7fff_ffff) % num_partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java() {
        // "hello".hashCode() == 99162322 in Java; the others follow the same definition
        // (s[0]*31^(n-1) + ... + s[n-1], wrapping, over UTF-16 code units).
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(
            java_string_hash("consumer-group-with-a-long-name"),
            -1_157_546_098
        );
        // Non-ASCII: a surrogate pair counts as two code units.
        assert_eq!(java_string_hash("é"), 233);
        assert_eq!(java_string_hash("😀"), 1_772_899);
    }

    #[test]
    fn partition_is_in_range_and_uses_the_sign_mask() {
        let h = java_string_hash("consumer-group-with-a-long-name");
        assert!(h < 0);
        assert_eq!(
            partition_for("consumer-group-with-a-long-name", 50),
            (h & 0x7fff_ffff) % 50
        );
        assert_eq!(
            partition_for("my-group", 50),
            (-1_906_497_762 & 0x7fff_ffff) % 50
        );
        assert_eq!(partition_for("x", 0), 0);
    }
}
