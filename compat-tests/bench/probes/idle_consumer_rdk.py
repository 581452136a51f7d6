"""A librdkafka consumer (confluent-kafka) assigned every partition of a topic at its end,
fetching with fetch.wait.max.ms=0 (fetch-instructions.sh --client rdkafka). librdkafka has
no fetch sessions: each of its Fetches names every partition. It fetches from its own broker
thread whether or not the application polls; this polls until stdin closes."""
import sys
import threading

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

boot, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = Consumer({"bootstrap.servers": boot, "group.id": "probe", "enable.auto.commit": False,
              "fetch.wait.max.ms": 0, "socket.timeout.ms": 120000,
              "topic.metadata.refresh.interval.ms": 600000})
c.assign([TopicPartition(topic, i, OFFSET_END) for i in range(n)])
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
while not done.is_set():
    c.poll(0.2)
c.close()
