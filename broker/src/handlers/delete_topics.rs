//! DeleteTopics (key 20): by name (v1-v5, and v6 entries with a name) or by topic id (v6).
//! With `delete.topic.enable=false` every entry is refused, before any is looked up. As
//! Kafka's `ControllerApis.deleteTopics`, an entry naming both a name and an id, or neither, and
//! a name or id given twice are refused INVALID_REQUEST (once per duplicated name or id), and
//! only the rest are deleted.

use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use protocol_shim::ErrorKind;
use uuid::Uuid;

use super::util::{str_bytes, topic_name};
use crate::node::Node;

pub async fn handle(
    node: &Arc<Node>,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.as_str().to_string()), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n.0.as_str().to_string()), Uuid::nil()))
            .collect()
    };
    if !node.config.settings.bool("delete.topic.enable") {
        // Kafka refuses the whole request before it looks at any topic (`ControllerApis`):
        // TOPIC_DELETION_DISABLED from v3, which added that code, INVALID_REQUEST before.
        let kind = if version >= 3 {
            ErrorKind::TopicDeletionDisabled
        } else {
            ErrorKind::InvalidRequest
        };
        let responses = targets
            .into_iter()
            .map(|(name, id)| {
                DeletableTopicResult::default()
                    .with_name(name.as_deref().map(topic_name))
                    .with_topic_id(id)
                    .with_error_code(kind.code())
            })
            .collect();
        return DeleteTopicsResponse::default().with_responses(responses);
    }
    let (targets, mut responses) = refuse_malformed(targets);
    for (name, id) in targets {
        responses.push({
            let resolved = match &name {
                Some(n) => Ok(n.clone()),
                None => node.topics.name_of_id(id).ok_or(ErrorKind::UnknownTopicId),
            };
            let mut out = DeletableTopicResult::default()
                .with_name(name.as_deref().map(topic_name))
                .with_topic_id(id);
            let deleted = match resolved {
                Ok(n) => Ok((delete(node, &n).await, n)),
                Err(kind) => Err(kind),
            };
            match deleted {
                Ok((Ok(meta), n)) => {
                    out.name = Some(topic_name(&n));
                    out.topic_id = meta.id;
                }
                Ok((Err(e), _)) => {
                    out.error_code = e.kind.code();
                    out.error_message = Some(str_bytes(e.message));
                }
                Err(kind) => out.error_code = kind.code(),
            }
            out
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Splits the entries into those to delete (each a name or an id, given once) and Kafka's
/// INVALID_REQUEST answers for the others.
fn refuse_malformed(
    targets: Vec<(Option<String>, Uuid)>,
) -> (Vec<(Option<String>, Uuid)>, Vec<DeletableTopicResult>) {
    let refused = |name: Option<&str>, id: Uuid, message: &str| {
        DeletableTopicResult::default()
            .with_name(name.map(topic_name))
            .with_topic_id(id)
            .with_error_code(ErrorKind::InvalidRequest.code())
            .with_error_message(Some(str_bytes(message.to_string())))
    };
    let mut responses = Vec::new();
    let (mut duplicate_names, mut duplicate_ids) = (Vec::new(), Vec::new());
    // Each name or id at its first mention, duplicates among them removed at the end.
    let mut kept: Vec<(Option<String>, Uuid)> = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        match (name, id.is_nil()) {
            (Some(n), false) => responses.push(refused(
                Some(&n),
                id,
                "You may not specify both topic name and topic id.",
            )),
            (None, true) => responses.push(refused(
                None,
                id,
                "Neither topic name nor id were specified.",
            )),
            (Some(n), true) => {
                if !kept.iter().any(|(k, _)| k.as_ref() == Some(&n)) {
                    kept.push((Some(n), id));
                } else if !duplicate_names.contains(&n) {
                    duplicate_names.push(n);
                }
            }
            (None, false) => {
                if !kept.contains(&(None, id)) {
                    kept.push((None, id));
                } else if !duplicate_ids.contains(&id) {
                    duplicate_ids.push(id);
                }
            }
        }
    }
    for n in &duplicate_names {
        responses.push(refused(Some(n), Uuid::nil(), "Duplicate topic name."));
    }
    for &id in &duplicate_ids {
        responses.push(refused(None, id, "Duplicate topic id."));
    }
    kept.retain(|(n, id)| match n {
        Some(n) => !duplicate_names.contains(n),
        None => !duplicate_ids.contains(id),
    });
    (kept, responses)
}

async fn delete(
    node: &Arc<Node>,
    name: &str,
) -> Result<crate::metadata::TopicMeta, crate::node::TopicOpError> {
    match node.cluster() {
        Some(rt) => rt.delete_topic(node, name).await,
        None => {
            let (node, name) = (Arc::clone(node), name.to_string());
            crate::node::topic_op_off_runtime(move || node.delete_topic(&name)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_and_repeated_entries_are_refused_once_each() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let t = |n: &str| Some(n.to_string());
        let (kept, refused) = refuse_malformed(vec![
            (t("x"), Uuid::nil()),
            (t("y"), Uuid::nil()),
            (t("x"), Uuid::nil()),
            (t("x"), Uuid::nil()),
            (None, a),
            (None, a),
            (None, b),
            (t("z"), b),
            (None, Uuid::nil()),
        ]);
        assert_eq!(kept, vec![(t("y"), Uuid::nil()), (None, b)]);
        let answers: Vec<(Option<String>, Uuid, i16, String)> = refused
            .into_iter()
            .map(|r| {
                (
                    r.name.map(|n| n.0.to_string()),
                    r.topic_id,
                    r.error_code,
                    r.error_message.map(|m| m.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        let invalid = ErrorKind::InvalidRequest.code();
        assert_eq!(
            answers,
            vec![
                (
                    t("z"),
                    b,
                    invalid,
                    "You may not specify both topic name and topic id.".into()
                ),
                (
                    None,
                    Uuid::nil(),
                    invalid,
                    "Neither topic name nor id were specified.".into()
                ),
                (t("x"), Uuid::nil(), invalid, "Duplicate topic name.".into()),
                (None, a, invalid, "Duplicate topic id.".into()),
            ]
        );
    }
}
