#!/usr/bin/env bash
# Stand-in for Apache Kafka's bin/kafka-topics.sh, so that librdkafka tests
# that shell out to "$KAFKA_PATH/bin/kafka-topics.sh" (test_kafka_topics():
# 0045, 0052, 0077) can run without a Kafka distribution. run.sh points
# KAFKA_PATH at the parent folder. It supports what those tests use (--create,
# --alter --partitions, --delete) through the Admin API, so the broker sees
# the same CreateTopics / CreatePartitions / DeleteTopics requests the real
# tool sends. Needs a Python with confluent-kafka: $KAFKA_TOPICS_PYTHON.
exec "${KAFKA_TOPICS_PYTHON:-python3}" "$(dirname "$0")/../../kafka_topics.py" "$@"
