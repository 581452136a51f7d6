//! DescribeConfigs (key 32): topic configs (each with its effective value and source: set on
//! the topic, a broker setting, or the default) and broker settings, with synonyms (v1+) and
//! types and documentation (v3+), so admin tools and `kcat -L`-style tools can show them.

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use protocol_shim::ErrorKind;

use super::util::str_bytes;
use crate::config::{
    effective_topic_config, BrokerSettings, ConfigSource, ConfigType, BROKER_SETTINGS,
    TOPIC_CONFIGS,
};
use crate::metadata::validate_topic_name;
use crate::node::Node;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's `ConfigResource.Type` ids besides topic and broker: broker logger, client metrics
/// and group. Sluice answers these resources INVALID_REQUEST one by one; any other id refuses
/// the whole request, as Kafka's `handleDescribeConfigsRequest` throws on it.
const OTHER_KNOWN_RESOURCES: [i8; 3] = [8, 16, 32];

/// Kafka's `Errors.INVALID_REQUEST.message()`, which its error response carries.
const INVALID_REQUEST_MESSAGE: &str = "This most likely occurs because of a request being \
    malformed by the client library or the message was sent to an incompatible broker. See \
    the broker logs for more details.";

/// One config entry before encoding.
struct Entry {
    name: String,
    value: Option<String>,
    source: ConfigSource,
    read_only: bool,
    config_type: ConfigType,
    doc: &'static str,
    synonyms: Vec<(String, Option<String>, ConfigSource)>,
}

pub fn handle(
    node: &Arc<Node>,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let unknown_type = request.resources.iter().any(|r| {
        ![RESOURCE_TOPIC, RESOURCE_BROKER].contains(&r.resource_type)
            && !OTHER_KNOWN_RESOURCES.contains(&r.resource_type)
    });
    if unknown_type {
        // Kafka's `DescribeConfigsRequest.getErrorResponse`: every resource, the code's message.
        let results = request
            .resources
            .into_iter()
            .map(|r| {
                DescribeConfigsResult::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name)
                    .with_error_code(ErrorKind::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(INVALID_REQUEST_MESSAGE)))
            })
            .collect();
        return DescribeConfigsResponse::default().with_results(results);
    }
    let results = request
        .resources
        .into_iter()
        .map(|res| {
            let name = res.resource_name.as_str().to_string();
            let mut out = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            // As Kafka's `ConfigHelper.describeConfigs`: a topic name is checked before it is
            // looked up (INVALID_TOPIC_EXCEPTION), an unknown topic gets its code with no
            // message, and the broker resource "" (the cluster-wide default entity) lists only
            // the dynamic defaults set with AlterConfigs: none here.
            let entries = match res.resource_type {
                RESOURCE_TOPIC => match validate_topic_name(&name) {
                    Err(message) => Err((ErrorKind::InvalidTopic, Some(message))),
                    Ok(()) => match node.topics.get(&name) {
                        Some(meta) => Ok(topic_entries(node, &meta.configs)),
                        None => Err((ErrorKind::UnknownTopicOrPartition, None)),
                    },
                },
                RESOURCE_BROKER => {
                    if name.is_empty() {
                        Ok(Vec::new())
                    } else if name == node.meta.node_id.to_string() {
                        Ok(broker_entries(node))
                    } else {
                        Err((
                            ErrorKind::InvalidRequest,
                            Some(format!(
                                "Unexpected broker id, expected {} but received {name}",
                                node.meta.node_id
                            )),
                        ))
                    }
                }
                other => Err((
                    ErrorKind::InvalidRequest,
                    Some(format!("Unsupported resource type {other}")),
                )),
            };
            match entries {
                Ok(entries) => {
                    // No keys, or an empty list, asks for every config (Kafka's
                    // `createResponseConfig`).
                    let keys: Option<Vec<String>> = res
                        .configuration_keys
                        .filter(|k| !k.is_empty())
                        .map(|k| k.iter().map(|s| s.as_str().to_string()).collect());
                    out.configs = entries
                        .into_iter()
                        .filter(|e| keys.as_ref().is_none_or(|k| k.contains(&e.name)))
                        .map(|e| {
                            encode(
                                e,
                                request.include_synonyms,
                                request.include_documentation,
                                version,
                            )
                        })
                        .collect();
                }
                Err((kind, message)) => {
                    out.error_code = kind.code();
                    out.error_message = message.map(str_bytes);
                }
            }
            out
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn topic_entries(node: &Node, configs: &crate::config::TopicConfigs) -> Vec<Entry> {
    let broker = &node.config.settings;
    TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let (value, source) = effective_topic_config(d, configs, broker);
            let mut synonyms = Vec::new();
            if let Some(v) = configs.get(d.name) {
                synonyms.push((
                    d.name.to_string(),
                    Some(v.clone()),
                    ConfigSource::DynamicTopicConfig,
                ));
            }
            if let Some((v, s)) = broker.get(d.broker_setting) {
                if s == ConfigSource::StaticBrokerConfig {
                    synonyms.push((d.broker_setting.to_string(), Some(v), s));
                }
            }
            if let Some(def) = BrokerSettings::definition(d.broker_setting) {
                synonyms.push((
                    d.broker_setting.to_string(),
                    def.default.map(str::to_string),
                    ConfigSource::DefaultConfig,
                ));
            }
            Entry {
                name: d.name.to_string(),
                value: Some(value),
                source,
                read_only: false,
                config_type: d.config_type,
                doc: d.doc,
                synonyms,
            }
        })
        .collect()
}

fn broker_entries(node: &Node) -> Vec<Entry> {
    let settings = &node.config.settings;
    let fixed = [
        (
            "node.id",
            node.meta.node_id.to_string(),
            ConfigType::Int,
            "This broker's node id.",
        ),
        (
            "broker.id",
            node.meta.node_id.to_string(),
            ConfigType::Int,
            "This broker's node id.",
        ),
        (
            "log.dirs",
            node.config.data_dir.display().to_string(),
            ConfigType::String,
            "The data directory.",
        ),
        (
            "listeners",
            format!("PLAINTEXT://{}", node.config.listen),
            ConfigType::String,
            "The Kafka listener.",
        ),
        (
            "advertised.listeners",
            format!(
                "PLAINTEXT://{}:{}",
                node.config.advertised_host, node.config.advertised_port
            ),
            ConfigType::String,
            "The listener advertised to clients.",
        ),
    ];
    let mut entries: Vec<Entry> = fixed
        .into_iter()
        .map(|(name, value, config_type, doc)| Entry {
            name: name.to_string(),
            value: Some(value.clone()),
            source: ConfigSource::StaticBrokerConfig,
            read_only: true,
            config_type,
            doc,
            synonyms: vec![(
                name.to_string(),
                Some(value),
                ConfigSource::StaticBrokerConfig,
            )],
        })
        .collect();
    let rack = node.config.cluster.as_ref().and_then(|c| c.rack.clone());
    entries.push(Entry {
        name: "broker.rack".to_string(),
        value: rack.clone(),
        source: if rack.is_some() {
            ConfigSource::StaticBrokerConfig
        } else {
            ConfigSource::DefaultConfig
        },
        read_only: true,
        config_type: ConfigType::String,
        doc: "Rack of the broker (--broker-rack), for rack-aware replica placement and KIP-392.",
        synonyms: rack
            .iter()
            .map(|r| {
                (
                    "broker.rack".to_string(),
                    Some(r.clone()),
                    ConfigSource::StaticBrokerConfig,
                )
            })
            .collect(),
    });
    entries.extend(BROKER_SETTINGS.iter().map(|d| {
        let (value, source) = match settings.get(d.name) {
            Some((v, s)) => (Some(v), s),
            None => (None, ConfigSource::DefaultConfig),
        };
        let mut synonyms = vec![(d.name.to_string(), value.clone(), source)];
        if source == ConfigSource::StaticBrokerConfig {
            synonyms.push((
                d.name.to_string(),
                d.default.map(str::to_string),
                ConfigSource::DefaultConfig,
            ));
        }
        Entry {
            name: d.name.to_string(),
            value,
            source,
            read_only: true,
            config_type: d.config_type,
            doc: d.doc,
            synonyms,
        }
    }));
    entries
}

fn encode(
    e: Entry,
    include_synonyms: bool,
    include_doc: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(e.name))
        .with_value(e.value.map(str_bytes))
        .with_read_only(e.read_only)
        .with_config_source(e.source.code());
    if include_synonyms {
        r.synonyms = e
            .synonyms
            .into_iter()
            .map(|(n, v, s)| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(n))
                    .with_value(v.map(str_bytes))
                    .with_source(s.code())
            })
            .collect();
    }
    if version >= 3 {
        r.config_type = e.config_type.code();
        if include_doc {
            r.documentation = Some(str_bytes(e.doc));
        }
    }
    r
}
