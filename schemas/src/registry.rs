//! The registry of every schema version, by topic and by fingerprint.

use std::collections::HashMap;
use std::sync::OnceLock;

use apache_avro::{rabin::Rabin, GenericSingleObjectReader, Schema};

/// The topic families that carry Avro values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    Config,
    Calls,
    Monitors,
    Assignments,
}

impl SchemaKind {
    /// Topic name without prefix, also the schema file stem.
    pub fn name(self) -> &'static str {
        match self {
            SchemaKind::Config => "config",
            SchemaKind::Calls => "calls",
            SchemaKind::Monitors => "monitors",
            SchemaKind::Assignments => "assignments",
        }
    }
}

/// One released schema version.
#[derive(Debug)]
pub struct SchemaVersion {
    pub kind: SchemaKind,
    pub version: u32,
    pub schema: Schema,
    pub fingerprint: [u8; 8],
}

/// Every schema file ever released. Append new versions; never edit or remove one.
const SOURCES: &[(SchemaKind, u32, &str)] = &[
    (SchemaKind::Config, 1, include_str!("../avro/config.v1.avsc")),
    (SchemaKind::Calls, 1, include_str!("../avro/calls.v1.avsc")),
    (SchemaKind::Monitors, 1, include_str!("../avro/monitors.v1.avsc")),
    (SchemaKind::Monitors, 2, include_str!("../avro/monitors.v2.avsc")),
    (SchemaKind::Monitors, 3, include_str!("../avro/monitors.v3.avsc")),
    (SchemaKind::Monitors, 4, include_str!("../avro/monitors.v4.avsc")),
    (SchemaKind::Assignments, 1, include_str!("../avro/assignments.v1.avsc")),
    (SchemaKind::Calls, 2, include_str!("../avro/calls.v2.avsc")),
    (SchemaKind::Monitors, 5, include_str!("../avro/monitors.v5.avsc")),
    (SchemaKind::Config, 2, include_str!("../avro/config.v2.avsc")),
    (SchemaKind::Calls, 3, include_str!("../avro/calls.v3.avsc")),
    (SchemaKind::Assignments, 2, include_str!("../avro/assignments.v2.avsc")),
    (SchemaKind::Config, 3, include_str!("../avro/config.v3.avsc")),
];

/// All versions, parsed once.
pub struct Registry {
    versions: Vec<SchemaVersion>,
    /// A decoder per version, its named types resolved once (apache-avro's plain
    /// `from_avro_datum` resolves them on every call).
    decoders: Vec<GenericSingleObjectReader>,
    by_fingerprint: HashMap<[u8; 8], usize>,
}

impl Registry {
    fn build() -> Registry {
        let mut versions = Vec::new();
        let mut by_fingerprint = HashMap::new();
        let mut decoders = Vec::new();
        for (kind, version, text) in SOURCES {
            // The schema files are compiled in and covered by tests: a parse failure is a
            // build defect, not an input error.
            let schema = Schema::parse_str(text).unwrap_or_else(|e| panic!("schema {}.v{version} is invalid: {e}", kind.name()));
            let mut fingerprint = [0u8; 8];
            fingerprint.copy_from_slice(&schema.fingerprint::<Rabin>().bytes);
            by_fingerprint.insert(fingerprint, versions.len());
            let decoder = GenericSingleObjectReader::new(schema.clone())
                .unwrap_or_else(|e| panic!("schema {}.v{version} does not resolve: {e}", kind.name()));
            decoders.push(decoder);
            versions.push(SchemaVersion { kind: *kind, version: *version, schema, fingerprint });
        }
        Registry { versions, decoders, by_fingerprint }
    }

    /// The schema version with this fingerprint and its decoder.
    pub(crate) fn decoder(&self, fingerprint: &[u8; 8]) -> Option<(&SchemaVersion, &GenericSingleObjectReader)> {
        self.by_fingerprint.get(fingerprint).map(|i| (&self.versions[*i], &self.decoders[*i]))
    }

    /// The schema version with this fingerprint, if any release had it.
    pub fn by_fingerprint(&self, fingerprint: &[u8; 8]) -> Option<&SchemaVersion> {
        self.by_fingerprint.get(fingerprint).map(|i| &self.versions[*i])
    }

    /// The newest version of a topic's schema: the one writers use.
    pub fn current(&self, kind: SchemaKind) -> &SchemaVersion {
        self.versions.iter().filter(|v| v.kind == kind).max_by_key(|v| v.version).expect("every kind has a schema")
    }

    /// A specific version of a topic's schema.
    pub fn version(&self, kind: SchemaKind, version: u32) -> Option<&SchemaVersion> {
        self.versions.iter().find(|v| v.kind == kind && v.version == version)
    }

    /// Every registered version, oldest first per kind.
    pub fn all(&self) -> &[SchemaVersion] {
        &self.versions
    }
}

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::build)
}
