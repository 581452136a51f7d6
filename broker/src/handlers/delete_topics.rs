//! DeleteTopics (key 20): by name (v1-v5, and v6 entries with a name) or by topic id (v6).
//! With `delete.topic.enable=false` every entry is refused, before any is looked up.

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
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        responses.push({
            let resolved = match (&name, id.is_nil()) {
                (Some(n), _) => Ok(n.clone()),
                (None, false) => node.topics.name_of_id(id).ok_or(ErrorKind::UnknownTopicId),
                (None, true) => Err(ErrorKind::InvalidRequest),
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

async fn delete(
    node: &Node,
    name: &str,
) -> Result<crate::metadata::TopicMeta, crate::node::TopicOpError> {
    match node.cluster() {
        Some(rt) => rt.delete_topic(node, name).await,
        None => node.delete_topic(name),
    }
}
