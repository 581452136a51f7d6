//! DescribeCluster (key 60): the brokers (v2+: fenced ones too, flagged, when the request
//! asks for them) and the active controller; on a single node, this node is both.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use protocol_shim::ErrorKind;

use super::util::{str_bytes, CLUSTER_AUTHORIZED_OPERATIONS, OPERATIONS_NOT_REQUESTED};
use crate::node::Node;

/// Endpoint type 1: brokers. Type 2 (controllers) is for clients bootstrapping from
/// controller listeners, which this node does not have.
const ENDPOINT_TYPE_BROKERS: i8 = 1;
const ENDPOINT_TYPE_CONTROLLERS: i8 = 2;

pub fn handle(
    node: &Arc<Node>,
    request: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(node.cluster_id()))
        .with_controller_id(BrokerId(node.meta.node_id))
        .with_cluster_authorized_operations(if request.include_cluster_authorized_operations {
            CLUSTER_AUTHORIZED_OPERATIONS
        } else {
            OPERATIONS_NOT_REQUESTED
        });
    if version >= 1 && request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        // Kafka's `AuthHelper.computeDescribeClusterResponse`: a known type of another
        // listener is a mismatch, an unknown one unsupported.
        let (kind, message) = if request.endpoint_type == ENDPOINT_TYPE_CONTROLLERS {
            (
                ErrorKind::MismatchedEndpointType,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER".to_string(),
            )
        } else {
            (
                ErrorKind::UnsupportedEndpointType,
                format!("Unsupported endpoint type {}", request.endpoint_type),
            )
        };
        return response
            .with_error_code(kind.code())
            .with_error_message(Some(str_bytes(message)))
            .with_controller_id(BrokerId(-1));
    }
    let with_fenced = version >= 2 && request.include_fenced_brokers;
    if let Some(rt) = node.cluster() {
        let state = rt.state();
        let live: Vec<i32> = state
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.broker_id)
            .collect();
        response.controller_id = BrokerId(rt.controller_for_clients(&live));
        response.brokers = state
            .brokers
            .values()
            .filter(|b| with_fenced || !b.fenced)
            .map(|b| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.broker_id))
                    .with_host(str_bytes(b.host.clone()))
                    .with_port(i32::from(b.port))
                    .with_rack(b.rack.clone().map(str_bytes))
                    .with_is_fenced(b.fenced)
            })
            .collect();
        return response;
    }
    response.brokers = vec![DescribeClusterBroker::default()
        .with_broker_id(BrokerId(node.meta.node_id))
        .with_host(str_bytes(node.config.advertised_host.clone()))
        .with_port(node.config.advertised_port)];
    response
}
