"""A kafka-python consumer assigned every partition of a topic at its end, polling with
fetch_max_wait_ms=0 (fetch-instructions.sh): warms up, then polls on cue."""
import sys

from kafka import KafkaConsumer, TopicPartition

boot, topic, n, polls = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = KafkaConsumer(bootstrap_servers=boot, enable_auto_commit=False, fetch_max_wait_ms=0,
                  api_version_auto_timeout_ms=60000, request_timeout_ms=120000,
                  metadata_max_age_ms=600000, connections_max_idle_ms=600000)
c.assign([TopicPartition(topic, i) for i in range(n)])
c.seek_to_end()
for _ in range(5):
    c.poll(timeout_ms=200)
print("warm", flush=True)
sys.stdin.readline()
for _ in range(polls):
    c.poll(timeout_ms=50)
print("done", flush=True)
sys.stdin.readline()
c.close()
