//! Single-object encoding and the mapping between Avro values and event types.
//!
//! Writers always use the newest schema of a topic. Readers look the writer's schema up
//! by fingerprint, decode with it, and map fields by name into the Rust types, whose
//! newer optional fields default to `None`: that is the evolution rule (add optional
//! fields with a `null` default; never remove or retype a field).

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

use apache_avro::{from_value, to_value, types::Value, GenericSingleObjectWriter, Schema};
use serde::{de::DeserializeOwned, Serialize};

use crate::registry::{registry, SchemaKind};

/// Marker of Avro single-object encoding.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record is {0} bytes, too short for a single-object header")]
    TooShort(usize),
    #[error("record does not start with the Avro single-object marker C3 01")]
    BadMagic,
    #[error("unknown schema fingerprint {0}")]
    UnknownFingerprint(String),
    #[error("record was written with a {found} schema, expected {expected}")]
    WrongTopic { found: &'static str, expected: &'static str },
    #[error("corrupt Avro body: {0}")]
    Avro(#[from] Box<apache_avro::Error>),
    #[error("unexpected value shape: {0}")]
    Shape(String),
}

impl From<apache_avro::Error> for CodecError {
    fn from(e: apache_avro::Error) -> Self {
        CodecError::Avro(Box::new(e))
    }
}

/// A topic value type: an envelope record whose last field is a union of event records.
pub trait Event: Sized {
    /// Which topic family (and so which schema) this type belongs to.
    const KIND: SchemaKind;
    /// Name of the union field in the envelope.
    const UNION_FIELD: &'static str;
    /// The envelope's plain fields, in schema order, without the union field.
    fn head(&self) -> Vec<(&'static str, Value)>;
    /// The union member: its record name and value.
    fn member(&self) -> Result<(&'static str, Value), CodecError>;
    /// Rebuild from the envelope's fields and the union member's name and value.
    fn from_parts(head: &mut Fields, member: &str, value: &Value) -> Result<Self, CodecError>;
}

/// Encode with the newest schema of `T`'s topic, in single-object encoding.
pub fn encode<T: Event>(event: &T) -> Result<Vec<u8>, CodecError> {
    let current = registry().current(T::KIND);
    encode_with(&current.schema, &current.fingerprint, event)
}

/// Encode with a given schema version (tests and tools writing old versions).
pub fn encode_with<T: Event>(schema: &Schema, fingerprint: &[u8; 8], event: &T) -> Result<Vec<u8>, CodecError> {
    let (name, member) = event.member()?;
    let index = union_index(schema, T::UNION_FIELD, name)?;
    let member = conform(member, union_variant(schema, T::UNION_FIELD, index)?);
    let mut fields: Vec<(String, Value)> = event.head().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    fields.push((T::UNION_FIELD.to_string(), Value::Union(index as u32, Box::new(member))));
    // An older version may lack envelope fields added since: they are left out.
    let value = conform(Value::Record(fields), schema);
    // One writer per schema and thread, its named types resolved once: it validates the
    // value and writes the single-object header (C3 01, the fingerprint) and the body.
    thread_local! {
        static WRITERS: RefCell<HashMap<[u8; 8], GenericSingleObjectWriter>> = RefCell::new(HashMap::new());
    }
    WRITERS.with(|writers| {
        let mut writers = writers.borrow_mut();
        let writer = match writers.entry(*fingerprint) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(GenericSingleObjectWriter::new_with_capacity(schema, 256)?),
        };
        let mut out = Vec::with_capacity(160);
        writer.write_value_ref(&value, &mut out)?;
        Ok(out)
    })
}

/// Decode a single-object encoded value written with any registered version of `T`'s schema.
pub fn decode<T: Event>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() < 10 {
        return Err(CodecError::TooShort(bytes.len()));
    }
    if bytes[..2] != MAGIC {
        return Err(CodecError::BadMagic);
    }
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&bytes[2..10]);
    let (writer, decoder) = registry().decoder(&fingerprint).ok_or_else(|| CodecError::UnknownFingerprint(hex(&fingerprint)))?;
    if writer.kind != T::KIND {
        return Err(CodecError::WrongTopic { found: writer.kind.name(), expected: T::KIND.name() });
    }
    // The decoder checks the header again and reads the body after it.
    let mut body = Strict(bytes);
    let value = decoder.read_value(&mut body)?;
    if !body.0.is_empty() {
        return Err(CodecError::Shape(format!("{} trailing bytes after the record", body.0.len())));
    }
    let Value::Record(fields) = value else {
        return Err(CodecError::Shape("top level is not a record".into()));
    };
    let mut fields = Fields(fields.into_iter().collect());
    let Some(Value::Union(index, member)) = fields.0.remove(T::UNION_FIELD) else {
        return Err(CodecError::Shape(format!("field {} is not a union", T::UNION_FIELD)));
    };
    let name = variant_name(&writer.schema, T::UNION_FIELD, index as usize)?;
    T::from_parts(&mut fields, &name, &member)
}

/// The fields of a decoded envelope, by name.
pub struct Fields(HashMap<String, Value>);

impl Fields {
    fn take(&mut self, name: &str) -> Result<Value, CodecError> {
        self.0.remove(name).ok_or_else(|| CodecError::Shape(format!("missing field {name}")))
    }
    /// A string field.
    pub fn string(&mut self, name: &str) -> Result<String, CodecError> {
        match self.take(name)? {
            Value::String(s) => Ok(s),
            other => Err(CodecError::Shape(format!("field {name} is {other:?}, not a string"))),
        }
    }
    /// A long field.
    pub fn long(&mut self, name: &str) -> Result<i64, CodecError> {
        match self.take(name)? {
            Value::Long(v) => Ok(v),
            Value::Int(v) => Ok(v.into()),
            other => Err(CodecError::Shape(format!("field {name} is {other:?}, not a long"))),
        }
    }
    /// An optional long field (`["null", "long"]`); absent in older versions means `None`.
    pub fn optional_long(&mut self, name: &str) -> Result<Option<i64>, CodecError> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Union(_, v)) => match *v {
                Value::Null => Ok(None),
                Value::Long(v) => Ok(Some(v)),
                Value::Int(v) => Ok(Some(v.into())),
                other => Err(CodecError::Shape(format!("field {name} is {other:?}, not a long"))),
            },
            Some(Value::Long(v)) => Ok(Some(v)),
            Some(other) => Err(CodecError::Shape(format!("field {name} is {other:?}, not a long"))),
        }
    }
    /// An int field.
    pub fn int(&mut self, name: &str) -> Result<i32, CodecError> {
        match self.take(name)? {
            Value::Int(v) => Ok(v),
            other => Err(CodecError::Shape(format!("field {name} is {other:?}, not an int"))),
        }
    }
}

/// An optional long as a `["null", "long"]` union value.
pub fn optional_long(value: Option<i64>) -> Value {
    match value {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(Value::Long(v))),
    }
}

/// Serialize a union member struct into an Avro value.
pub fn member<S: Serialize>(name: &'static str, value: &S) -> Result<(&'static str, Value), CodecError> {
    Ok((name, to_value(value)?))
}

/// Deserialize a union member value into its struct.
pub fn parse<D: DeserializeOwned>(value: &Value) -> Result<D, CodecError> {
    Ok(from_value::<D>(value)?)
}

/// Error for a union member this build does not know.
pub fn unknown_member(kind: SchemaKind, name: &str) -> CodecError {
    CodecError::Shape(format!("{} has no event named {name}", kind.name()))
}

fn union_schema<'a>(schema: &'a Schema, field: &str) -> Result<&'a [Schema], CodecError> {
    if let Schema::Record(record) = schema {
        if let Some(f) = record.fields.iter().find(|f| f.name == field) {
            if let Schema::Union(u) = &f.schema {
                return Ok(u.variants());
            }
        }
    }
    Err(CodecError::Shape(format!("schema has no union field {field}")))
}

fn union_variant<'a>(schema: &'a Schema, field: &str, index: usize) -> Result<&'a Schema, CodecError> {
    union_schema(schema, field)?.get(index).ok_or_else(|| CodecError::Shape(format!("union {field} has no member {index}")))
}

fn union_index(schema: &Schema, field: &str, name: &str) -> Result<usize, CodecError> {
    union_schema(schema, field)?
        .iter()
        .position(|s| s.name().map(|n| n.name == name).unwrap_or(false))
        .ok_or_else(|| CodecError::Shape(format!("union {field} has no member {name}")))
}

fn variant_name(schema: &Schema, field: &str, index: usize) -> Result<String, CodecError> {
    union_variant(schema, field, index)?
        .name()
        .map(|n| n.name.clone())
        .ok_or_else(|| CodecError::Shape(format!("union {field} member {index} is not named")))
}

/// Drop fields the target record schema does not have (writing an old version) and order
/// the rest as the schema does.
fn conform(value: Value, target: &Schema) -> Value {
    match (value, target) {
        (Value::Record(mut fields), Schema::Record(record)) => {
            // A handful of fields: a linear search beats hashing every name.
            Value::Record(
                record
                    .fields
                    .iter()
                    .filter_map(|f| {
                        let at = fields.iter().position(|(name, _)| *name == f.name)?;
                        Some((f.name.clone(), fields.swap_remove(at).1))
                    })
                    .collect(),
            )
        }
        (value, _) => value,
    }
}

/// A byte slice whose end is an error, not an end-of-file: apache-avro reads an
/// end-of-file where a union starts as `null`, which would turn a truncated record into
/// a different, valid one.
struct Strict<'a>(&'a [u8]);

impl std::io::Read for Strict<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() && !buf.is_empty() {
            return Err(std::io::Error::other("record is truncated"));
        }
        self.0.read(buf)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
