//! Kafka client settings shared by every role.

use rdkafka::ClientConfig;

/// Consumer group session timeout: a member silent this long is out of its group.
pub const SESSION_TIMEOUT_MS: i64 = 10_000;

/// Where the brokers are and any pass-through client settings (TLS, SASL, ...).
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Extra librdkafka properties, applied last.
    pub extra: Vec<(String, String)>,
}

impl KafkaConfig {
    /// Settings for the given brokers and nothing else.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig { brokers: brokers.into(), extra: Vec::new() }
    }

    /// A base client configuration.
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("socket.timeout.ms", "10000")
            .set("topic.metadata.refresh.interval.ms", "10000")
            // librdkafka backs off reconnects up to 10 s: after an outage each client would
            // come back on its own schedule, up to 10 s after the broker, and a monitor whose
            // reports came back late looked dead to one that came back early (the chaos test
            // saw a T-Server connected by two monitors). Every client retries within a second.
            .set("reconnect.backoff.max.ms", "1000")
            .set("log_level", "4");
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    /// Consumer configuration: no auto-commit; positions live with the effects.
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.client();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", "100");
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}
