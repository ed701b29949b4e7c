//! The topic catalogue of DESIGN.md.

/// The topics Netwatch uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    Config,
    Calls,
    Monitors,
    Assignments,
    DeadLetter,
}

impl Topic {
    /// Every topic, in creation order.
    pub const ALL: [Topic; 5] = [Topic::Config, Topic::Calls, Topic::Monitors, Topic::Assignments, Topic::DeadLetter];

    /// Name without prefix.
    pub fn base_name(self) -> &'static str {
        match self {
            Topic::Config => "config",
            Topic::Calls => "calls",
            Topic::Monitors => "monitors",
            Topic::Assignments => "assignments",
            Topic::DeadLetter => "deadletter",
        }
    }

    /// Parse a name without prefix.
    pub fn from_base_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.base_name() == name)
    }
}

/// Topic names and partition counts for one deployment.
#[derive(Clone, Debug)]
pub struct Topics {
    /// Prepended to every topic name (default `netwatch.`).
    pub prefix: String,
    /// Partitions of `config` and `calls` (co-partitioned: same key, same count).
    pub event_partitions: i32,
    /// Partitions of `assignments`: the number of monitor slots.
    pub slots: i32,
}

impl Default for Topics {
    fn default() -> Self {
        Topics { prefix: "netwatch.".into(), event_partitions: 8, slots: 32 }
    }
}

impl Topics {
    /// Full topic name.
    pub fn name(&self, topic: Topic) -> String {
        format!("{}{}", self.prefix, topic.base_name())
    }

    /// Partition count of a topic.
    pub fn partitions(&self, topic: Topic) -> i32 {
        match topic {
            Topic::Config | Topic::Calls => self.event_partitions,
            Topic::Assignments => self.slots,
            Topic::Monitors => 4,
            Topic::DeadLetter => 1,
        }
    }

    /// Partition of `config` and `calls` that holds a T-Server's events. Both topics use
    /// this instead of the client's hash so that they stay co-partitioned whatever the
    /// client library.
    pub fn tserver_partition(&self, tserver: i32) -> i32 {
        tserver.rem_euclid(self.event_partitions)
    }
}
